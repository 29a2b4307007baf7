//! LayerNorm over the last dimension on host slices.
use super::simd::{self, multiversion};

/// Variance epsilon, as GPT-2 and PyTorch use.
pub const EPS: f32 = 1e-5;

multiversion! {
    /// x, out: (rows, c); mean, rstd: (rows); w, b: (c).
    pub fn layernorm_fwd(
        out: &mut [f32],
        mean: &mut [f32],
        rstd: &mut [f32],
        x: &[f32],
        w: &[f32],
        b: &[f32],
        c: usize,
    ) {
        let (w, b) = (&w[..c], &b[..c]);
        let rows = out.chunks_exact_mut(c).zip(x.chunks_exact(c));
        for ((o, x), (m, r)) in rows.zip(mean.iter_mut().zip(rstd.iter_mut())) {
            let mu = simd::sum_map(x, |v| v) / c as f32;
            let var = simd::sum_map(x, |v| (v - mu) * (v - mu)) / c as f32;
            let rs = 1.0 / (var + EPS).sqrt();
            for (((o, x), w), b) in o.iter_mut().zip(x).zip(w).zip(b) {
                *o = (x - mu) * rs * w + b;
            }
            *m = mu;
            *r = rs;
        }
    }
}

multiversion! {
    /// dx (rows, c) += input gradient; dw, db (c) += parameter gradients.
    #[allow(clippy::too_many_arguments)]
    pub fn layernorm_bwd(
        dx: &mut [f32],
        dw: &mut [f32],
        db: &mut [f32],
        dout: &[f32],
        x: &[f32],
        w: &[f32],
        mean: &[f32],
        rstd: &[f32],
        c: usize,
    ) {
        let (w, dw, db) = (&w[..c], &mut dw[..c], &mut db[..c]);
        let rows = dx
            .chunks_exact_mut(c)
            .zip(dout.chunks_exact(c))
            .zip(x.chunks_exact(c));
        for (((dx, dout), x), (&mu, &rs)) in rows.zip(mean.iter().zip(rstd)) {
            // means over the row of dnorm = dout * w and of dnorm * norm
            let s1 = simd::sum_map2(dout, w, |d, w| d * w) / c as f32;
            let s2 = dot3(dout, w, x, mu) * rs / c as f32;
            let cols = dx
                .iter_mut()
                .zip(dout)
                .zip(x)
                .zip(w)
                .zip(dw.iter_mut())
                .zip(db.iter_mut());
            for (((((dx, d), x), w), dw), db) in cols {
                let norm = (x - mu) * rs;
                *db += d;
                *dw += d * norm;
                *dx += rs * (d * w - s1 - norm * s2);
            }
        }
    }
}

/// Σ d·w·(x − mu) with per-lane accumulators.
#[inline(always)]
fn dot3(d: &[f32], w: &[f32], x: &[f32], mu: f32) -> f32 {
    let mut acc = [0.0f32; simd::LANES];
    let mut cd = d.chunks_exact(simd::LANES);
    let mut cw = w.chunks_exact(simd::LANES);
    let mut cx = x.chunks_exact(simd::LANES);
    for ((d, w), x) in (&mut cd).zip(&mut cw).zip(&mut cx) {
        for (((a, d), w), x) in acc.iter_mut().zip(d).zip(w).zip(x) {
            *a += d * w * (x - mu);
        }
    }
    let tail: f32 = cd
        .remainder()
        .iter()
        .zip(cw.remainder())
        .zip(cx.remainder())
        .map(|((d, w), x)| d * w * (x - mu))
        .sum();
    acc.iter().sum::<f32>() + tail
}
