//! Causal multi-head self-attention over a fused qkv projection.
//!
//! qkv: (B, T, 3C) row-major, holding q, k, v side by side, head h at columns
//! [h·hs, (h+1)·hs) of each; att: (B, H, T, T) softmax probabilities; y: (B, T, C).
//! q, k and v are first split into the head-major layout (B, H, T, hs), where every
//! (sequence, head) matrix is contiguous, so each causal product is one strided-batched
//! GEMM over all B·H matrices per block of query rows (llm.c permutes the same way).
use crate::device::{Backend, Gemm};

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub b: usize,
    pub t: usize,
    pub c: usize,
    pub h: usize,
}

/// Head-major scratch, shared by all layers: q, k, v as (3, B, H, T, hs); y in forward
/// and dy in backward as (B, H, T, hs); dq, dk, dv as (3, B, H, T, hs).
pub struct Heads<B: Backend> {
    pub qkv: B::Buf,
    pub y: B::Buf,
    pub dqkv: B::Buf,
}

impl<B: Backend> Heads<B> {
    /// Scratch for up to `n` = B·T rows of width `c`.
    pub fn new(be: &B, n: usize, c: usize) -> anyhow::Result<Self> {
        Ok(Heads {
            qkv: be.alloc(3 * n * c)?,
            y: be.alloc(n * c)?,
            dqkv: be.alloc(3 * n * c)?,
        })
    }
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
    /// Elements of one (B, H, T, hs) tensor.
    fn n(&self) -> usize {
        self.b * self.t * self.c
    }
    /// Row blocks `[r0, r1)` of `QB` query (or key) positions covering `0..t`.
    fn blocks(&self) -> impl Iterator<Item = (usize, usize)> {
        let t = self.t;
        (0..t).step_by(QB).map(move |r0| (r0, (r0 + QB).min(t)))
    }
    /// Q·Kᵀ-shaped product over all B·H matrices, query rows `[r0, r1)`: A (T, hs) at
    /// `a_off`, B (T, hs) at `b_off`, both head-major -> att[r0..r1, 0..r1] of each
    /// (T, T) matrix; the keys past r1 are masked for every row of the block, so they are
    /// not computed.
    fn tt(&self, r0: usize, r1: usize, a_off: usize, b_off: usize) -> Gemm {
        let (t, hs) = (self.t, self.hs());
        Gemm::new(r1 - r0, r1, hs, false, true)
            .offsets(a_off + r0 * hs, b_off, r0 * t)
            .lds(hs, hs, t)
            .batched(self.b * self.h, t * hs, t * hs, t * t)
    }
    /// Causal (T, T)·(T, hs) over all B·H matrices, rows `[r0, r1)` of the result:
    /// att[r0..r1, 0..r1] · B[0..r1] (B head-major at `b_off`) into C (head-major at
    /// `c_off`).
    fn tv(&self, r0: usize, r1: usize, b_off: usize, c_off: usize) -> Gemm {
        let (t, hs) = (self.t, self.hs());
        Gemm::new(r1 - r0, hs, r1, false, false)
            .offsets(r0 * t, b_off, c_off + r0 * hs)
            .lds(t, hs, hs)
            .batched(self.b * self.h, t * t, t * hs, t * hs)
    }
    /// Causal (T, T)ᵀ·(T, hs) over all B·H matrices, rows `[c0, c1)` of the result (key
    /// positions): att[c0..T, c0..c1]ᵀ · B[c0..T] (only queries at or after a key attend
    /// to it; B head-major at `b_off`) into C (head-major at `c_off`).
    fn tv_t(&self, c0: usize, c1: usize, b_off: usize, c_off: usize) -> Gemm {
        let (t, hs) = (self.t, self.hs());
        Gemm::new(c1 - c0, hs, t - c0, true, false)
            .offsets(c0 * t + c0, b_off + c0 * hs, c_off + c0 * hs)
            .lds(t, hs, hs)
            .batched(self.b * self.h, t * t, t * hs, t * hs)
    }
}

