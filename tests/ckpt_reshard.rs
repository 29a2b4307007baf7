//! Load-time resharding: a stage 2 checkpoint written by 4 ranks resumes at 2 ranks
//! stage 3, 3 ranks stage 1 and 1 rank stage 0, and the next steps' losses match
//! continuing at 4 ranks.
mod ckpt_common;
mod common;

use ckpt_common::*;

#[test]
fn stage2_np4_resumes_at_other_worlds_and_stages() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let ck = t.join("np4");
    // The global micro-batch is 12 samples at every world size (micro_batch x world),
    // so all runs see the same samples in the same steps.
    train_ok(
        4,
        &t.join("np4.jsonl"),
        &[
            "zero.stage=2".into(),
            "train.micro_batch=3".into(),
            "train.steps=5".into(),
            "checkpoint.every=3".into(),
            format!("checkpoint.dir={}", ck.display()),
        ],
    );
    let reference = losses(&t.join("np4.jsonl"));
    for (np, stage, mb) in [(2, 3, 6), (3, 1, 4), (1, 0, 12)] {
        let m = t.join(format!("np{np}.jsonl"));
        train_ok(
            np,
            &m,
            &[
                format!("zero.stage={stage}"),
                format!("train.micro_batch={mb}"),
                "train.steps=5".into(),
                format!("checkpoint.resume={}", ck.join("step-00000003").display()),
            ],
        );
        let got = losses(&m);
        assert_eq!(
            got.keys().copied().collect::<Vec<_>>(),
            vec![4, 5],
            "np {np}"
        );
        // Step 4's loss checks the resharded parameters, step 5's also the resharded
        // Adam moments and step count. Not bitwise: with another world size the loss and
        // gradient sums over ranks (and over rows of a longer per-rank micro-batch) are
        // added in another order, which changes the last bits of each fp32 sum
        // (~1e-7 relative each, a few 1e-8 measured after the Adam step); 1e-5 leaves
        // room for that and still catches any wrong slice, which changes the loss by far
        // more.
        for (step, l) in &got {
            let r = reference[step];
            let rel = (l - r).abs() / r.abs();
            assert!(
                rel < 1e-5,
                "np {np} stage {stage}: step {step} loss {l} vs {r} (rel {rel:e})"
            );
        }
    }
}

/// Losses of steps 4-5 after resuming a 4-rank stage-2 checkpoint at (np, stage), all
/// runs (writer and readers) with the extra `device` sets.
fn resumed_losses(t: &std::path::Path, tag: &str, device: &[&str]) -> Vec<(u64, u64)> {
    let ck = t.join(format!("np4-{tag}"));
    let dev: Vec<String> = device.iter().map(|s| s.to_string()).collect();
    let with = |mut v: Vec<String>| {
        v.extend(dev.iter().cloned());
        v
    };
    train_ok(
        4,
        &t.join(format!("np4-{tag}.jsonl")),
        &with(vec![
            "zero.stage=2".into(),
            "train.micro_batch=3".into(),
            "train.steps=5".into(),
            "checkpoint.every=3".into(),
            format!("checkpoint.dir={}", ck.display()),
        ]),
    );
    let mut out = Vec::new();
    for (np, stage, mb) in [(2, 3, 6), (3, 1, 4)] {
        let m = t.join(format!("np{np}-{tag}.jsonl"));
        train_ok(
            np,
            &m,
            &with(vec![
                format!("zero.stage={stage}"),
                format!("train.micro_batch={mb}"),
                "train.steps=5".into(),
                format!("checkpoint.resume={}", ck.join("step-00000003").display()),
            ]),
        );
        out.extend(losses(&m).into_iter().map(|(s, l)| (s, l.to_bits())));
    }
    out
}

/// Resharding on the simulated device (checkpoint pieces downloaded at save, uploaded at
/// load, over either transport) is bit-identical to resharding on the CPU.
#[test]
fn resharding_on_the_simulated_device_is_bit_identical_to_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let cpu = resumed_losses(tmp.path(), "cpu", &["system.device=\"cpu\""]);
    assert_eq!(cpu.len(), 4);
    for (tag, aware) in [("direct", "on"), ("staged", "off")] {
        let aware = format!("system.cuda_aware=\"{aware}\"");
        let sim = resumed_losses(tmp.path(), tag, &["system.device=\"sim\"", &aware]);
        assert_eq!(sim, cpu, "sim {tag}: (step, loss bits) after resharding");
    }
}
