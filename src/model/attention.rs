//! Causal multi-head self-attention over a fused qkv projection.
//!
//! qkv: (B, T, 3C) row-major, holding q, k, v side by side, head h at columns
//! [h·hs, (h+1)·hs) of each; att: (B, H, T, T) softmax probabilities; y: (B, T, C).
//! Scores and values are GEMMs batched over the H heads of each sequence.
use crate::device::{Backend, Gemm};

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub b: usize,
    pub t: usize,
    pub c: usize,
    pub h: usize,
}

impl Dims {
    /// Head size C / H.
    pub fn hs(&self) -> usize {
        self.c / self.h
    }
    /// Score scale 1/sqrt(hs).
    pub fn scale(&self) -> f32 {
        1.0 / (self.hs() as f32).sqrt()
    }
    /// Row blocks `[r0, r1)` of `QB` query (or key) positions covering `0..t`.
    fn blocks(&self) -> impl Iterator<Item = (usize, usize)> {
        let t = self.t;
        (0..t).step_by(QB).map(move |r0| (r0, (r0 + QB).min(t)))
    }
    /// Q·Kᵀ-shaped product for sequence `s`, query rows `[r0, r1)`, over all heads:
    /// (r1 − r0, hs)·(r1, hs)ᵀ -> att[r0..r1, 0..r1] of each (T, T) matrix; the keys past
    /// r1 are masked for every row of the block, so they are not computed.
    /// Operands: A at column `a_col` of qkv-like rows (stride `lda`), B likewise.
    #[allow(clippy::too_many_arguments)]
    fn tt(
        &self,
        s: usize,
        r0: usize,
        r1: usize,
        a_col: usize,
        lda: usize,
        b_col: usize,
        ldb: usize,
    ) -> Gemm {
        let (t, hs) = (self.t, self.hs());
        Gemm::new(r1 - r0, r1, hs, false, true)
            .offsets(
                (s * t + r0) * lda + a_col,
                s * t * ldb + b_col,
                s * self.h * t * t + r0 * t,
            )
            .lds(lda, ldb, t)
            .batched(self.h, hs, hs, t * t)
    }
    /// Causal (T, T)·(T, hs) for sequence `s` over all heads, rows `[r0, r1)` of the
    /// result: att[r0..r1, 0..r1] · B[0..r1] (B at column `b_col`, stride `ldb`) into C
    /// at column `c_col` (stride `ldc`), scaled onto C by `beta`.
    #[allow(clippy::too_many_arguments)]
    fn tv(
        &self,
        s: usize,
        r0: usize,
        r1: usize,
        b_col: usize,
        ldb: usize,
        c_col: usize,
        ldc: usize,
    ) -> Gemm {
        let (t, hs) = (self.t, self.hs());
        Gemm::new(r1 - r0, hs, r1, false, false)
            .offsets(
                s * self.h * t * t + r0 * t,
                s * t * ldb + b_col,
                (s * t + r0) * ldc + c_col,
            )
            .lds(t, ldb, ldc)
            .batched(self.h, t * t, hs, hs)
    }
    /// Causal (T, T)ᵀ·(T, hs) for sequence `s` over all heads, rows `[c0, c1)` of the
    /// result (key positions): att[c0..T, c0..c1]ᵀ · B[c0..T] (only queries at or after a
    /// key attend to it) into C at column `c_col` (stride `ldc`).
    #[allow(clippy::too_many_arguments)]
    fn tv_t(
        &self,
        s: usize,
        c0: usize,
        c1: usize,
        b_col: usize,
        ldb: usize,
        c_col: usize,
        ldc: usize,
    ) -> Gemm {
        let (t, hs) = (self.t, self.hs());
        Gemm::new(c1 - c0, hs, t - c0, true, false)
            .offsets(
                s * self.h * t * t + c0 * t + c0,
                (s * t + c0) * ldb + b_col,
                (s * t + c0) * ldc + c_col,
            )
            .lds(t, ldb, ldc)
            .batched(self.h, t * t, hs, hs)
    }
}

/// Query/key positions per block of the causal products: the blocks above the diagonal
/// are skipped (for T = 128, 10 of 16 blocks are computed).
const QB: usize = 32;

/// att = causal softmax(q kᵀ / sqrt(hs)); y = att v.
pub fn forward<B: Backend>(be: &B, y: &mut B::Buf, att: &mut B::Buf, qkv: &B::Buf, d: Dims) {
    let (c3, c) = (3 * d.c, d.c);
    for s in 0..d.b {
        for (r0, r1) in d.blocks() {
            be.gemm(&d.tt(s, r0, r1, 0, c3, c, c3), qkv, qkv, att);
        }
    }
    be.softmax_causal_fwd(att, d.b * d.h, d.t, d.scale());
    for s in 0..d.b {
        for (r0, r1) in d.blocks() {
            be.gemm(&d.tv(s, r0, r1, 2 * c, c3, 0, c), att, qkv, y);
        }
    }
}

