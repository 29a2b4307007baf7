//! `checkpoint.async = true`, caused for real under mpirun: rank files written by a
//! background thread while training goes on, committed at a later step boundary.
//! Asynchronous checkpoints are byte-identical to foreground ones (meta.json and every
//! rank file) with the same losses, and a resume from one continues exactly; `latest`
//! does not move while one rank's write is unfinished (that rank held with SIGSTOP);
//! a signal stop (SIGUSR1 to mpirun, exit 75) commits the save in flight; a write that
//! fails for real (the checkpoint directory on a full tmpfs) fails the job on every rank
//! with one line naming the rank and file, and the previous checkpoint stays intact.
mod ckpt_common;
mod common;

use ckpt_common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The larger model (3.2M parameters, a 19 MB rank file per rank at np 2, stage 2): its
/// background write takes tens of milliseconds, longer than a step.
const LARGE: [&str; 4] = [
    "model.n_layer=4",
    "model.d_model=256",
    "train.micro_batch=2",
    "zero.stage=2",
];

fn run(
    t: &Path,
    name: &str,
    stage: u8,
    dtype: &str,
    every: usize,
    asynchronous: bool,
    extra: &[String],
) -> String {
    let mut e = vec![
        format!("zero.stage={stage}"),
        format!("precision.dtype={dtype}"),
        "train.micro_batch=2".into(),
        "train.steps=12".into(),
        format!("checkpoint.every={every}"),
        "checkpoint.keep=0".into(),
        format!("checkpoint.async={asynchronous}"),
        format!("checkpoint.dir={}", t.join(name).display()),
    ];
    e.extend(extra.iter().cloned());
    let out = train_run(2, &t.join(format!("{name}.jsonl")), &e);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{name} failed:\n{err}");
    err
}

fn step_dir(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("step-{step:08}"))
}

/// Every file of every step directory of `a` equals `b`'s byte for byte.
fn same_checkpoints(a: &Path, b: &Path, steps: &[u64]) {
    for &s in steps {
        let mut files: Vec<_> = std::fs::read_dir(step_dir(a, s))
            .unwrap_or_else(|e| panic!("{}: {e}", step_dir(a, s).display()))
            .map(|e| e.unwrap().file_name())
            .collect();
        files.sort();
        assert_eq!(files.len(), 3, "step {s}: {files:?}");
        for f in files {
            let (x, y) = (
                std::fs::read(step_dir(a, s).join(&f)).unwrap(),
                std::fs::read(step_dir(b, s).join(&f)).unwrap(),
            );
            assert!(x == y, "step {s}: {f:?} differs");
        }
    }
}

fn same_losses(a: &Path, b: &Path) {
    let (la, lb) = (losses(a), losses(b));
    assert!(!lb.is_empty());
    for (step, l) in &lb {
        assert_eq!(l.to_bits(), la[step].to_bits(), "loss at step {step}");
    }
}

