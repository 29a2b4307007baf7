//! Crash safety: a rank killed with SIGKILL while a checkpoint is being written leaves
//! `latest` on the previous complete checkpoint, and the next run resumes from it.
mod ckpt_common;
mod common;

use ckpt_common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// The pid of world rank `rank` among the direct children of mpirun `parent`.
fn rank_pid(parent: u32, rank: usize) -> Option<i32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // Field 4 (after "pid (comm) state") is the parent pid.
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let want = format!("OMPI_COMM_WORLD_RANK={rank}");
        if env.split(|&b| b == 0).any(|kv| kv == want.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

fn wait_for(path: &Path, limit: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn kill_during_write_keeps_previous_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let dir = t.join("ck");
    let base = |steps: usize| {
        vec![
            "train.micro_batch=2".to_string(),
            "zero.stage=2".into(),
            format!("train.steps={steps}"),
            "checkpoint.every=3".into(),
            "checkpoint.resume=auto".into(),
            format!("checkpoint.dir={}", dir.display()),
        ]
    };
    // 1. "auto" with no checkpoint yet starts fresh and saves step 3.
    train_ok(2, &t.join("m1.jsonl"), &base(3));
    assert_eq!(
        std::fs::read_to_string(dir.join("latest")).unwrap().trim(),
        "step-00000003"
    );

    // 2. Resume, train to 6, and kill rank 1 after it wrote its step-6 file.
    let mut cmd = common::mpirun(2);
    cmd.args(train_args(&t.join("m2.jsonl"), &base(6)))
        .env(zerotrain::checkpoint::DELAY_ENV, "20000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let file = dir.join("step-00000006.tmp").join("rank-00001.h5");
    let written = wait_for(&file, Duration::from_secs(60));
    let pid = rank_pid(child.id(), 1);
    if let Some(pid) = pid {
        // SAFETY: plain kill(2) of a process this test started (via mpirun).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("mpirun did not end after rank 1 was killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(written, "rank 1 never wrote {}", file.display());
    assert!(pid.is_some(), "rank 1's pid not found");
    assert!(!status.success(), "the killed job exited successfully");
    assert_eq!(
        std::fs::read_to_string(dir.join("latest")).unwrap().trim(),
        "step-00000003",
        "latest moved although step 6 was never committed"
    );
    assert!(!dir.join("step-00000006").exists());

    // 3. The next run resumes from step 3, redoes 4..6 and commits step 6.
    train_ok(2, &t.join("m3.jsonl"), &base(6));
    assert_eq!(
        losses(&t.join("m3.jsonl"))
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![4, 5, 6]
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("latest")).unwrap().trim(),
        "step-00000006"
    );
    assert!(
        !dir.join("step-00000006.tmp").exists(),
        "the leftover .tmp was not removed"
    );
    let v = common::single(&["ckpt", "verify", dir.to_str().unwrap()]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}
