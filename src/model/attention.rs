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
    /// Q·Kᵀ-shaped product for sequence `s` over all heads: (T, hs)·(T, hs)ᵀ -> (T, T).
    /// Operands: A at column `a_col` of qkv-like rows (stride `lda`), B likewise.
    fn tt(&self, s: usize, a_col: usize, lda: usize, b_col: usize, ldb: usize) -> Gemm {
        let (t, hs) = (self.t, self.hs());
        Gemm::new(t, t, hs, false, true)
            .offsets(s * t * lda + a_col, s * t * ldb + b_col, s * self.h * t * t)
            .lds(lda, ldb, t)
            .batched(self.h, hs, hs, t * t)
    }
    /// (T, T)·(T, hs) -> (T, hs) for sequence `s` over all heads, with op(A) = A or Aᵀ
    /// (A the (T, T) matrices), B at column `b_col` (stride `ldb`), C at column `c_col`
    /// (stride `ldc`).
    #[allow(clippy::too_many_arguments)]
    fn tv(
        &self,
        s: usize,
        trans_a: bool,
        b_col: usize,
        ldb: usize,
        c_col: usize,
        ldc: usize,
    ) -> Gemm {
        let (t, hs) = (self.t, self.hs());
        Gemm::new(t, hs, t, trans_a, false)
            .offsets(s * self.h * t * t, s * t * ldb + b_col, s * t * ldc + c_col)
            .lds(t, ldb, ldc)
            .batched(self.h, t * t, hs, hs)
    }
}

/// att = causal softmax(q kᵀ / sqrt(hs)); y = att v.
pub fn forward<B: Backend>(be: &B, y: &mut B::Buf, att: &mut B::Buf, qkv: &B::Buf, d: Dims) {
    let (c3, c) = (3 * d.c, d.c);
    for s in 0..d.b {
        be.gemm(&d.tt(s, 0, c3, c, c3), qkv, qkv, att);
    }
    be.softmax_causal_fwd(att, d.b * d.h, d.t, d.scale());
    for s in 0..d.b {
        be.gemm(&d.tv(s, false, 2 * c, c3, 0, c), att, qkv, y);
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
        // dP = dy vᵀ; dv = Pᵀ dy
        be.gemm(&d.tt(s, 0, c, 2 * c, c3), dy, qkv, datt);
        be.gemm(&d.tv(s, true, 0, c, 2 * c, c3), att, dy, dqkv);
    }
    be.softmax_causal_bwd(datt, att, d.b * d.h, d.t, d.scale());
    for s in 0..d.b {
        // dq = dS k; dk = dSᵀ q
        be.gemm(&d.tv(s, false, c, c3, 0, c3), datt, qkv, dqkv);
        be.gemm(&d.tv(s, true, 0, c3, c, c3), datt, qkv, dqkv);
    }
}
