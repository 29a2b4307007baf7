//! LayerNorm over the last dimension on host slices.

/// Variance epsilon, as GPT-2 and PyTorch use.
pub const EPS: f32 = 1e-5;

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
        let mu = x.iter().sum::<f32>() / c as f32;
        let var = x.iter().map(|v| (v - mu) * (v - mu)).sum::<f32>() / c as f32;
        let rs = 1.0 / (var + EPS).sqrt();
        for (((o, x), w), b) in o.iter_mut().zip(x).zip(w).zip(b) {
            *o = (x - mu) * rs * w + b;
        }
        *m = mu;
        *r = rs;
    }
}

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
        // mean over the row of dnorm = dout * w and of dnorm * norm
        let mut s1 = 0.0f32;
        let mut s2 = 0.0f32;
        for ((d, x), w) in dout.iter().zip(x).zip(w) {
            let dn = d * w;
            s1 += dn;
            s2 += dn * (x - mu) * rs;
        }
        let (s1, s2) = (s1 / c as f32, s2 / c as f32);
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
