//! One job per checkpoint directory: a second job started on the directory of a running
//! one fails at set-up on every rank, naming `<dir>/LOCK` and the owner's host and pid,
//! and the first finishes untouched; a lock left by a process killed with SIGKILL does not
//! block. The running job is held still with SIGSTOP while the second one starts, so the
//! test does not depend on how fast either runs.
mod ckpt_common;
mod common;

use ckpt_common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STEPS: usize = 2000;

fn job_args(t: &Path, name: &str, dir: &Path, steps: usize) -> Vec<String> {
    train_args(
        &t.join(format!("{name}.jsonl")),
        &[
            format!("train.steps={steps}"),
            "log.every=500".into(),
            "checkpoint.every=1000".into(),
            "checkpoint.resume=auto".into(),
            format!("checkpoint.dir={}", dir.display()),
        ],
    )
}

/// Spawns `cmd` with its output in files under `t` (a pipe nobody reads could fill).
fn spawn_logged(mut cmd: Command, t: &Path, name: &str) -> Child {
    let out = std::fs::File::create(t.join(format!("{name}.out"))).unwrap();
    let err = std::fs::File::create(t.join(format!("{name}.err"))).unwrap();
    cmd.stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap()
}

/// Waits until `dir/LOCK` names `pid` as its owner.
fn wait_for_owner(dir: &Path, pid: i32) {
    let want = format!("pid {pid}\n");
    let lock = dir.join("LOCK");
    assert!(
        wait_until(Duration::from_secs(60), || {
            std::fs::read_to_string(&lock).is_ok_and(|s| s.contains(&want))
        }),
        "{} never named pid {pid}",
        lock.display()
    );
}

/// Asserts the second job failed fast, each of its `np` ranks naming the lock file and
/// the owner `pid` on this host, before any training.
fn assert_refused(out: &std::process::Output, took: Duration, np: usize, dir: &Path, pid: i32) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second job succeeded:\n{err}");
    assert!(took < Duration::from_secs(30), "refusal took {took:?}");
    let owner = format!("locked by pid {pid} on host {}", hostname());
    let lock = dir.join("LOCK").display().to_string();
    for r in 0..np {
        let prefix = format!("error: rank {r}: ");
        let line = err
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no error line of rank {r}:\n{err}"));
        assert!(
            line.contains(&lock) && line.contains(&owner),
            "rank {r}: {line}"
        );
    }
    assert!(!err.contains("step 1/"), "the second job trained:\n{err}");
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

fn latest(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("latest"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn a_second_mpirun_job_on_the_directory_fails_and_the_first_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let dir = t.join("ck");
    let mut first = common::mpirun(2);
    first.args(job_args(t, "first", &dir, STEPS));
    let mut a = spawn_logged(first, t, "first");
    let ranks = rank_pids(a.id(), 2, Duration::from_secs(60));
    wait_for_owner(&dir, ranks[0]);
    for &p in &ranks {
        signal(p, libc::SIGSTOP);
    }
    assert!(a.try_wait().unwrap().is_none(), "the first job ended early");

    let mut second = common::mpirun(2);
    second.args(job_args(t, "second", &dir, 4));
    let t0 = Instant::now();
    let out = common::run_with_timeout(second, Duration::from_secs(120));
    assert_refused(&out, t0.elapsed(), 2, &dir, ranks[0]);
    assert!(!t.join("second.jsonl").exists());

    for &p in &ranks {
        signal(p, libc::SIGCONT);
    }
    let status = wait_child(&mut a, Duration::from_secs(240));
    let err = std::fs::read_to_string(t.join("first.err")).unwrap();
    assert!(status.success(), "the first job failed: {status:?}\n{err}");
    assert_eq!(latest(&dir), format!("step-{STEPS:08}"));
}

#[test]
fn two_single_process_jobs_and_a_lock_left_by_a_killed_one() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let dir = t.join("ck");
    // A singleton's MPI session directory of its own (see common::mpirun).
    let single = |name: &str, steps: usize| {
        let session = t.join(format!("ompi-{name}"));
        std::fs::create_dir_all(&session).unwrap();
        let mut c = Command::new(common::bin());
        c.args(job_args(t, name, &dir, steps))
            .env("OMPI_MCA_orte_tmpdir_base", session);
        c
    };
    let mut a = spawn_logged(single("first", STEPS), t, "first");
    let pid = a.id() as i32;
    wait_for_owner(&dir, pid);
    signal(pid, libc::SIGSTOP);
    assert!(a.try_wait().unwrap().is_none(), "the first job ended early");

    let t0 = Instant::now();
    let out = common::run_with_timeout(single("second", 4), Duration::from_secs(120));
    assert_refused(&out, t0.elapsed(), 1, &dir, pid);

    signal(pid, libc::SIGCONT);
    let status = wait_child(&mut a, Duration::from_secs(240));
    let err = std::fs::read_to_string(t.join("first.err")).unwrap();
    assert!(status.success(), "the first job failed: {status:?}\n{err}");
    assert_eq!(latest(&dir), format!("step-{STEPS:08}"));

    // A job killed with SIGKILL while holding the lock leaves the file naming it; the
    // next job takes the lock all the same.
    let mut c = spawn_logged(single("killed", 2 * STEPS), t, "killed");
    let killed = c.id() as i32;
    wait_for_owner(&dir, killed);
    signal(killed, libc::SIGKILL);
    wait_child(&mut c, Duration::from_secs(60));
    assert!(std::fs::read_to_string(dir.join("LOCK"))
        .unwrap()
        .contains(&format!("pid {killed}\n")));
    let out = common::run_with_timeout(single("after", STEPS + 2), Duration::from_secs(120));
    assert!(
        out.status.success(),
        "a stale lock blocked the next job:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(latest(&dir), format!("step-{:08}", STEPS + 2));
}
