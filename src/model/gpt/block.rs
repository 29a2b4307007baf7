//! One pre-LayerNorm transformer block, forward and backward.
//!
//! x -> ln1 -> qkv -> attention -> atty -> c_proj (+ x) = res2
//! res2 -> ln2 -> c_fc -> fch -> gelu -> fcg -> c_proj (+ res2) = out
//! All activations are (N = B·T, width) row-major.
use super::layout::BlockLayout;
use crate::device::Backend;
use crate::model::attention::{self, Dims, Heads};

/// What one block keeps from forward for backward.
pub struct BlockActs<B: Backend> {
    pub ln1: B::Buf,
    pub ln1_stats: B::Buf,
    pub qkv: B::Buf,
    pub att: B::Buf,
    pub atty: B::Buf,
    pub res2: B::Buf,
    pub ln2: B::Buf,
    pub ln2_stats: B::Buf,
    pub fch: B::Buf,
    pub fcg: B::Buf,
}

impl<B: Backend> BlockActs<B> {
    /// Buffers for up to `n` rows of width `c` and `bh` attention matrices of `t x t`.
    pub fn new(be: &B, n: usize, c: usize, bh: usize, t: usize) -> anyhow::Result<Self> {
        Ok(BlockActs {
            ln1: be.alloc(n * c)?,
            ln1_stats: be.alloc(2 * n)?,
            qkv: be.alloc(n * 3 * c)?,
            att: be.alloc(bh * t * t)?,
            atty: be.alloc(n * c)?,
            res2: be.alloc(n * c)?,
            ln2: be.alloc(n * c)?,
            ln2_stats: be.alloc(2 * n)?,
            fch: be.alloc(n * 4 * c)?,
            fcg: be.alloc(n * 4 * c)?,
        })
    }
}

/// Gradient scratch shared by all blocks.
pub struct BlockScratch<B: Backend> {
    /// (N, C): datty, then dln1 / dln2.
    pub dtmp: B::Buf,
    /// (N, 3C)
    pub dqkv: B::Buf,
    /// (B, H, T, T)
    pub datt: B::Buf,
    /// (N, 4C)
    pub dfc: B::Buf,
    /// Attention's head-major scratch (forward too).
    pub heads: Heads<B>,
}

impl<B: Backend> BlockScratch<B> {
    pub fn new(be: &B, n: usize, c: usize, bh: usize, t: usize) -> anyhow::Result<Self> {
        Ok(BlockScratch {
            dtmp: be.alloc(n * c)?,
            dqkv: be.alloc(n * 3 * c)?,
            datt: be.alloc(bh * t * t)?,
            dfc: be.alloc(n * 4 * c)?,
            heads: Heads::new(be, n, c)?,
        })
    }
}

/// out (N, C) = block(x); `heads` is attention's scratch.
#[allow(clippy::too_many_arguments)]
pub fn forward<B: Backend>(
    be: &B,
    l: &BlockLayout,
    a: &mut BlockActs<B>,
    heads: &mut Heads<B>,
    x: &B::Buf,
    out: &mut B::Buf,
    p: &B::Buf,
    d: Dims,
) {
    let (n, c) = (d.b * d.t, d.c);
    be.layernorm_fwd(&mut a.ln1, &mut a.ln1_stats, x, p, l.ln1_w, l.ln1_b, n, c);
    l.attn.forward(be, &mut a.qkv, &a.ln1, p, n, None);
    attention::forward(be, &mut a.atty, &mut a.att, &a.qkv, heads, d);
    l.proj.forward(be, &mut a.res2, &a.atty, p, n, Some(x));
    be.layernorm_fwd(
        &mut a.ln2,
        &mut a.ln2_stats,
        &a.res2,
        p,
        l.ln2_w,
        l.ln2_b,
        n,
        c,
    );
    l.fc.forward(be, &mut a.fch, &a.ln2, p, n, None);
    be.gelu_fwd(&mut a.fcg, &a.fch, n * 4 * c);
    l.fc_proj.forward(be, out, &a.fcg, p, n, Some(&a.res2));
}

/// dres holds d(out) (N, C) and becomes d(x); parameter gradients accumulate into g.
#[allow(clippy::too_many_arguments)]
pub fn backward<B: Backend>(
    be: &B,
    l: &BlockLayout,
    a: &BlockActs<B>,
    s: &mut BlockScratch<B>,
    dres: &mut B::Buf,
    x: &B::Buf,
    p: &B::Buf,
    g: &mut B::Buf,
    d: Dims,
) {
    let (n, c) = (d.b * d.t, d.c);
    // MLP branch: out = res2 + c_proj(gelu(c_fc(ln2(res2))))
    l.fc_proj
        .backward(be, Some((&mut s.dfc, false)), g, dres, &a.fcg, p, n);
    be.gelu_bwd(&mut s.dfc, &a.fch, n * 4 * c);
    l.fc.backward(be, Some((&mut s.dtmp, false)), g, &s.dfc, &a.ln2, p, n);
    be.layernorm_bwd(
        dres,
        g,
        l.ln2_w,
        l.ln2_b,
        &s.dtmp,
        &a.res2,
        p,
        &a.ln2_stats,
        n,
        c,
    );
    // attention branch: res2 = x + c_proj(attn(c_attn(ln1(x))))
    l.proj
        .backward(be, Some((&mut s.dtmp, false)), g, dres, &a.atty, p, n);
    let heads = &mut s.heads;
    attention::backward(
        be,
        &mut s.dqkv,
        &mut s.datt,
        &s.dtmp,
        &a.att,
        &a.qkv,
        heads,
        d,
    );
    l.attn
        .backward(be, Some((&mut s.dtmp, false)), g, &s.dqkv, &a.ln1, p, n);
    be.layernorm_bwd(dres, g, l.ln1_w, l.ln1_b, &s.dtmp, x, p, &a.ln1_stats, n, c);
}