fn latest(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("latest"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn verify(dir: &Path) {
    let v = common::single(&["ckpt", "verify", dir.to_str().unwrap()]);
    assert!(
        v.status.success(),
        "ckpt verify {}: {}",
        dir.display(),
        String::from_utf8_lossy(&v.stderr)
    );
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

/// `train` on the large model under `mpirun -np 2`, stderr to `errf`, stdout piped.
fn spawn_large(t: &Path, name: &str, dir: &Path, steps: usize) -> std::process::Child {
    let mut e: Vec<String> = LARGE.iter().map(|s| s.to_string()).collect();
    e.extend([
        format!("train.steps={steps}"),
        "checkpoint.every=3".into(),
        "checkpoint.async=true".into(),
        format!("checkpoint.dir={}", dir.display()),
    ]);
    common::mpirun(2)
        .args(train_args(&t.join(format!("{name}.jsonl")), &e))
        .stdout(Stdio::from(
            std::fs::File::create(t.join(format!("{name}.out"))).unwrap(),
        ))
        .stderr(Stdio::from(
            std::fs::File::create(t.join(format!("{name}.err"))).unwrap(),
        ))
        .spawn()
        .unwrap()
}

#[test]
fn async_checkpoints_equal_sync_ones_and_resume_alike() {
    let tmp = common::tempdir();
    let t = tmp.path();
    run(t, "sync", 2, "fp32", 3, false, &[]);
    let err = run(t, "async", 2, "fp32", 3, true, &[]);
    assert!(
        err.contains("checkpoint: saved step 3 to") && err.contains("in the background"),
        "{err}"
    );
    same_checkpoints(&t.join("sync"), &t.join("async"), &[3, 6, 9, 12]);
    same_losses(&t.join("sync.jsonl"), &t.join("async.jsonl"));

    // Resume from the asynchronous step 6, saving asynchronously: as the sync run.
    let from = format!(
        "checkpoint.resume={}",
        step_dir(&t.join("async"), 6).display()
    );
    run(t, "resumed", 2, "fp32", 3, true, &[from]);
    same_losses(&t.join("sync.jsonl"), &t.join("resumed.jsonl"));
    same_checkpoints(&t.join("sync"), &t.join("resumed"), &[9, 12]);

    // A save every step (each waits for the one before), stage 3, bf16.
    run(t, "sync1", 3, "bf16", 1, false, &[]);
    run(t, "async1", 3, "bf16", 1, true, &[]);
    let all: Vec<u64> = (1..=12).collect();
    same_checkpoints(&t.join("sync1"), &t.join("async1"), &all);
    same_losses(&t.join("sync1.jsonl"), &t.join("async1.jsonl"));
}

/// One attempt: rank 1 stopped with SIGSTOP the moment its step-3 file appears. Returns
/// false (to try again) when its write had already ended by then.
fn latest_waits_for_every_rank(t: &Path, attempt: usize, full: u64) -> bool {
    let dir = t.join(format!("held{attempt}"));
    let mut child = spawn_large(t, &format!("held{attempt}"), &dir, 6);
    let ranks = rank_pids(child.id(), 2, Duration::from_secs(60));
    let tmp = dir.join("step-00000003.tmp");
    let (f0, f1) = (tmp.join("rank-00000.h5"), tmp.join("rank-00001.h5"));
    let seen = wait_until(Duration::from_secs(120), || f1.exists());
    signal(ranks[1], libc::SIGSTOP);
    assert!(seen, "rank 1 never began its step-3 file");
    let valid = file_len(&f1) < full && !step_dir(&dir, 3).exists();
    if valid {
        // Rank 0 writes its whole file and goes on to the next boundary; the commit
        // must wait for rank 1.
        assert!(
            wait_until(Duration::from_secs(60), || file_len(&f0) == full),
            "rank 0's file never reached {full} bytes"
        );
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(latest(&dir), None, "latest moved while rank 1 was writing");
        assert!(!step_dir(&dir, 3).exists(), "step 3 committed early");
    }
    signal(ranks[1], libc::SIGCONT);
    let status = wait_child(&mut child, Duration::from_secs(120));
    let err = std::fs::read_to_string(t.join(format!("held{attempt}.err"))).unwrap();
    assert!(status.success(), "{err}");
    assert_eq!(latest(&dir).as_deref(), Some("step-00000006"));
    verify(&step_dir(&dir, 3));
    verify(&step_dir(&dir, 6));
    valid
}

#[test]
fn latest_moves_only_after_every_rank_wrote() {
    let tmp = common::tempdir();
    let t = tmp.path();
    // The full size of a rank file, from a foreground save of the same model.
    let mut e: Vec<String> = LARGE.iter().map(|s| s.to_string()).collect();
    e.extend([
        "train.steps=1".to_string(),
        format!("checkpoint.dir={}", t.join("ref").display()),
    ]);
    train_ok(2, &t.join("ref.jsonl"), &e);
    let full = file_len(&step_dir(&t.join("ref"), 1).join("rank-00000.h5"));
    assert!(full > 10 << 20, "rank file of {full} bytes");
    // Rank 1's write can end before the SIGSTOP lands: try again (up to 5 times).
    assert!(
        (0..5).any(|a| latest_waits_for_every_rank(t, a, full)),
        "in 5 attempts rank 1's write always ended before it was stopped"
    );
}

/// SIGUSR1 to mpirun once the step-3 save has begun: the ranks stop at a later step,
/// commit step 3 (in flight or done) and save the stop step, and exit 75.
#[test]
fn a_signal_stop_commits_the_save_in_flight() {
    let tmp = common::tempdir();
    let t = tmp.path();
    let dir = t.join("ck");
    let mut child = spawn_large(t, "stop", &dir, 300);
    let seen = wait_until(Duration::from_secs(120), || {
        dir.join("step-00000003.tmp").exists() || step_dir(&dir, 3).exists()
    });
    assert!(seen, "the step-3 save never began");
    signal(child.id() as i32, libc::SIGUSR1);
    let status = wait_child(&mut child, Duration::from_secs(120));
    let err = std::fs::read_to_string(t.join("stop.err")).unwrap();
    let out = std::fs::read_to_string(t.join("stop.out")).unwrap();
    assert_eq!(status.code(), Some(75), "{out}\n{err}");
    assert!(
        err.contains("saved step 3 to") && err.contains("in the background"),
        "step 3 was not committed:\n{err}"
    );
    let stopped: u64 = latest(&dir).expect("latest")["step-".len()..]
        .parse()
        .unwrap();
    assert!((4..300).contains(&stopped), "stopped at {stopped}");
    assert!(out.contains(&format!("stopped early at step {stopped} of 300")));
    verify(&step_dir(&dir, 3));
    verify(&step_dir(&dir, stopped));
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "unfinished saves left: {left:?}");
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_failed_background_write_fails_the_job_on_every_rank() {
    let tmp = common::tempdir();
    let t = tmp.path();
    // 56 MiB holds step 3 (two 19 MB rank files) but not step 6 beside it (keep = 2).
    let fs = match Tmpfs::mount(&t.join("full"), "56m") {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("skipped: cannot mount a tmpfs (needs root): {e}");
            return;
        }
    };
    let dir = fs.0.join("ck");
    let mut child = spawn_large(t, "full", &dir, 12);
    let status = wait_child(&mut child, Duration::from_secs(120));
    let err = std::fs::read_to_string(t.join("full.err")).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    for r in 0..2 {
        let line = err
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "error: rank {r}: checkpoint step 6 written in the background failed: rank "
                ))
            })
            .unwrap_or_else(|| panic!("rank {r} did not report the failure:\n{err}"));
        assert!(
            line.contains("step-00000006.tmp/rank-0000") && line.contains("No space left"),
            "the line names no file or cause: {line}"
        );
    }
    assert!(!err.contains("panic"), "{err}");
    assert_eq!(latest(&dir).as_deref(), Some("step-00000003"), "{err}");
    verify(&step_dir(&dir, 3));
}
