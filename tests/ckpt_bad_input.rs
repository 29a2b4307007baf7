//! Bad checkpoints fail on every rank with a clear error and a non-zero exit before any
//! training step, and never hang (each run has a time limit): a missing rank file, a
//! checkpoint of another model, a corrupt rank file, a `latest` naming nothing, another
//! optimizer, a path that is no checkpoint, a meta.json edited by hand.
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

    // `latest` naming nothing, when named (through "auto" it falls back to the newest
    // complete checkpoint: tests/ckpt_fallback.rs).
    std::fs::write(ck.join("latest"), "step-00000099\n").unwrap();
    fails(
        t,
        &ck,
        &[],
        &["latest", "step-00000099", "no such directory"],
    );
    std::fs::write(ck.join("latest"), "step-00000002\n").unwrap();

    // Another optimizer.
    fails(t, &step, &["train.optimizer=sgd"], &["optimizer", "Sgd"]);

    // Not a checkpoint at all.
    fails(t, t, &[], &["not a checkpoint"]);
}

/// Every rank's error line (`error: rank R: ...`) holds every string in `expect`.
fn on_every_rank(err: &str, np: usize, expect: &[&str]) {
    for r in 0..np {
        let prefix = format!("error: rank {r}: ");
        let line = err
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no error line of rank {r}:\n{err}"));
        for s in expect {
            assert!(line.contains(s), "rank {r}: expected {s:?} in {line:?}");
        }
    }
}

/// A copy of the step directory `step` as `t/name/<its name>`, with `edit` applied to
/// its meta.json as JSON.
fn edited(t: &Path, step: &Path, name: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let dir = t.join(name).join(step.file_name().unwrap());
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    copy_dir(step, &dir);
    let path = dir.join("meta.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    dir
}

/// meta.json edited by hand: each edit fails on every rank, naming meta.json and the key.
#[test]
fn edited_meta_json_is_refused_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let step = good(t, "good").join("step-00000002");
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, Vec<&str>)> = vec![
        (
            "stage",
            Box::new(|v| v["stage"] = 7.into()),
            vec!["key `stage`: 7 is not a ZeRO stage"],
        ),
        (
            "step-dir",
            Box::new(|v| v["step"] = 4.into()),
            vec!["key `step`: 4, but the directory is step-00000002"],
        ),
        (
            "dtype",
            Box::new(|v| v["dtype"] = "fp8".into()),
            vec!["key `dtype`: unknown variant `fp8`"],
        ),
        (
            "world",
            Box::new(|v| {
                v["world"] = 1.into();
                v["files"].as_array_mut().unwrap().truncate(1);
            }),
            vec!["key `world`: 1, but the directory also holds rank-00001.h5"],
        ),
        (
            "units",
            Box::new(|v| v["units"][1]["numel"] = 100.into()),
            vec!["key `units[1].numel`: 100, the model's unit h.0 has"],
        ),
    ];
    for (name, edit, expect) in &cases {
        let dir = edited(t, &step, name, edit);
        let mut want = vec!["meta.json: key `"];
        want.extend(expect.iter().copied());
        let err = fails(t, &dir, &[], &want);
        on_every_rank(&err, 2, &want);
    }
    // A false step in a directory whose name says nothing: the rank files record theirs.
    let renamed = t.join("renamed");
    copy_dir(&step, &renamed);
    let path = renamed.join("meta.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen("\"step\": 2,", "\"step\": 1,", 1).replacen(
        "\"optimizer_steps\": 2,",
        "\"optimizer_steps\": 1,",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let err = fails(
        t,
        &renamed,
        &[],
        &["meta.json: key `step`: 1, but", "records step 2"],
    );
    on_every_rank(&err, 2, &["key `step`: 1, but"]);
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
