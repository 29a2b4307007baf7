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

multiversion! {
    /// out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    pub fn gelu_fwd(out: &mut [f32], x: &[f32]) {
        for (o, &x) in out.iter_mut().zip(x) {
            let u = SQRT_2_OVER_PI * x * (GELU_A * x * x + 1.0);
            *o = 0.5 * x * (1.0 + simd::tanh(u));
        }
    }
}

multiversion! {
    /// d *= gelu'(x).
    pub fn gelu_bwd(d: &mut [f32], x: &[f32]) {
        for (d, &x) in d.iter_mut().zip(x) {
            let x2 = x * x;
            let u = SQRT_2_OVER_PI * x * (GELU_A * x2 + 1.0);
            let th = simd::tanh(u);
            let du = SQRT_2_OVER_PI * (3.0 * GELU_A * x2 + 1.0);
            let g = 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du;
            *d *= g;
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
