//! Gradient accumulation and global-norm clipping are invariant to how the global batch
//! is split: over ranks, over micro-batches, and across ZeRO stages (fp32).
//!
//! Tolerance: relative 1e-5, as in zero_equivalence.rs: the runs differ only in the order
//! f32 gradient sums are formed (per micro-batch, per rank, in reduce-scatter or
//! all-reduce), ~1e-7 relative per element, which 10 steps cannot grow past 1e-5.
mod common;
use common::*;

const BASE: [&str; 7] = [
    "train.steps=10",
    "model.n_layer=2",
    "model.d_model=32",
    "model.n_head=2",
    "model.ctx=16",
    "model.vocab=64",
    "train.lr=3e-3",
];

fn run(np: usize, micro: usize, accum: usize, stage: u8, extra: &[&str]) -> Vec<serde_json::Value> {
    let mb = format!("train.micro_batch={micro}");
    let ga = format!("train.grad_accum={accum}");
    let st = format!("zero.stage={stage}");
    let mut sets: Vec<&str> = BASE.to_vec();
    sets.extend([mb.as_str(), ga.as_str(), st.as_str()]);
    sets.extend_from_slice(extra);
    train_records(np, &sets)
}

fn grad_norms(records: &[serde_json::Value]) -> Vec<f64> {
    records
        .iter()
        .map(|r| r["grad_norm"].as_f64().expect("grad_norm"))
        .collect()
}

#[test]
fn three_by_four_accumulation_equals_twelve_by_one_in_every_stage() {
    let reference = losses(&run(1, 12, 1, 0, &[]));
    for stage in 0..=3 {
        // One rank, 4 micro-batches of 3; and 2 ranks, 2 micro-batches of 3 each.
        assert_close(
            &format!("1 rank 3x4 stage {stage}"),
            &losses(&run(1, 3, 4, stage, &[])),
            &reference,
            1e-5,
        );
        assert_close(
            &format!("2 ranks 3x2 stage {stage}"),
            &losses(&run(2, 3, 2, stage, &[])),
            &reference,
            1e-5,
        );
    }
}

#[test]
fn clipped_grad_norm_at_four_ranks_equals_one_rank_in_every_stage() {
    // clip_grad well under the observed norms (~1), so every step is clipped.
    let clip = ["train.clip_grad=0.1"];
    let one = run(1, 8, 1, 0, &clip);
    let reference = grad_norms(&one);
    assert!(
        reference.iter().all(|&n| n > 0.1),
        "every step must clip: {reference:?}"
    );
    for stage in 0..=3 {
        let four = run(4, 2, 1, stage, &clip);
        assert_close(
            &format!("grad_norm np 4 stage {stage}"),
            &grad_norms(&four),
            &reference,
            1e-5,
        );
        assert_close(
            &format!("loss np 4 stage {stage}"),
            &losses(&four),
            &losses(&one),
            1e-5,
        );
    }
}
