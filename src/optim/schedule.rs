//! Learning-rate schedules, as nanoGPT's `get_lr`: a linear warm-up, then constant or a
//! cosine decay to `min_lr`.
use crate::config::{Schedule, TrainConfig};

/// The learning rate at optimizer step `step` (0-based).
///
/// - Warm-up (`step < warmup`): `lr·(step+1)/(warmup+1)`, rising linearly towards `lr`
///   (nanoGPT's current form, which never uses a zero learning rate).
/// - `constant`: `lr` after warm-up.
/// - `cosine`: from `lr` at `step = warmup` down to `min_lr` at `step = decay_steps`
///   (`decay_steps = 0` means `cfg.steps`) following half a cosine, and `min_lr` after.
pub fn lr_at(cfg: &TrainConfig, step: usize) -> f64 {
    let (lr, min_lr, warmup) = (cfg.lr, cfg.min_lr, cfg.warmup);
    if step < warmup {
        return lr * (step + 1) as f64 / (warmup + 1) as f64;
    }
    match cfg.schedule {
        Schedule::Constant => lr,
        Schedule::Cosine => {
            let decay = if cfg.decay_steps == 0 {
                cfg.steps
            } else {
                cfg.decay_steps
            };
            if step >= decay {
                return min_lr;
            }
            // decay > step >= warmup, so the span is at least 1.
            let ratio = (step - warmup) as f64 / (decay - warmup) as f64;
            let coeff = 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos());
            min_lr + coeff * (lr - min_lr)
        }
    }
}
