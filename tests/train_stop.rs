//! Stopping early and hangs, caused for real: SIGUSR1 to mpirun (which forwards it to
//! every rank) and SIGTERM to a single process stop resumably (exit 75, a checkpoint at
//! the step they stopped at, and a resume that ends bit-identical to an uninterrupted
//! run); a second signal stops at once; `train.time_limit` stops before the limit; a rank
//! stopped with SIGSTOP ends the job through the watchdog, which names it; a loss that
//! blows up ends the run with an error.
mod ckpt_common;
mod common;

use ckpt_common::*;
use common::Running;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The exit code of a run that stopped early and can resume (src/cli/stop.rs).
const EXIT_STOPPED: i32 = 75;
/// The exit code of a job the watchdog ended (src/dist/watchdog.rs).
const EXIT_HUNG: i32 = 124;

/// Starts `train` with `extra` overrides under `mpirun -np np` (or alone, `np = 0`).
fn spawn_train(np: usize, metrics: &Path, extra: &[String]) -> Running {
    let mut c = if np == 0 {
        Command::new(common::bin())
    } else {
        common::mpirun(np)
    };
    Running::spawn(c.args(train_args(metrics, extra)))
}

/// Waits until the metrics file has `steps` records (the run is in its loop).
fn wait_for_steps(metrics: &Path, steps: usize, run: &mut Running) {
    let start = Instant::now();
    loop {
        let n = std::fs::read_to_string(metrics)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if n >= steps {
            return;
        }
        if let Ok(Some(status)) = run.child.try_wait() {
            panic!("train ended ({status}) before step {steps}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no step {steps}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits at most `limit` for the run; returns (exit code, stdout, stderr, time taken).
fn finish(run: Running, limit: Duration) -> (Option<i32>, String, String, Duration) {
    let (out, took) = run.finish(limit);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    )
}

/// The step `dir/latest` names.
fn latest_step(dir: &Path) -> u64 {
    let name = std::fs::read_to_string(dir.join("latest")).expect("latest");
    name.trim()
        .trim_start_matches("step-")
        .parse()
        .expect("step number")
}

/// SIGUSR1 to mpirun mid-run: both ranks save at the same step and exit 75; resuming
/// with `resume = "auto"` ends with the same parameters and optimizer states as a run
/// that was never stopped.
#[test]
fn a_signal_saves_and_resume_equals_an_uninterrupted_run() {
    let tmp = common::tempdir();
    // Enough steps that the signal lands well before the end (a step takes a few ms).
    let base = sets(&["zero.stage=3", "train.steps=300", "precision.dtype=bf16"]);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let with = |dir: &Path, more: &[&str]| {
        let mut v = base.clone();
        v.push(format!("checkpoint.dir={}", dir.display()));
        v.extend(more.iter().map(|s| s.to_string()));
        v
    };
    train_ok(2, &tmp.path().join("a.jsonl"), &with(&a, &[]));

    let mb = tmp.path().join("b.jsonl");
    let mut run = spawn_train(2, &mb, &with(&b, &[]));
    wait_for_steps(&mb, 5, &mut run);
    signal(run.id() as i32, libc::SIGUSR1);
    let (code, stdout, stderr, _) = finish(run, Duration::from_secs(120));
    assert_eq!(
        code,
        Some(EXIT_STOPPED),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // mpirun forwards the signal to each rank on its own: a rank whose copy lands after
    // another's flag has already stopped the job (it travels in the step's all-reduce)
    // never reaches a boundary to announce it, so one announcement is what is certain.
    assert!(
        (0..2).any(
            |rank| stderr.contains(&format!("[rank {rank}] WARN SIGUSR1: saving a checkpoint"))
        ),
        "no rank reported the signal:\n{stderr}"
    );
    let stopped = latest_step(&b);
    assert!((5..300).contains(&stopped), "stopped at {stopped}");
    assert!(
        stdout.contains(&format!("stopped early at step {stopped} of 300")),
        "{stdout}"
    );

    train_ok(2, &mb, &with(&b, &["checkpoint.resume=auto"]));
    assert_eq!(latest_step(&b), 300);
    assert_same_states(
        &a.join("step-00000300"),
        &b.join("step-00000300"),
        "resumed",
    );
}

/// One process (no mpirun): SIGTERM stops resumably; two SIGTERMs stop at once with
/// 128 + 15, as a shell reports a process killed by it.
#[test]
fn sigterm_once_saves_and_twice_stops_at_once() {
    let tmp = common::tempdir();
    let dir = tmp.path().join("ck");
    let extra = sets(&["train.steps=100000"])
        .into_iter()
        .chain([format!("checkpoint.dir={}", dir.display())])
        .collect::<Vec<_>>();
    let m1 = tmp.path().join("once.jsonl");
    let mut run = spawn_train(0, &m1, &extra);
    wait_for_steps(&m1, 3, &mut run);
    signal(run.id() as i32, libc::SIGTERM);
    let (code, _, stderr, _) = finish(run, Duration::from_secs(120));
    assert_eq!(code, Some(EXIT_STOPPED), "{stderr}");
    assert!(latest_step(&dir) >= 3);

    // Stopped (SIGSTOP) while both signals arrive, so the second surely finds the first
    // still pending: it must end the process without a save.
    let m2 = tmp.path().join("twice.jsonl");
    let dir2 = tmp.path().join("ck2");
    let extra2 = sets(&["train.steps=100000"])
        .into_iter()
        .chain([format!("checkpoint.dir={}", dir2.display())])
        .collect::<Vec<_>>();
    let mut run = spawn_train(0, &m2, &extra2);
    wait_for_steps(&m2, 3, &mut run);
    let pid = run.id();
    signal(pid as i32, libc::SIGSTOP);
    signal(pid as i32, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(50));
    signal(pid as i32, libc::SIGCONT);
    std::thread::sleep(Duration::from_millis(50));
    signal(pid as i32, libc::SIGTERM);
    let (code, _, stderr, _) = finish(run, Duration::from_secs(60));
    assert_eq!(code, Some(128 + 15), "{stderr}");
}

/// `train.time_limit` stops the run, saved and resumable, before the limit.
#[test]
fn the_time_limit_saves_and_stops() {
    let tmp = common::tempdir();
    let dir = tmp.path().join("ck");
    let extra = sets(&["train.steps=1000000", "train.time_limit=00:04"])
        .into_iter()
        .chain([format!("checkpoint.dir={}", dir.display())])
        .collect::<Vec<_>>();
    let metrics = tmp.path().join("m.jsonl");
    let run = spawn_train(2, &metrics, &extra);
    let (code, stdout, stderr, took) = finish(run, Duration::from_secs(120));
    assert_eq!(
        code,
        Some(EXIT_STOPPED),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("the time limit: saving a checkpoint"),
        "{stderr}"
    );
    let step = latest_step(&dir);
    assert!(step > 0 && stdout.contains(&format!("stopped early at step {step}")));
    // Not a performance figure: the run must end near its limit, not run on (a million
    // steps take many minutes). Start-up and the save come on top of the 4 s.
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

/// The pid of the process mpirun started as world rank `rank` (its environment says).
fn rank_pid(rank: usize) -> u32 {
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Ok(entry) = entry else { continue };
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let exe = std::fs::read_link(entry.path().join("exe")).unwrap_or_default();
        if exe != common::bin() {
            continue;
        }
        let env = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let vars: Vec<String> = env
            .split(|&b| b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        // Only ranks of an mpirun started by this test process's own tests.
        if vars.iter().any(|v| v == &want)
            && vars
                .iter()
                .any(|v| v.starts_with("OMPI_MCA_orte_tmpdir_base=") && v.contains(&me))
        {
            return pid;
        }
    }
    panic!("no process is world rank {rank}");
}

/// SIGSTOP on rank 1 of 3: the job ends within the timeout plus a few seconds, non-zero,
/// and the others' watchdogs name rank 1 as the one that does not answer.
#[test]
fn a_stopped_rank_is_named_and_the_job_ends() {
    let tmp = common::tempdir();
    let timeout = 3;
    let extra = sets(&[
        "train.steps=1000000",
        &format!("system.collective_timeout={timeout}"),
    ]);
    let metrics = tmp.path().join("m.jsonl");
    let mut run = spawn_train(3, &metrics, &extra);
    wait_for_steps(&metrics, 3, &mut run);
    let victim = rank_pid(1);
    signal(victim as i32, libc::SIGSTOP);
    let (code, _, stderr, took) = finish(run, Duration::from_secs(60));
    // In case mpirun left it stopped (it kills its ranks, stopped or not).
    signal(victim as i32, libc::SIGKILL);
    assert_eq!(code, Some(EXIT_HUNG), "{stderr}");
    assert!(
        stderr.contains("watchdog: rank 1 (host ") && stderr.contains("did not answer"),
        "rank 1 not named:\n{stderr}"
    );
    assert!(stderr.contains("waiting on rank(s) 1"), "{stderr}");
    // The timeout, the 3 s the others are given to answer, and mpirun's clean-up; a
    // generous bound on a loaded machine that still fails a job that never ends.
    assert!(
        took < Duration::from_secs(timeout + 30),
        "took {took:?}:\n{stderr}"
    );
}

/// A bf16 run at lr = 1e3 blows up; it must end with an error that says so, not train
/// on to exit 0.
#[test]
fn a_diverging_loss_ends_the_run() {
    let tmp = common::tempdir();
    let extra = sets(&[
        "precision.dtype=bf16",
        "train.lr=1e3",
        "train.min_lr=0",
        "train.steps=300",
    ]);
    let out = train_run(2, &tmp.path().join("m.jsonl"), &extra);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("training diverged") && stderr.contains("lower train.lr"),
        "{stderr}"
    );
    assert!(stderr.contains("or set train.clip_grad"), "{stderr}");
}