/// Query/key positions per block of the causal products: the blocks above the diagonal
/// are skipped (for T = 128, 10 of 16 blocks are computed).
const QB: usize = 32;

/// Splits qkv (B, T, 3C) into `heads`: q, k, v each (B, H, T, hs), at 0, n and 2n.
fn split_qkv<B: Backend>(be: &B, heads: &mut B::Buf, qkv: &B::Buf, d: Dims) {
    let (n, c) = (d.n(), d.c);
    for part in 0..3 {
        be.heads_split(heads, part * n, qkv, d.b, d.t, c, d.h, 3 * c, part * c);
    }
}

/// att = causal softmax(q kᵀ / sqrt(hs)); y = att v.
pub fn forward<B: Backend>(
    be: &B,
    y: &mut B::Buf,
    att: &mut B::Buf,
    qkv: &B::Buf,
    heads: &mut Heads<B>,
    d: Dims,
) {
    let (n, c) = (d.n(), d.c);
    split_qkv(be, &mut heads.qkv, qkv, d);
    let (q, k, v) = (0, n, 2 * n);
    for (r0, r1) in d.blocks() {
        be.gemm(&d.tt(r0, r1, q, k), &heads.qkv, &heads.qkv, att);
    }
    be.softmax_causal_fwd(att, d.b * d.h, d.t, d.scale());
    for (r0, r1) in d.blocks() {
        be.gemm(&d.tv(r0, r1, v, 0), att, &heads.qkv, &mut heads.y);
    }
    be.heads_merge(y, &heads.y, 0, d.b, d.t, c, d.h, c, 0);
}

/// Given dy (B, T, C): dqkv (B, T, 3C) is overwritten with the gradient w.r.t. qkv;
/// datt (B, H, T, T) and `heads` are scratch.
#[allow(clippy::too_many_arguments)]
pub fn backward<B: Backend>(
    be: &B,
    dqkv: &mut B::Buf,
    datt: &mut B::Buf,
    dy: &B::Buf,
    att: &B::Buf,
    qkv: &B::Buf,
    heads: &mut Heads<B>,
    d: Dims,
) {
    let (n, c) = (d.n(), d.c);
    split_qkv(be, &mut heads.qkv, qkv, d);
    let (q, k, v) = (0, n, 2 * n);
    // heads.y: dy; heads.dqkv: dq, dk, dv at 0, n, 2n
    let (dq, dk, dv) = (0, n, 2 * n);
    be.heads_split(&mut heads.y, 0, dy, d.b, d.t, c, d.h, c, 0);
    for (r0, r1) in d.blocks() {
        // dP = dy vᵀ; dv = Pᵀ dy
        be.gemm(&d.tt(r0, r1, 0, v), &heads.y, &heads.qkv, datt);
        be.gemm(&d.tv_t(r0, r1, 0, dv), att, &heads.y, &mut heads.dqkv);
    }
    be.softmax_causal_bwd(datt, att, d.b * d.h, d.t, d.scale());
    for (r0, r1) in d.blocks() {
        // dq = dS k; dk = dSᵀ q
        be.gemm(&d.tv(r0, r1, k, dq), datt, &heads.qkv, &mut heads.dqkv);
        be.gemm(&d.tv_t(r0, r1, q, dk), datt, &heads.qkv, &mut heads.dqkv);
    }
    for (part, at) in [dq, dk, dv].into_iter().enumerate() {
        be.heads_merge(dqkv, &heads.dqkv, at, d.b, d.t, c, d.h, 3 * c, part * c);
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
        let mut heads = Heads::new(&be, n, d.c).unwrap();
        forward(&be, &mut y, &mut att, &qkv, &mut heads, d);
        backward(&be, &mut dqkv, &mut datt, &dy, &att, &qkv, &mut heads, d);
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
