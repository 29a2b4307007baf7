//! Elementwise kernels on host slices: bias/residual add, GELU, ReLU.
use super::simd::{self, multiversion};

multiversion! {
    /// out: (rows, cols); `out[r, :] += bias + resid[r, :]` (each optional).
    pub fn bias_residual(out: &mut [f32], cols: usize, bias: Option<&[f32]>, resid: Option<&[f32]>) {
        match (bias, resid) {
            (Some(b), Some(r)) => {
                for (o, r) in out.chunks_exact_mut(cols).zip(r.chunks_exact(cols)) {
                    for ((o, r), b) in o.iter_mut().zip(r).zip(&b[..cols]) {
                        *o += r + b;
                    }
                }
            }
            (Some(b), None) => {
                for o in out.chunks_exact_mut(cols) {
                    for (o, b) in o.iter_mut().zip(&b[..cols]) {
                        *o += b;
                    }
                }
            }
            (None, Some(r)) => {
                for (o, r) in out.iter_mut().zip(r) {
                    *o += r;
                }
            }
            (None, None) => {}
        }
    }
}

multiversion! {
    /// out: (rows, cols); `out[r, :] = bias + resid[r, :]` (resid optional).
    pub fn bias_residual_set(out: &mut [f32], cols: usize, bias: &[f32], resid: Option<&[f32]>) {
        let b = &bias[..cols];
        match resid {
            Some(r) => {
                for (o, r) in out.chunks_exact_mut(cols).zip(r.chunks_exact(cols)) {
                    for ((o, r), b) in o.iter_mut().zip(r).zip(b) {
                        *o = r + b;
                    }
                }
            }
            None => {
                for o in out.chunks_exact_mut(cols) {
                    o.copy_from_slice(b);
                }
            }
        }
    }
}

multiversion! {
    /// dout: (rows, cols); db (cols) += column sums.
    pub fn bias_bwd(db: &mut [f32], dout: &[f32], cols: usize) {
        let db = &mut db[..cols];
        for row in dout.chunks_exact(cols) {
            for (d, x) in db.iter_mut().zip(row) {
                *d += x;
            }
        }
    }
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_A: f32 = 0.044_715;

/// σ(2u) for the GELU's tanh argument u: 0.5 (1 + tanh(u)) = 1 / (1 + e^{-2u}), one exp
/// and one division (exact 0 and 1 far out, absolute error about 2e-7 elsewhere).
#[inline(always)]
fn half_one_plus_tanh(x: f32, x2: f32) -> f32 {
    let u = SQRT_2_OVER_PI * x * (GELU_A * x2 + 1.0);
    1.0 / (1.0 + simd::exp(-2.0 * u))
}

multiversion! {
    /// out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    pub fn gelu_fwd(out: &mut [f32], x: &[f32]) {
        for (o, &x) in out.iter_mut().zip(x) {
            *o = x * half_one_plus_tanh(x, x * x);
        }
    }
}

multiversion! {
    /// d *= gelu'(x) = s + x s (1 − s) 2 du/dx, with s = 0.5 (1 + tanh(u)).
    pub fn gelu_bwd(d: &mut [f32], x: &[f32]) {
        for (d, &x) in d.iter_mut().zip(x) {
            let x2 = x * x;
            let s = half_one_plus_tanh(x, x2);
            let du2 = 2.0 * SQRT_2_OVER_PI * (3.0 * GELU_A * x2 + 1.0);
            *d *= s + x * s * (1.0 - s) * du2;
        }
    }
}

multiversion! {
    /// x = max(x, 0).
    pub fn relu_fwd(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = if *v > 0.0 { *v } else { 0.0 };
        }
    }
}

multiversion! {
    /// d = 0 where y <= 0.
    pub fn relu_bwd(d: &mut [f32], y: &[f32]) {
        for (d, &y) in d.iter_mut().zip(y) {
            *d = if y > 0.0 { *d } else { 0.0 };
        }
    }
}
