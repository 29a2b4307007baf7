//! The `model` part (see docs/architecture.md): layers with forward and backward, and the GPT and
//! MLP models, each an ordered list of *units* over flat parameter buffers.
//!
//! A unit's parameters are one contiguous flat buffer; each named tensor is a view
//! (offset, shape) into it. The canonical parameter order is the concatenation of the
//! units in order. Forward runs unit 0..L, backward unit L..0, and the ZeRO engine may act
//! between units (gather, free, reduce).
pub mod attention;
mod gpt;
mod init;
pub mod linear;
mod local;
mod loss;
mod mlp;
mod spec;

pub use local::LocalState;
pub use spec::{TensorSpec, UnitSpec};

use crate::config::{ModelConfig, ModelKind};
use crate::data::batch::Batch;
use crate::device::Backend;
use std::sync::Arc;

/// A model as the training engine drives it, unit by unit, on backend `B`.
///
/// Call order for one micro-step: `set_batch`, `forward_unit(0..units)`, then `loss`,
/// then `backward_unit(units-1..=0)`. Backward consumes the forward state (the logits
/// are turned into their gradient in place), so run forward again before another
/// backward.
pub trait Model<B: Backend> {
    /// The units in order; the canonical parameter order is their concatenation.
    fn units(&self) -> &[UnitSpec];
    /// The unit owning weights reused by another unit (GPT: `Some(0)`, the token
    /// embedding reused by the LM head); `None` when nothing is tied.
    fn tied_root(&self) -> Option<usize>;
    /// Deterministic initial parameters of unit `u` from `seed`, identical on every rank
    /// and for every world size. Length: `units()[u].numel`.
    fn init_unit(&self, u: usize, seed: u64) -> Vec<f32>;
    /// Uploads a micro-batch. `b <= max_batch`, and for GPT `t <= ctx` (a shorter `t`
    /// is fine, e.g. for sampling). Out-of-range token or class ids are an error naming
    /// the id and where it is.
    fn set_batch(&mut self, batch: &Batch) -> anyhow::Result<()>;
    /// Forward of unit `u` with its parameters `params` (length >= numel). `root` holds
    /// the tied root unit's parameters when `u` needs them (the GPT head).
    fn forward_unit(
        &mut self,
        u: usize,
        params: &B::Buf,
        root: Option<&B::Buf>,
    ) -> anyhow::Result<()>;
    /// Mean cross-entropy over the batch's targets; valid after the last unit's forward.
    fn loss(&self) -> f32;
    /// `Some((correct, rows))`: how many of the last forward's rows the model classified
    /// right (argmax of the logits = `labels`, the batch's), of how many; valid after the last unit's
    /// forward, before backward (it reads the logits back to the host). `None` for a model
    /// that reports no accuracy (GPT: not a classifier).
    fn correct(&mut self, _labels: &[u32]) -> Option<(usize, usize)> {
        None
    }
    /// Backward starts from `s * d(mean loss)/d(logits)` (for averaging over ranks and
    /// accumulation steps, and for fp16 loss scaling). Default 1.
    fn set_grad_scale(&mut self, s: f32);
    /// Backward of unit `u`: ACCUMULATES (+=) parameter gradients into `grads` (and into
    /// the root's gradients for the tied head); the caller zeroes them.
    fn backward_unit(
        &mut self,
        u: usize,
        params: &B::Buf,
        grads: &mut B::Buf,
        root: Option<(&B::Buf, &mut B::Buf)>,
    ) -> anyhow::Result<()>;
    /// Logits of sequence `row` at position `pos` (MLP: pos = 0) into `out` (length >=
    /// vocab or classes), after the last forward and before backward. Out-of-range
    /// `row`/`pos` fill `out` with NaN.
    fn logits_at(&self, row: usize, pos: usize, out: &mut [f32]);
}

/// Builds the model `cfg` describes, with activations for up to `max_batch` sequences
/// (GPT: of up to `ctx` tokens) allocated once on `backend`.
pub fn build_model<B: Backend + 'static>(
    cfg: &ModelConfig,
    max_batch: usize,
    backend: Arc<B>,
) -> anyhow::Result<Box<dyn Model<B>>> {
    anyhow::ensure!(max_batch >= 1, "model: max_batch must be at least 1");
    Ok(match cfg.kind {
        ModelKind::Gpt => Box::new(gpt::Gpt::new(cfg, max_batch, backend)?),
        ModelKind::Mlp => Box::new(mlp::Mlp::new(cfg, max_batch, backend)?),
    })
}

/// The units of the model `cfg` describes, without allocating anything else.
pub fn unit_specs(cfg: &ModelConfig) -> Vec<UnitSpec> {
    match cfg.kind {
        ModelKind::Gpt => gpt::unit_specs(cfg),
        ModelKind::Mlp => mlp::unit_specs(cfg),
    }
}

/// The unit whose parameters are shared with a later unit (GPT's token embedding, tied
/// to the LM head), without building the model.
pub fn tied_root(cfg: &ModelConfig) -> Option<usize> {
    match cfg.kind {
        ModelKind::Gpt => Some(0),
        ModelKind::Mlp => None,
    }
}

/// Number of parameters of the model `cfg` describes (tied weights counted once).
pub fn param_count(cfg: &ModelConfig) -> usize {
    unit_specs(cfg).iter().map(|u| u.numel).sum()
}
