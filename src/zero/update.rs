//! The optimizer step on this rank's domain of one unit: unscale and clip the reduced
//! gradients, then update the fp32 master weights tensor by tensor with the backend's
//! fused kernel (weight decay only where the tensor asks for it).
use super::engine::{Engine, Home};
use super::grads::grads_f32;
use crate::device::Backend;
use crate::optim::StepHyper;

impl<B: Backend> Engine<'_, B> {
    /// Updates unit `u`; `mult` turns the summed, loss-scaled gradients into clipped
    /// mean gradients.
    pub(super) fn update_unit(
        &mut self,
        u: usize,
        mult: f32,
        hp: &StepHyper,
    ) -> anyhow::Result<()> {
        let domain = self.domain(u);
        let n = domain.len();
        let (rule, soff) = (self.rule, self.opt_offsets[u]);
        let be = self.backend.clone();
        // g: (n) f32 gradients of the domain at `goff`, scaled in place.
        let range = self.home_range(u);
        let (g, goff) = grads_f32(be.as_ref(), &mut self.grads[u], range, &mut self.gtmp);
        be.scale(g, goff, n, mult);
        let g: &B::Buf = g;
        // m: (n) f32 master weights of the domain at `moff`.
        let (m, moff) = master_mut(
            &mut self.master[u],
            &mut self.params[u],
            self.plan.shards_params(),
            domain.start,
        )?;
        for t in &self.specs[u].tensors {
            let len: usize = t.shape.iter().product();
            let start = t.offset.max(domain.start);
            let end = (t.offset + len).min(domain.end);
            if start >= end {
                continue;
            }
            let local = start - domain.start;
            be.optimizer_update(
                &rule,
                hp,
                t.decay,
                m,
                moff + local,
                g,
                goff + local,
                &mut self.states,
                soff + local,
                end - start,
            );
        }
        Ok(())
    }
}

/// The fp32 master weights of a unit's optimizer domain and the offset where the domain
/// starts in that buffer: the separate master copy when parameters are half, else the
/// fp32 parameters themselves (the domain of the full buffer, or the whole stage-3 shard).
pub(super) fn master_mut<'a, B: Backend>(
    master: &'a mut Option<B::Buf>,
    params: &'a mut Home<B>,
    shards_params: bool,
    domain_start: usize,
) -> anyhow::Result<(&'a mut B::Buf, usize)> {
    match (master, params) {
        (Some(m), _) => Ok((m, 0)),
        (None, Home::F32(b)) => Ok((b, if shards_params { 0 } else { domain_start })),
        (None, Home::Typed(_)) => {
            anyhow::bail!("internal error: half parameters without master weights")
        }
    }
}
