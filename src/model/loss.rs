//! Softmax cross-entropy at the end of a model: the targets, the per-row losses and their
//! mean, and the gradient scale backward starts from. Shared by the GPT and the MLP; and
//! how many rows the logits classify right ([`count_correct`], a classifier's accuracy).
use crate::device::Backend;

pub struct CrossEntropy<B: Backend> {
    /// (N,) target class of each row.
    targets: B::Ids,
    /// (N,) per-row losses on the backend, and the host copy their mean is taken from.
    losses: B::Buf,
    losses_host: Vec<f32>,
    /// Mean loss of the last forward (NaN before the first).
    loss: f32,
    /// Backward starts from `grad_scale * d(mean loss)/d(logits)`.
    grad_scale: f32,
}

impl<B: Backend> CrossEntropy<B> {
    /// Buffers for up to `max_rows` rows.
    pub fn new(be: &B, max_rows: usize) -> anyhow::Result<Self> {
        Ok(CrossEntropy {
            targets: be.alloc_ids(max_rows)?,
            losses: be.alloc(max_rows)?,
            losses_host: vec![0.0; max_rows],
            loss: f32::NAN,
            grad_scale: 1.0,
        })
    }

    /// Uploads the batch's targets (already checked against the number of classes).
    pub fn set_targets(&mut self, be: &B, targets: &[u32]) {
        be.upload_ids(&mut self.targets, targets);
    }

    /// Loss of `logits` (rows, classes): the mean over rows, summed in f64.
    pub fn forward(&mut self, be: &B, logits: &B::Buf, rows: usize, classes: usize) {
        be.crossentropy_fwd(&mut self.losses, logits, &self.targets, rows, classes);
        let host = &mut self.losses_host[..rows];
        be.download(&self.losses, host);
        self.loss = (host.iter().map(|&l| l as f64).sum::<f64>() / rows.max(1) as f64) as f32;
    }

    /// Turns `logits` (rows, classes) in place into `grad_scale` x the gradient of the mean
    /// loss: grad_scale / rows x (softmax - onehot(targets)).
    pub fn backward(&self, be: &B, logits: &mut B::Buf, rows: usize, classes: usize) {
        let scale = self.grad_scale / rows as f32;
        be.crossentropy_bwd(logits, &self.targets, rows, classes, scale);
    }

    pub fn loss(&self) -> f32 {
        self.loss
    }

    pub fn set_grad_scale(&mut self, s: f32) {
        self.grad_scale = s;
    }
}

/// Rows of `logits` (rows, classes) row-major whose argmax is their target (`targets`:
/// (rows,)). Ties go to the lowest class, as `torch.argmax`; a row with a NaN logit counts
/// as wrong.
pub fn count_correct(logits: &[f32], targets: &[u32], classes: usize) -> usize {
    logits
        .chunks_exact(classes.max(1))
        .zip(targets)
        .filter(|(row, &t)| {
            let mut best = 0;
            for (c, &v) in row.iter().enumerate() {
                if v.is_nan() {
                    return false;
                }
                if v > row[best] {
                    best = c;
                }
            }
            best == t as usize
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::count_correct;

    #[test]
    fn argmax_ties_and_nan() {
        // 4 rows, 3 classes.
        let logits = [
            0.1,
            0.9,
            0.0, // argmax 1
            0.5,
            0.5,
            0.2, // tie: 0
            -1.0,
            -2.0,
            -0.5, // argmax 2
            f32::NAN,
            1.0,
            0.0, // NaN: wrong
        ];
        assert_eq!(count_correct(&logits, &[1, 0, 2, 1], 3), 4 - 1);
        assert_eq!(count_correct(&logits, &[0, 1, 0, 1], 3), 0);
    }
}
