//! Token plus position embedding on host slices.
use super::simd::multiversion;

multiversion! {
    /// out: (b, t, c) = wte[ids[b, t]] + wpe[t]; ids: (b, t); wte: (vocab, c); wpe: (ctx, c).
    pub fn embedding_fwd(out: &mut [f32], ids: &[u32], wte: &[f32], wpe: &[f32], t: usize, c: usize) {
        for (i, (o, &id)) in out.chunks_exact_mut(c).zip(ids).enumerate() {
            let pos = i % t;
            let tok = &wte[id as usize * c..][..c];
            let p = &wpe[pos * c..][..c];
            for ((o, a), b) in o.iter_mut().zip(tok).zip(p) {
                *o = a + b;
            }
        }
    }
}

multiversion! {
    /// dwte[ids[b, t]] += dout[b, t]; dwpe[t] += dout[b, t].
    pub fn embedding_bwd(
        dwte: &mut [f32],
        dwpe: &mut [f32],
        dout: &[f32],
        ids: &[u32],
        t: usize,
        c: usize,
    ) {
        for (i, (d, &id)) in dout.chunks_exact(c).zip(ids).enumerate() {
            let pos = i % t;
            for (g, x) in dwte[id as usize * c..][..c].iter_mut().zip(d) {
                *g += x;
            }
            for (g, x) in dwpe[pos * c..][..c].iter_mut().zip(d) {
                *g += x;
            }
        }
    }
}