/// Given dy (B, T, C): dqkv (B, T, 3C) is overwritten with the gradient w.r.t. qkv;
/// datt (B, H, T, T) is scratch.
pub fn backward<B: Backend>(
    be: &B,
    dqkv: &mut B::Buf,
    datt: &mut B::Buf,
    dy: &B::Buf,
    att: &B::Buf,
    qkv: &B::Buf,
    d: Dims,
) {
    let (c3, c) = (3 * d.c, d.c);
    for s in 0..d.b {
        for (r0, r1) in d.blocks() {
            // dP = dy vᵀ; dv = Pᵀ dy
            be.gemm(&d.tt(s, r0, r1, 0, c, 2 * c, c3), dy, qkv, datt);
            be.gemm(&d.tv_t(s, r0, r1, 0, c, 2 * c, c3), att, dy, dqkv);
        }
    }
    be.softmax_causal_bwd(datt, att, d.b * d.h, d.t, d.scale());
    for s in 0..d.b {
        for (r0, r1) in d.blocks() {
            // dq = dS k; dk = dSᵀ q
            be.gemm(&d.tv(s, r0, r1, c, c3, 0, c3), datt, qkv, dqkv);
            be.gemm(&d.tv_t(s, r0, r1, 0, c3, c, c3), datt, qkv, dqkv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Cpu;

    /// Plain causal attention on (b, t, 3c) qkv: y and, given dy, dqkv (f64 reference).
    fn naive(qkv: &[f32], dy: &[f32], d: Dims) -> (Vec<f64>, Vec<f64>) {
        let (t, c, hs) = (d.t, d.c, d.hs());
        let at = |s: usize, i: usize, col: usize| qkv[(s * t + i) * 3 * c + col] as f64;
        let mut y = vec![0.0; d.b * t * c];
        let mut dq = vec![0.0; d.b * t * 3 * c];
        let sc = d.scale() as f64;
        for s in 0..d.b {
            for h in 0..d.h {
                let (qc, kc, vc) = (h * hs, c + h * hs, 2 * c + h * hs);
                for i in 0..t {
                    let sco: Vec<f64> = (0..=i)
                        .map(|j| {
                            (0..hs)
                                .map(|e| at(s, i, qc + e) * at(s, j, kc + e))
                                .sum::<f64>()
                                * sc
                        })
                        .collect();
                    let m = sco.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = sco.iter().map(|v| (v - m).exp()).sum();
                    let p: Vec<f64> = sco.iter().map(|v| (v - m).exp() / z).collect();
                    let dyr = |e: usize| dy[(s * t + i) * c + h * hs + e] as f64;
                    let mut dp = vec![0.0; i + 1];
                    for j in 0..=i {
                        for e in 0..hs {
                            y[(s * t + i) * c + h * hs + e] += p[j] * at(s, j, vc + e);
                            dp[j] += dyr(e) * at(s, j, vc + e);
                            dq[(s * t + j) * 3 * c + vc + e] += p[j] * dyr(e);
                        }
                    }
                    let dot: f64 = (0..=i).map(|j| p[j] * dp[j]).sum();
                    for j in 0..=i {
                        let ds = p[j] * (dp[j] - dot) * sc;
                        for e in 0..hs {
                            dq[(s * t + i) * 3 * c + qc + e] += ds * at(s, j, kc + e);
                            dq[(s * t + j) * 3 * c + kc + e] += ds * at(s, i, qc + e);
                        }
                    }
                }
            }
        }
        (y, dq)
    }

    /// The blocked causal products (T not a multiple of the block, several blocks) agree
    /// with plain attention. Tolerance: f32 sums of ~70 products of O(1) terms round to
    /// ~1e-6 relative; 1e-4 absolute leaves a wide margin and still catches any missing
    /// or misplaced block (errors O(0.1)).
    #[test]
    fn blocked_matches_naive() {
        let be = Cpu::new(1);
        let d = Dims {
            b: 2,
            t: 2 * QB + 7,
            c: 8,
            h: 2,
        };
        let n = d.b * d.t;
        let rnd = |k: usize, len: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * 7919 + k * 104729) % 1000) as f32 / 500.0 - 1.0)
                .collect()
        };
        let (qkv_h, dy_h) = (rnd(1, n * 3 * d.c), rnd(2, n * d.c));
        let mut qkv = be.alloc(qkv_h.len()).unwrap();
        be.upload(&mut qkv, &qkv_h);
        let mut dy = be.alloc(dy_h.len()).unwrap();
        be.upload(&mut dy, &dy_h);
        let mut y = be.alloc(n * d.c).unwrap();
        let bh = d.b * d.h * d.t * d.t;
        let (mut att, mut datt) = (be.alloc(bh).unwrap(), be.alloc(bh).unwrap());
        // stale garbage in the scratch must not leak into results
        be.fill(&mut att, 0, bh, 7.0);
        be.fill(&mut datt, 0, bh, -3.0);
        let mut dqkv = be.alloc(n * 3 * d.c).unwrap();
        be.fill(&mut dqkv, 0, n * 3 * d.c, 5.0);
        forward(&be, &mut y, &mut att, &qkv, d);
        backward(&be, &mut dqkv, &mut datt, &dy, &att, &qkv, d);
        let (yr, dqr) = naive(&qkv_h, &dy_h, d);
        let close = |a: &[f32], b: &[f64], what: &str| {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!((*x as f64 - y).abs() < 1e-4, "{what}[{i}] = {x}, want {y}");
            }
        };
        close(be.host(&y).unwrap(), &yr, "y");
        close(be.host(&dqkv).unwrap(), &dqr, "dqkv");
    }
}
