//! Attention heads between the token-major layout (B, T, cols) and the head-major layout
//! (B, H, T, hs) in which every (sequence, head) matrix is contiguous, so attention's
//! products are one strided-batched GEMM over B·H.

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
    let mut o = out.chunks_exact_mut(hs);
    for s in 0..b {
        for hh in 0..h {
            for ti in 0..t {
                let at = (s * t + ti) * x_cols + x_col + hh * hs;
                o.next()
                    .expect("out holds b*t*c")
                    .copy_from_slice(&x[at..at + hs]);
            }
        }
    }
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
    let mut xi = x.chunks_exact(hs);
    for s in 0..b {
        for hh in 0..h {
            for ti in 0..t {
                let at = (s * t + ti) * out_cols + out_col + hh * hs;
                out[at..at + hs].copy_from_slice(xi.next().expect("x holds b*t*c"));
            }
        }
    }
}
