//! `checkpoint.resume = "auto"` past a damaged newest checkpoint: a rank file with
//! flipped bytes, a truncated one, an unreadable meta.json, a `latest` naming nothing. One
//! warning names the checkpoint and why, the run resumes from the previous complete one
//! and its losses equal those of an uninterrupted run; pruning after the next save keeps
//! the good checkpoint below it; a named damaged checkpoint stays an error, and so does a
//! directory where every checkpoint is damaged.
mod ckpt_common;
mod common;

use ckpt_common::*;
use std::path::Path;
use std::process::Command;

fn base(dir: &Path, steps: usize) -> Vec<String> {
    vec![
        "zero.stage=1".into(),
        "train.micro_batch=2".into(),
        format!("train.steps={steps}"),
        format!("checkpoint.dir={}", dir.display()),
    ]
}

fn with(mut v: Vec<String>, extra: &[&str]) -> Vec<String> {
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-r").arg(from).arg(to).status();
    assert!(st.unwrap().success());
}

fn latest(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("latest"))
        .unwrap()
        .trim()
        .to_string()
}

/// Resumes `dir` with "auto" to 8 steps; asserts one warning holding `why` that names
/// `damaged`, a resume at `from`, and losses bit-identical to the uninterrupted `reference`.
fn falls_back(t: &Path, dir: &Path, damaged: &str, why: &str, from: u64, reference: &Path) {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let m = t.join(format!("{name}.jsonl"));
    let out = train_run(2, &m, &with(base(dir, 8), &["checkpoint.resume=auto"]));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "{name}: the resumed run failed:\n{err}"
    );
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{name}: one warning expected:\n{err}");
    assert!(
        warnings[0].contains(damaged) && warnings[0].contains(why),
        "{name}: the warning should name {damaged} and say {why:?}: {}",
        warnings[0]
    );
    let resumed = format!("step-{from:08} at step {from}");
    assert!(
        err.contains(&resumed),
        "{name}: not resumed from {from}:\n{err}"
    );
    let (got, want) = (losses(&m), losses(reference));
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        (from + 1..=8).collect::<Vec<_>>(),
        "{name}"
    );
    for (step, l) in &got {
        assert_eq!(
            l.to_bits(),
            want[step].to_bits(),
            "{name}: loss at step {step}"
        );
    }
    assert_eq!(latest(dir), "step-00000008", "{name}");
}

#[test]
fn auto_resume_falls_back_past_a_damaged_newest_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // The reference: 8 uninterrupted steps. The saved run: 6 steps, every 2 kept.
    let reference = t.join("reference.jsonl");
    train_ok(2, &reference, &base(&t.join("unused"), 8)[..3]);
    let good = t.join("good");
    train_ok(
        2,
        &t.join("good.jsonl"),
        &with(base(&good, 6), &["checkpoint.every=2", "checkpoint.keep=0"]),
    );
    assert_eq!(latest(&good), "step-00000006");
    let damaged = |name: &str, damage: &dyn Fn(&Path)| {
        let dir = t.join(name);
        copy_dir(&good, &dir);
        damage(&dir.join("step-00000006"));
        dir
    };

    // Flipped bytes in rank 1's file: its CRC-32 no longer matches.
    let dir = damaged("flipped", &|s| {
        let f = s.join("rank-00001.h5");
        let mut b = std::fs::read(&f).unwrap();
        let mid = b.len() / 2;
        for x in &mut b[mid..mid + 16] {
            *x ^= 0x5a;
        }
        std::fs::write(&f, b).unwrap();
    });
    falls_back(t, &dir, "step-00000006", "CRC-32", 4, &reference);

    // Rank 0's file truncated to half.
    let dir = damaged("truncated", &|s| {
        let f = s.join("rank-00000.h5");
        let n = std::fs::metadata(&f).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .unwrap()
            .set_len(n / 2)
            .unwrap();
    });
    falls_back(
        t,
        &dir,
        "rank-00000.h5",
        "bytes, meta.json says",
        4,
        &reference,
    );

    // meta.json unreadable.
    let dir = damaged("meta", &|s| {
        std::fs::write(s.join("meta.json"), "{\"format\": 1, \"st").unwrap();
    });
    falls_back(
        t,
        &dir,
        "step-00000006/meta.json",
        "not a valid checkpoint description",
        4,
        &reference,
    );

    // `latest` naming a directory that is gone: the newest complete one, step 6.
    let dir = damaged("dangling", &|_| {});
    std::fs::write(dir.join("latest"), "step-00000099\n").unwrap();
    falls_back(t, &dir, "step-00000099", "no such directory", 6, &reference);

    // Pruning after a save below the damaged step 6 keeps the good step 4 (and leaves 6
    // for a later save of step 6 to replace).
    let dir = damaged("pruned", &|s| {
        std::fs::write(s.join("meta.json"), "garbage").unwrap();
    });
    train_ok(
        2,
        &t.join("pruned.jsonl"),
        &with(
            base(&dir, 5),
            &["checkpoint.resume=auto", "checkpoint.keep=2"],
        ),
    );
    assert_eq!(latest(&dir), "step-00000005");
    for (step, kept) in [(2, false), (4, true), (5, true), (6, true)] {
        assert_eq!(
            dir.join(format!("step-{step:08}")).exists(),
            kept,
            "step {step}"
        );
    }

    // Named, a damaged checkpoint is an error on every rank (no fallback).
    let dir = damaged("named", &|s| {
        std::fs::write(s.join("meta.json"), "garbage").unwrap();
    });
    let named = format!("checkpoint.resume={}", dir.display());
    let out = train_run(2, &t.join("named.jsonl"), &with(base(&dir, 8), &[&named]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    for r in 0..2 {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("error: rank {r}: "))
                    && l.contains("step-00000006/meta.json")),
            "rank {r}:\n{err}"
        );
    }
    assert_eq!(latest(&dir), "step-00000006");

    // Every checkpoint damaged: an error on every rank, nothing deleted.
    let dir = damaged("all", &|_| {});
    for s in [2, 4, 6] {
        std::fs::write(dir.join(format!("step-{s:08}/meta.json")), "x").unwrap();
    }
    let out = train_run(
        2,
        &t.join("all.jsonl"),
        &with(base(&dir, 8), &["checkpoint.resume=auto"]),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.matches("is damaged, not resuming").count(), 3, "{err}");
    for r in 0..2 {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("error: rank {r}: "))
                    && l.contains("every checkpoint is damaged")),
            "rank {r}:\n{err}"
        );
    }
    assert!(!t.join("all.jsonl").exists(), "training started");
}
