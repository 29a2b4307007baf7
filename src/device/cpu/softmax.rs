//! Row softmax kernels on host slices: causal attention and cross-entropy.
use super::simd::{self, multiversion};

multiversion! {
    /// att: (n, t, t), in place: row i of each matrix becomes softmax(scale * att[i, ..=i])
    /// followed by zeros.
    pub fn softmax_causal_fwd(att: &mut [f32], t: usize, scale: f32) {
        for mat in att.chunks_exact_mut(t * t) {
            for (i, row) in mat.chunks_exact_mut(t).enumerate() {
                let (live, masked) = row.split_at_mut(i + 1);
                let max = simd::max(live);
                let inv = 1.0 / simd::exp_inplace_sum(live, max, scale);
                live.iter_mut().for_each(|v| *v *= inv);
                masked.fill(0.0);
            }
        }
    }
}

multiversion! {
    /// d holds dP (n, t, t) and becomes d(scores) = scale * P * (dP - sum_j P dP), causal.
    pub fn softmax_causal_bwd(d: &mut [f32], p: &[f32], t: usize, scale: f32) {
        for (dm, pm) in d.chunks_exact_mut(t * t).zip(p.chunks_exact(t * t)) {
            for (i, (drow, prow)) in dm.chunks_exact_mut(t).zip(pm.chunks_exact(t)).enumerate() {
                let (dl, dmasked) = drow.split_at_mut(i + 1);
                let pl = &prow[..i + 1];
                let dot = simd::sum_map2(dl, pl, |d, p| d * p);
                for (d, p) in dl.iter_mut().zip(pl) {
                    *d = scale * p * (*d - dot);
                }
                dmasked.fill(0.0);
            }
        }
    }
}

multiversion! {
    /// logits: (rows, v); losses[r] = logsumexp(logits[r]) - logits[r, targets[r]].
    pub fn crossentropy_fwd(losses: &mut [f32], logits: &[f32], targets: &[u32], v: usize) {
        for ((l, row), &tg) in losses.iter_mut().zip(logits.chunks_exact(v)).zip(targets) {
            let max = simd::max(row);
            let sum = simd::sum_map(row, |x| simd::exp(x - max));
            *l = sum.ln() + max - row[tg as usize];
        }
    }
}

multiversion! {
    /// In place: logits (rows, v) become scale * (softmax - onehot(targets)).
    pub fn crossentropy_bwd(logits: &mut [f32], targets: &[u32], v: usize, scale: f32) {
        for (row, &tg) in logits.chunks_exact_mut(v).zip(targets) {
            let max = simd::max(row);
            let sum = simd::exp_inplace_sum(row, max, 1.0);
            let s = scale / sum;
            row.iter_mut().for_each(|x| *x *= s);
            row[tg as usize] -= scale;
        }
    }
}
