//! World sizes past the point where a unit's padding covers whole slices (issue 14): with
//! a tiny GPT on the addition task (units of 928, 12704, 12704 and 64 elements), the
//! `head` unit's slices are all padding on 2 of 6 ranks, 3 of 7, 4 of 8, 9 of 13 and 12 of
//! 16, and the embedding's on the last rank at 13 and 16. Every stage must train there exactly like one rank on the same global
//! batch, and checkpoints holding such empty pieces must save, verify, consolidate and
//! resume at another world size.
//!
//! Tolerance: relative 1e-5 per step, as in `zero_equivalence.rs`: the runs differ only in
//! the order of fp32 gradient and loss sums (over ranks vs over one rank's rows,
//! reduce-scatter vs all-reduce), ~1e-7 relative per sum; a wrong slice or a lost shard
//! moves the loss by far more.
mod ckpt_common;
mod common;

use ckpt_common::{losses as step_losses, sets, train_ok};
use common::*;

/// The tiny GPT (2 layers, width 32, ctx 16) on the addition task (vocab 13).
const TINY_GPT: [&str; 3] = ["data.source=\"hdf5\"", "model.vocab=13", "train.steps=6"];

/// Training losses of the tiny GPT, `np` ranks of `micro_batch` samples each.
fn tiny_gpt(np: usize, stage: u8, micro_batch: usize) -> Vec<f64> {
    let (st, mb) = (
        format!("zero.stage={stage}"),
        format!("train.micro_batch={micro_batch}"),
    );
    let mut s = TINY_GPT.to_vec();
    s.extend([
        shared_addition_data(),
        st.as_str(),
        mb.as_str(),
        "train.lr=1e-2",
    ]);
    losses(&train_records(np, &s))
}

fn every_stage_matches_one_rank(np: usize) {
    // Two samples per rank; one rank takes the whole global batch.
    let reference = tiny_gpt(1, 0, 2 * np);
    assert!(
        reference[5] < reference[0],
        "the reference should learn: {reference:?}"
    );
    for stage in 0..=3 {
        assert_close(
            &format!("np {np} stage {stage}"),
            &tiny_gpt(np, stage, 2),
            &reference,
            1e-5,
        );
    }
}

#[test]
fn every_stage_at_6_ranks_matches_one_rank() {
    every_stage_matches_one_rank(6);
}

#[test]
fn every_stage_at_7_ranks_matches_one_rank() {
    every_stage_matches_one_rank(7);
}

#[test]
fn every_stage_at_8_ranks_matches_one_rank() {
    every_stage_matches_one_rank(8);
}

#[test]
fn every_stage_at_13_ranks_matches_one_rank() {
    every_stage_matches_one_rank(13);
}

#[test]
fn every_stage_at_16_ranks_matches_one_rank() {
    every_stage_matches_one_rank(16);
}

/// Writes a checkpoint at step 3 of 6 with `np_a` ranks at `stage_a`, resumes it with
/// `np_b` ranks at `stage_b`, and compares steps 4-6 with the uninterrupted run. The global
/// batch is 48 samples at both world sizes (16 x 3 and 3 x 16).
fn resume_across(np_a: usize, stage_a: u8, np_b: usize, stage_b: u8) {
    let tmp = tempdir();
    let (ck, ma, mb) = (
        tmp.path().join("ck"),
        tmp.path().join("a.jsonl"),
        tmp.path().join("b.jsonl"),
    );
    let run = |np: usize, stage: u8| {
        let mut s = sets(&TINY_GPT);
        s.extend([
            shared_addition_data().to_string(),
            format!("zero.stage={stage}"),
            format!("train.micro_batch={}", 48 / np),
        ]);
        s
    };
    let mut a = run(np_a, stage_a);
    a.extend(sets(&["checkpoint.every=3"]));
    a.push(format!("checkpoint.dir={}", ck.display()));
    train_ok(np_a, &ma, &a);
    let saved = ck.join("step-00000003");
    for tool in ["verify", "inspect"] {
        let o = single(&["ckpt", tool, saved.to_str().unwrap()]);
        assert!(
            o.status.success(),
            "ckpt {tool} of the np {np_a} checkpoint: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let h5 = tmp.path().join("model.h5");
    let o = single(&[
        "ckpt",
        "consolidate",
        saved.to_str().unwrap(),
        "--out",
        h5.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ln_f = hdf5::File::open(&h5)
        .and_then(|f| f.dataset("ln_f.weight")?.read_raw::<f32>())
        .expect("consolidated ln_f.weight");
    assert_eq!(
        ln_f.len(),
        32,
        "the all-padding ranks' empty pieces add nothing"
    );

    let mut b = run(np_b, stage_b);
    b.push(format!("checkpoint.resume={}", saved.display()));
    train_ok(np_b, &mb, &b);
    let (la, lb) = (step_losses(&ma), step_losses(&mb));
    assert_eq!(lb.keys().copied().collect::<Vec<_>>(), vec![4, 5, 6]);
    let tag = format!("np {np_a} stage {stage_a} -> np {np_b} stage {stage_b}");
    let (want, got): (Vec<f64>, Vec<f64>) = lb.iter().map(|(s, l)| (la[s], *l)).unzip();
    assert_close(&tag, &got, &want, 1e-5);
}

#[test]
fn a_checkpoint_written_at_16_ranks_resumes_on_3() {
    resume_across(16, 3, 3, 2);
}

#[test]
fn a_checkpoint_written_at_3_ranks_resumes_on_16() {
    resume_across(3, 1, 16, 3);
}
