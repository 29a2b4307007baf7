//! Bad checkpoints fail on every rank with a clear error and a non-zero exit before any
//! training step, and never hang (each run has a time limit): a missing rank file, a
//! checkpoint of another model, a corrupt rank file, a `latest` naming nothing, another
//! optimizer, a path that is no checkpoint.
mod ckpt_common;
mod common;

use ckpt_common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A good 2-rank stage 1 checkpoint of the small model after 2 steps, in `t/name`.
fn good(t: &Path, name: &str) -> PathBuf {
    let dir = t.join(name);
    train_ok(
        2,
        &t.join(format!("{name}.jsonl")),
        &[
            "zero.stage=1".into(),
            "train.micro_batch=2".into(),
            "train.steps=2".into(),
            format!("checkpoint.dir={}", dir.display()),
        ],
    );
    dir
}

/// Resumes from `resume` with `extra` overrides; asserts a failure whose stderr holds
/// every string in `expect`, with no training step logged. Returns stderr.
fn fails(t: &Path, resume: &Path, extra: &[&str], expect: &[&str]) -> String {
    let m = t.join("failed.jsonl");
    let mut e = vec![
        "zero.stage=2".to_string(),
        "train.micro_batch=2".into(),
        "train.steps=4".into(),
        format!("checkpoint.resume={}", resume.display()),
    ];
    e.extend(extra.iter().map(|s| s.to_string()));
    let mut cmd = common::mpirun(2);
    cmd.args(train_args(&m, &e));
    let out = common::run_with_timeout(cmd, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "resume from {} succeeded:\n{err}",
        resume.display()
    );
    for s in expect {
        assert!(err.contains(s), "expected {s:?} in the error:\n{err}");
    }
    assert!(!err.contains("step 1/"), "training started:\n{err}");
    assert!(!m.exists(), "metrics were written: training started");
    err
}

#[test]
fn bad_checkpoints_fail_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let ck = good(t, "good");
    let step = ck.join("step-00000002");

    // Missing rank file: named.
    let missing = t.join("missing");
    copy_dir(&step, &missing);
    std::fs::remove_file(missing.join("rank-00001.h5")).unwrap();
    fails(t, &missing, &[], &["rank-00001.h5", "rank file missing"]);

    // Another model: the unit and both sizes named.
    fails(
        t,
        &step,
        &["model.d_model=48"],
        &[
            "is of a different model",
            "unit embed has 2560 elements, this model 3840",
        ],
    );
    fails(
        t,
        &step,
        &["model.n_layer=3"],
        &["is of a different model", "4 units, this model 5"],
    );

    // Corrupt rank file: one flipped byte in the middle.
    let corrupt = t.join("corrupt");
    copy_dir(&step, &corrupt);
    let f = corrupt.join("rank-00000.h5");
    let mut bytes = std::fs::read(&f).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&f, bytes).unwrap();
    fails(t, &corrupt, &[], &["rank-00000.h5", "corrupt", "CRC-32"]);
    let v = common::single(&["ckpt", "verify", corrupt.to_str().unwrap()]);
    assert!(!v.status.success());
    assert!(String::from_utf8_lossy(&v.stderr).contains("CRC-32"));

    // `latest` naming nothing.
    std::fs::write(ck.join("latest"), "step-00000099\n").unwrap();
    fails(
        t,
        &ck,
        &[],
        &["latest", "step-00000099", "no such directory"],
    );
    // ... also through "auto".
    fails(
        t,
        Path::new("auto"),
        &[&format!("checkpoint.dir={}", ck.display())],
        &["step-00000099"],
    );
    std::fs::write(ck.join("latest"), "step-00000002\n").unwrap();

    // Another optimizer.
    fails(t, &step, &["train.optimizer=sgd"], &["optimizer", "Sgd"]);

    // Not a checkpoint at all.
    fails(t, t, &[], &["not a checkpoint"]);
}

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}
