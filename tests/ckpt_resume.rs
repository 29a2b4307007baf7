//! Exact resume: 6 steps, save, resume, 6 more gives bit-identical losses, master
//! weights, optimizer states and consolidated parameters to 12 uninterrupted steps, in
//! stages 0-3 for fp32 and bf16, and for fp16 across a skipped step (data position, lr
//! schedule, loss scaler and Adam step included).
mod ckpt_common;
mod common;

use ckpt_common::*;
use std::path::Path;

/// Run A: 12 steps saving at 6 and 12. Run B: resumes A's step 6 into its own directory
/// and runs to 12. Everything at step 12 must be bitwise equal.
fn check(stage: u8, dtype: &str, extra: &[&str], tmp: &Path) {
    let tag = format!("s{stage}-{dtype}");
    let common = [
        format!("zero.stage={stage}"),
        format!("precision.dtype={dtype}"),
        "train.micro_batch=2".into(),
        "train.steps=12".into(),
        "checkpoint.every=6".into(),
    ];
    let common: Vec<String> = common
        .into_iter()
        .chain(extra.iter().map(|s| s.to_string()))
        .collect();
    let (a, b) = (tmp.join(format!("a-{tag}")), tmp.join(format!("b-{tag}")));
    let (ma, mb) = (
        tmp.join(format!("a-{tag}.jsonl")),
        tmp.join(format!("b-{tag}.jsonl")),
    );
    let mut ea = common.to_vec();
    ea.push(format!("checkpoint.dir={}", a.display()));
    train_ok(2, &ma, &ea);
    let mut eb = common.to_vec();
    eb.push(format!("checkpoint.dir={}", b.display()));
    eb.push(format!(
        "checkpoint.resume={}",
        a.join("step-00000006").display()
    ));
    train_ok(2, &mb, &eb);

    let (la, lb) = (losses(&ma), losses(&mb));
    assert_eq!(
        lb.keys().copied().collect::<Vec<_>>(),
        (7..=12).collect::<Vec<_>>(),
        "{tag}"
    );
    for (step, l) in &lb {
        assert_eq!(
            l.to_bits(),
            la[step].to_bits(),
            "{tag}: loss at step {step}: {l} vs {}",
            la[step]
        );
    }
    assert_same_states(&a.join("step-00000012"), &b.join("step-00000012"), &tag);
    // The consolidated files, as a user would compare them.
    let (ha, hb) = (
        tmp.join(format!("a-{tag}.h5")),
        tmp.join(format!("b-{tag}.h5")),
    );
    for (dir, h) in [(&a, &ha), (&b, &hb)] {
        let o = common::single(&[
            "ckpt",
            "consolidate",
            dir.to_str().unwrap(),
            "--out",
            h.to_str().unwrap(),
        ]);
        assert!(
            o.status.success(),
            "{tag}: consolidate: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let (fa, fb) = (
        hdf5::File::open(&ha).unwrap(),
        hdf5::File::open(&hb).unwrap(),
    );
    let names = fa.member_names().unwrap();
    assert_eq!(names, fb.member_names().unwrap());
    assert!(
        names.contains(&"h.1.mlp.c_fc.weight".to_string()),
        "{names:?}"
    );
    for n in &names {
        let (x, y) = (
            fa.dataset(n).unwrap().read_raw::<f32>().unwrap(),
            fb.dataset(n).unwrap().read_raw::<f32>().unwrap(),
        );
        assert_eq!(bits(&x), bits(&y), "{tag}: consolidated {n}");
    }
}

#[test]
fn exact_resume_fp32_stages_0_to_3() {
    let tmp = tempfile::tempdir().unwrap();
    for stage in 0..=3 {
        check(stage, "fp32", &[], tmp.path());
    }
    // Saving does not perturb training: a run without checkpoints has the same losses.
    let m = tmp.path().join("plain.jsonl");
    train_ok(
        2,
        &m,
        &sets(&["zero.stage=0", "train.micro_batch=2", "train.steps=12"]),
    );
    let with = losses(&tmp.path().join("a-s0-fp32.jsonl"));
    for (step, l) in losses(&m) {
        assert_eq!(l.to_bits(), with[&step].to_bits(), "step {step}");
    }
}

#[test]
fn exact_resume_bf16_stages_0_to_3() {
    let tmp = tempfile::tempdir().unwrap();
    for stage in 0..=3 {
        check(stage, "bf16", &[], tmp.path());
    }
}

/// fp16 with a loss-scale window of 3: the scale grows to 2^19 by step 10 and overflows
/// at step 11 (a skipped step, so optimizer updates lag the step count), after the
/// resume. The loss scaler and Adam's step count must both be restored.
#[test]
fn exact_resume_fp16_with_a_skipped_step() {
    let tmp = tempfile::tempdir().unwrap();
    check(2, "fp16", &["precision.loss_scale_window=3"], tmp.path());
    let m = loss_scales(&tmp.path().join("b-s2-fp16.jsonl"));
    assert!(
        m.windows(2).any(|w| w[1] < w[0]),
        "no overflow after the resume: {m:?}"
    );
}

/// Exact resume on the simulated device, over both transports: the checkpoint's pieces
/// are downloaded from device memory at save and uploaded at load.
#[test]
fn exact_resume_on_the_simulated_device() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = "system.device=\"sim\"";
    check(3, "bf16", &[sim, "system.cuda_aware=\"off\""], tmp.path());
    check(1, "fp32", &[sim, "system.cuda_aware=\"on\""], tmp.path());
}

fn loss_scales(path: &Path) -> Vec<f64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss_scale"]
                .as_f64()
                .unwrap()
        })
        .collect()
}
