//! Attention heads between the token-major layout (B, T, cols) and the head-major layout
//! (B, H, T, hs) in which every (sequence, head) matrix is contiguous, so attention's
//! products are one strided-batched GEMM over B·H.

/// Calls `f(token_major, head_major)` with the start of every run of `hs = c/h` elements
/// (one head of one token): in (b, t, cols) at column `col`, and in (b, h, t, hs).
fn head_rows(
    b: usize,
    t: usize,
    c: usize,
    h: usize,
    cols: usize,
    col: usize,
    mut f: impl FnMut(usize, usize),
) {
    let hs = c / h;
    let mut at = 0;
    for s in 0..b {
        for hh in 0..h {
            for ti in 0..t {
                f((s * t + ti) * cols + col + hh * hs, at);
                at += hs;
            }
        }
    }
}

/// out: (b, h, t, c/h) = the `c` columns at `x_col` of x: (b, t, x_cols).
#[allow(clippy::too_many_arguments)]
pub fn heads_split(
    out: &mut [f32],
    x: &[f32],
    b: usize,
    t: usize,
    c: usize,
    h: usize,
    x_cols: usize,
    x_col: usize,
) {
    let hs = c / h;
    head_rows(b, t, c, h, x_cols, x_col, |tok, hd| {
        out[hd..hd + hs].copy_from_slice(&x[tok..tok + hs])
    });
}

/// The inverse: x (b, h, t, c/h) into the `c` columns at `out_col` of out (b, t, out_cols).
#[allow(clippy::too_many_arguments)]
pub fn heads_merge(
    out: &mut [f32],
    x: &[f32],
    b: usize,
    t: usize,
    c: usize,
    h: usize,
    out_cols: usize,
    out_col: usize,
) {
    let hs = c / h;
    head_rows(b, t, c, h, out_cols, out_col, |tok, hd| {
        out[tok..tok + hs].copy_from_slice(&x[hd..hd + hs])
    });
}
