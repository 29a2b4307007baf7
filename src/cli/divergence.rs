//! Divergence detection (docs/architecture.md, "Divergence"): a run whose loss blows up
//! should stop with an error, not train to the end and exit 0 (a bf16 run at lr = 1e3
//! once ended 300 steps at loss 1.7e8).
//!
//! The yardstick is the larger of the first step's loss and ln(classes), the
//! cross-entropy of a uniform guess: a model that has learnt nothing scores about that.
//! The run has diverged when the loss stays above [`FACTOR`] times it for [`PATIENCE`]
//! steps in a row. A spike that recovers (a few steps at 2-3x, as high learning rates
//! give early on) is not divergence. Non-finite gradients are caught in the engine.

/// How far above the yardstick counts as diverged.
const FACTOR: f64 = 4.0;
/// Steps in a row above it.
const PATIENCE: usize = 5;

pub struct DivergenceGuard {
    /// ln(classes): the uniform guess's loss.
    uniform: f64,
    yardstick: Option<f64>,
    /// Steps in a row above FACTOR x yardstick.
    above: usize,
}

impl DivergenceGuard {
    /// For a model choosing among `classes` (the vocabulary or the class count).
    pub fn new(classes: usize) -> DivergenceGuard {
        DivergenceGuard {
            uniform: (classes.max(2) as f64).ln(),
            yardstick: None,
            above: 0,
        }
    }

    /// Checks the loss of `step` (agreed across ranks, so every rank decides alike).
    /// `hint` says what to change, for the message.
    pub fn check(
        &mut self,
        step: usize,
        loss: f64,
        hint: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        let yardstick = *self.yardstick.get_or_insert(loss.max(self.uniform));
        if loss.is_finite() && loss <= FACTOR * yardstick {
            self.above = 0;
            return Ok(());
        }
        self.above += 1;
        if self.above < PATIENCE {
            return Ok(());
        }
        anyhow::bail!(
            "training diverged: loss {loss:.4e} at step {step}, above {FACTOR} x {yardstick:.4} (the first loss, or ln(classes) if larger) for {PATIENCE} steps in a row; {}",
            hint()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::DivergenceGuard;

    #[test]
    fn a_spike_passes_a_blow_up_does_not() {
        let mut g = DivergenceGuard::new(64); // ln 64 = 4.16
        for (s, l) in [4.0, 9.0, 12.0, 3.0, 2.5].into_iter().enumerate() {
            g.check(s + 1, l, String::new).unwrap();
        }
        for s in 0..4 {
            g.check(10 + s, 1.7e8, String::new).unwrap();
        }
        assert!(g.check(14, 1.7e8, String::new).is_err());
        let mut nan = DivergenceGuard::new(2);
        for s in 0..4 {
            nan.check(s, f64::NAN, String::new).unwrap();
        }
        assert!(nan.check(5, f64::NAN, String::new).is_err());
    }
}
