//! The `optim` part (see docs/architecture.md): optimizers over flat fp32 slices, learning-rate
//! schedules, the dynamic fp16 loss scaler and gradient-norm clipping helpers.
//!
//! Everything here works on plain `&[f32]` slices and knows nothing of where they came
//! from: the ZeRO engine hands an optimizer the slice of the master weights this rank owns
//! (its shard), possibly in several pieces, each with its `offset` inside the shard.
mod adam;
mod clip;
mod scaler;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamCoef, AdamDecay, AdamRule};
pub use clip::{clip_coef, clip_hint, has_non_finite, sum_squares};
pub use scaler::{LossScaler, ScalerError};
pub use schedule::lr_at;
pub use sgd::{Sgd, SgdRule};

use crate::config::{OptimizerKind, TrainConfig};

/// Per-step hyper-parameters that change from step to step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepHyper {
    /// Learning rate of this step (from [`lr_at`]).
    pub lr: f32,
    /// Optimizer step, 1-based (Adam's bias correction uses it).
    pub step: u64,
}

/// Which optimizer with which hyper-parameters, as a value without state: what a
/// backend's fused update kernel needs besides the buffers (the ZeRO engine keeps the
/// states in backend memory and hands them in).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UpdateRule {
    Sgd(SgdRule),
    Adam(AdamRule),
}

impl UpdateRule {
    /// The rule `cfg.optimizer` names, with its hyper-parameters.
    pub fn from_config(cfg: &TrainConfig) -> UpdateRule {
        let wd = cfg.weight_decay as f32;
        match cfg.optimizer {
            OptimizerKind::Sgd => UpdateRule::Sgd(SgdRule {
                momentum: cfg.momentum as f32,
                weight_decay: wd,
            }),
            OptimizerKind::Adam | OptimizerKind::Adamw => UpdateRule::Adam(AdamRule {
                betas: [cfg.betas[0], cfg.betas[1]],
                eps: cfg.eps as f32,
                weight_decay: wd,
                decoupled: cfg.optimizer == OptimizerKind::Adamw,
            }),
        }
    }

    /// Names of the state vectors the rule keeps per parameter, for checkpoints
    /// (SGD without momentum keeps none).
    pub fn state_names(&self) -> &'static [&'static str] {
        match self {
            UpdateRule::Sgd(r) if r.momentum == 0.0 => &[],
            UpdateRule::Sgd(_) => &["momentum"],
            UpdateRule::Adam(_) => &["exp_avg", "exp_avg_sq"],
        }
    }

    /// One update of `params` from `grads` with `states` (one slice per
    /// [`UpdateRule::state_names`] entry, all of `params`' length). No allocation on
    /// success; a wrong number of states (an engine bug) is an error and updates nothing.
    pub fn apply(
        &self,
        params: &mut [f32],
        grads: &[f32],
        states: &mut [&mut [f32]],
        decay: bool,
        hp: &StepHyper,
    ) -> Result<(), String> {
        match (self, states) {
            (UpdateRule::Sgd(r), []) => r.apply(params, grads, None, decay, hp),
            (UpdateRule::Sgd(r), [buf]) => r.apply(params, grads, Some(buf), decay, hp),
            (UpdateRule::Adam(r), [m, v]) => r.apply(params, grads, m, v, decay, hp),
            (rule, states) => return Err(state_count_error(rule, states.len())),
        }
        Ok(())
    }
}

/// The message for a rule handed the wrong number of state vectors (an engine bug).
pub fn state_count_error(rule: &UpdateRule, got: usize) -> String {
    format!("internal error: {rule:?} given {got} optimizer state vectors")
}

/// An optimizer over a flat fp32 shard of `shard_len` elements. Its state (moments,
/// momentum buffers) is laid out exactly like the shard: element `offset + i` of every
/// state buffer belongs to `params[i]` of an `update` call at `offset`.
pub trait Optimizer: Send {
    /// Updates `params[i]` from `grads[i]`; `offset` is where this slice starts inside the
    /// optimizer's state (the shard), `decay` whether weight decay applies to it.
    /// Panics (an engine bug, not user input) if `params` and `grads` differ in length or
    /// `offset + params.len()` exceeds the shard. Performs no heap allocation.
    fn update(
        &mut self,
        offset: usize,
        params: &mut [f32],
        grads: &[f32],
        decay: bool,
        hp: &StepHyper,
    );
    /// Names of the state buffers, in the order of [`Optimizer::state`]; for checkpoints.
    fn state_names(&self) -> &'static [&'static str];
    /// The state buffers, each `shard_len` long.
    fn state(&self) -> Vec<&[f32]>;
    /// The state buffers, mutable (checkpoint loading).
    fn state_mut(&mut self) -> Vec<&mut [f32]>;
    /// Bytes held by the state buffers.
    fn state_bytes(&self) -> usize;
}

/// The precondition every `Optimizer::update` states: `params` and `grads` match and the
/// slice lies inside the shard. A failure is an engine bug, not user input.
fn check_slice(name: &str, offset: usize, params: &[f32], grads: &[f32], shard_len: usize) {
    assert_eq!(
        params.len(),
        grads.len(),
        "{name}: params and grads differ in length"
    );
    assert!(
        offset + params.len() <= shard_len,
        "{name}: slice exceeds the shard"
    );
}

/// Builds the optimizer `cfg.optimizer` names for a shard of `shard_len` elements, with
/// its state zero-initialised (as PyTorch's lazily created state is on the first step).
pub fn build_optimizer(cfg: &TrainConfig, shard_len: usize) -> Box<dyn Optimizer> {
    match UpdateRule::from_config(cfg) {
        UpdateRule::Sgd(r) => Box::new(Sgd::new(shard_len, r.momentum, r.weight_decay)),
        UpdateRule::Adam(r) => Box::new(Adam::new(
            shard_len,
            r.betas,
            r.eps,
            r.weight_decay,
            r.decoupled,
        )),
    }
}

/// The `offset..offset + len` window of a state buffer for one `update` call.
#[inline]
fn window(buf: &mut [f32], offset: usize, len: usize) -> &mut [f32] {
    &mut buf[offset..offset + len]
}
