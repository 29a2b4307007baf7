//! The optimizer step on this rank's domain of one unit: unscale and clip the reduced
//! gradients, then update the fp32 master weights tensor by tensor (weight decay only
//! where the tensor asks for it).
use super::engine::{Engine, Home};
use super::params::host_view_mut;
use crate::device::Backend;
use crate::device::Store;
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
        let home_range = self.home_range(u);
        let backend = self.backend.as_ref();
        // g: (n) f32 gradients of the domain, scaled in place.
        let g: &mut [f32] = match &mut self.grads[u] {
            Home::Device(b) => &mut host_view_mut(backend, b)?[home_range],
            Home::Host(Store::F32(v)) => &mut v[home_range],
            Home::Host(s) => {
                s.read_f32(home_range, &mut self.host_tmp[..n]);
                &mut self.host_tmp[..n]
            }
        };
        g.iter_mut().for_each(|x| *x *= mult);
        // m: (n) f32 master weights of the domain.
        let m = master_view_mut(
            backend,
            &mut self.master[u],
            &mut self.params[u],
            domain.clone(),
        )?;
        for t in &self.specs[u].tensors {
            let len: usize = t.shape.iter().product();
            let start = t.offset.max(domain.start);
            let end = (t.offset + len).min(domain.end);
            if start >= end {
                continue;
            }
            let local = (start - domain.start)..(end - domain.start);
            self.optimizer.update(
                self.opt_offsets[u] + local.start,
                &mut m[local.clone()],
                &g[local],
                t.decay,
                hp,
            );
        }
        Ok(())
    }
}

/// The fp32 master weights of a unit's optimizer domain, mutable: the separate master copy
/// when parameters are half (`master` non-empty), else the fp32 parameters themselves
/// (the domain of a full device buffer, or the whole stage-3 shard).
pub(super) fn master_view_mut<'a, B: Backend>(
    backend: &B,
    master: &'a mut [f32],
    params: &'a mut Home<B>,
    domain: std::ops::Range<usize>,
) -> anyhow::Result<&'a mut [f32]> {
    if !master.is_empty() {
        return Ok(master);
    }
    Ok(match params {
        Home::Device(b) => &mut host_view_mut(backend, b)?[domain],
        Home::Host(Store::F32(v)) => &mut v[..],
        Home::Host(_) => anyhow::bail!("internal error: half parameters without master weights"),
    })
}
