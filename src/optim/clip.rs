//! Gradient-norm pieces: each rank computes [`sum_squares`] of its shard, the engine
//! all-reduces the partial sums, and [`clip_coef`] turns the global norm into the factor
//! every shard is scaled by. A non-finite global sum of squares is the fp16 overflow
//! signal; [`has_non_finite`] scans one buffer for the same condition.

/// Elements per independent accumulator lane; 8 f64 lanes let the loop vectorise while
/// the summation order stays fixed (so the result is deterministic for a given slice).
const LANES: usize = 8;

/// Σ x² of a slice, accumulated in f64 (a partial for the global gradient norm).
pub fn sum_squares(x: &[f32]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            let v = v as f64;
            *a += v * v;
        }
    }
    let mut s: f64 = acc.iter().sum();
    for &v in tail {
        s += (v as f64) * (v as f64);
    }
    s
}

/// Whether any element is infinite or NaN (exponent bits all ones). Scans in blocks with
/// an integer OR-reduction that vectorises, returning at the first block with a hit.
pub fn has_non_finite(x: &[f32]) -> bool {
    const EXP: u32 = 0x7f80_0000;
    x.chunks(4096).any(|c| {
        c.iter()
            .fold(0u32, |a, v| a | ((v.to_bits() & EXP == EXP) as u32))
            != 0
    })
}

/// The factor PyTorch's `clip_grad_norm_` multiplies gradients by:
/// `max_norm / (global_norm + 1e-6)`, capped at 1. `max_norm <= 0` means no clipping (1).
/// A NaN norm gives 1 (the fp16 overflow check, not clipping, handles non-finite grads).
pub fn clip_coef(global_norm: f64, max_norm: f64) -> f32 {
    if max_norm <= 0.0 {
        return 1.0;
    }
    let c = max_norm / (global_norm + 1e-6);
    if c < 1.0 {
        c as f32
    } else {
        1.0
    }
}

/// What a diverged-loss message adds when clipping is off (`train.clip_grad = 0`): the
/// cli's loss check and the engine's non-finite gradient check say the same.
pub fn clip_hint(clipping: bool) -> &'static str {
    if clipping {
        ""
    } else {
        " or set train.clip_grad (e.g. 1.0)"
    }
}
