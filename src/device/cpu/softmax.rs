//! Row softmax kernels on host slices: causal attention and cross-entropy.

/// att: (n, t, t), in place: row i of each matrix becomes softmax(scale * att[i, ..=i])
/// followed by zeros.
pub fn softmax_causal_fwd(att: &mut [f32], t: usize, scale: f32) {
    for mat in att.chunks_exact_mut(t * t) {
        for (i, row) in mat.chunks_exact_mut(t).enumerate() {
            let (live, masked) = row.split_at_mut(i + 1);
            let max = live.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let mut sum = 0.0f32;
            for v in live.iter_mut() {
                *v = ((*v - max) * scale).exp();
                sum += *v;
            }
            let inv = 1.0 / sum;
            live.iter_mut().for_each(|v| *v *= inv);
            masked.fill(0.0);
        }
    }
}

/// d holds dP (n, t, t) and becomes d(scores) = scale * P * (dP - sum_j P dP), causal.
pub fn softmax_causal_bwd(d: &mut [f32], p: &[f32], t: usize, scale: f32) {
    for (dm, pm) in d.chunks_exact_mut(t * t).zip(p.chunks_exact(t * t)) {
        for (i, (drow, prow)) in dm.chunks_exact_mut(t).zip(pm.chunks_exact(t)).enumerate() {
            let (dl, dmasked) = drow.split_at_mut(i + 1);
            let pl = &prow[..i + 1];
            let dot: f32 = dl.iter().zip(pl).map(|(d, p)| d * p).sum();
            for (d, p) in dl.iter_mut().zip(pl) {
                *d = scale * p * (*d - dot);
            }
            dmasked.fill(0.0);
        }
    }
}

/// logits: (rows, v); losses[r] = logsumexp(logits[r]) - logits[r, targets[r]].
pub fn crossentropy_fwd(losses: &mut [f32], logits: &[f32], targets: &[u32], v: usize) {
    for ((l, row), &tg) in losses.iter_mut().zip(logits.chunks_exact(v)).zip(targets) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let sum: f32 = row.iter().map(|x| (x - max).exp()).sum();
        *l = sum.ln() + max - row[tg as usize];
    }
}

/// In place: logits (rows, v) become scale * (softmax - onehot(targets)).
pub fn crossentropy_bwd(logits: &mut [f32], targets: &[u32], v: usize, scale: f32) {
    for (row, &tg) in logits.chunks_exact_mut(v).zip(targets) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let mut sum = 0.0f32;
        for x in row.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        let s = scale / sum;
        row.iter_mut().for_each(|x| *x *= s);
        row[tg as usize] -= scale;
    }
}
