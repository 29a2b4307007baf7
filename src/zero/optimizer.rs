//! The sharded optimizer part: fp32 master weights over each unit's optimizer domain
//! (when parameters are half; fp32 parameters are their own master), the update rule's
//! state vectors, the gradient norm's partial sum and the update itself through the
//! backend's fused kernel, and the pieces a checkpoint saves and loads.
use super::core::Core;
use super::grads::Grads;
use super::params::Params;
use super::UnitPiece;
use crate::device::Backend;
use crate::model::UnitSpec;
use crate::optim::{StepHyper, UpdateRule};
use std::ops::Range;

pub(super) struct ShardedOptimizer<B: Backend> {
    /// fp32 master weights over each unit's optimizer domain (none when params are fp32).
    master: Vec<Option<B::Buf>>,
    rule: UpdateRule,
    /// One state vector per [`UpdateRule::state_names`] entry, each the concatenation of
    /// this rank's domains of all units; `offsets[u]` is where unit u's domain starts.
    states: Vec<B::Buf>,
    offsets: Vec<usize>,
    /// f32 scratch the size of the largest unit: typed gradients converted for the norm
    /// and the update.
    gtmp: B::Buf,
}

impl<B: Backend> ShardedOptimizer<B> {
    pub fn new(core: &Core<'_, B>, rule: UpdateRule) -> anyhow::Result<ShardedOptimizer<B>> {
        // Only typed gradient homes (sharded, or half precision) are converted; fp32 full
        // homes are read in place and need no scratch.
        let plan = &core.plan;
        let typed_grads = plan.shards_grads() || plan.grad_dtype() != crate::config::DType::Fp32;
        let scratch = if typed_grads {
            core.layout.max_padded()
        } else {
            0
        };
        Ok(ShardedOptimizer {
            master: Vec::new(),
            rule,
            states: Vec::new(),
            offsets: Vec::new(),
            gtmp: core.be().alloc(scratch)?,
        })
    }

    /// Bytes of the gradient-conversion scratch (a transient of the step, reported with
    /// the gradient buckets).
    pub fn scratch_bytes(&self, be: &B) -> u64 {
        be.len(&self.gtmp) as u64 * 4
    }

    /// Adds the next unit's domain, with master weights from its initial values `full`.
    pub fn push_unit(&mut self, core: &Core<'_, B>, full: &[f32]) -> anyhow::Result<()> {
        let u = self.master.len();
        let domain = core.domain(u);
        let master = if core.plan.has_master() {
            let mut m = core.be().alloc(domain.len())?;
            core.be().upload(&mut m, &full[domain.clone()]);
            Some(m)
        } else {
            None
        };
        let start = self
            .offsets
            .last()
            .map_or(0, |&o| o + core.domain(u - 1).len());
        self.master.push(master);
        self.offsets.push(start);
        Ok(())
    }

    /// After the last unit: the state vectors, zero as PyTorch's lazily created state is
    /// on the first step.
    pub fn allocate_states(&mut self, core: &Core<'_, B>) -> anyhow::Result<()> {
        let n = self.master.len();
        let len = self
            .offsets
            .last()
            .map_or(0, |&o| o + core.domain(n - 1).len());
        self.states = (0..self.rule.state_names().len())
            .map(|_| core.be().alloc(len))
            .collect::<anyhow::Result<_>>()?;
        Ok(())
    }

    pub fn state_names(&self) -> &'static [&'static str] {
        self.rule.state_names()
    }

    /// The master weights per unit, for [`Params::publish`].
    pub fn master(&self) -> &[Option<B::Buf>] {
        &self.master
    }

    /// Bytes held: master weights and state vectors.
    pub fn bytes(&self, be: &B) -> u64 {
        let f32_bytes = |b: &B::Buf| be.len(b) as u64 * 4;
        self.master.iter().flatten().map(f32_bytes).sum::<u64>()
            + self.states.iter().map(f32_bytes).sum::<u64>()
    }

    /// Σ g² over the real gradient elements this rank owns (the global norm's partial;
    /// a non-finite sum is the fp16 overflow signal).
    pub fn grad_sum_squares(
        &mut self,
        core: &Core<'_, B>,
        grads: &mut Grads<B>,
    ) -> anyhow::Result<f64> {
        let mut partial = 0.0f64;
        // Replicas of a shard hold the same reduced gradients: the first copy counts them
        // (an fp16 overflow in them is in that copy too).
        if !core.is_first_replica() {
            return Ok(partial);
        }
        for u in 0..self.master.len() {
            let owned = core.owned_in_domain(u);
            let (g, off) = grads.domain_f32(core, u, &mut self.gtmp);
            partial += core.be().sum_squares(g, off + owned.start, owned.len())?;
        }
        Ok(partial)
    }

    /// Updates every unit's domain; `mult` turns the summed, loss-scaled gradients into
    /// clipped mean gradients. Tensor by tensor, so weight decay applies only where the
    /// tensor asks for it.
    pub fn update(
        &mut self,
        core: &Core<'_, B>,
        specs: &[UnitSpec],
        grads: &mut Grads<B>,
        params: &mut Params<B>,
        mult: f32,
        hp: &StepHyper,
    ) -> anyhow::Result<()> {
        let be = core.be();
        for (u, spec) in specs.iter().enumerate() {
            let domain = core.domain(u);
            // g: (n) f32 gradients of the domain at `goff`, scaled in place.
            let (g, goff) = grads.domain_f32(core, u, &mut self.gtmp);
            be.scale(g, goff, domain.len(), mult);
            let g: &B::Buf = g;
            // m: (n) f32 master weights of the domain at `moff`.
            let (m, moff) = match &mut self.master[u] {
                Some(m) => (m, 0),
                None => params.fp32_master_mut(core, u).ok_or_else(no_master)?,
            };
            for t in &spec.tensors {
                let len: usize = t.shape.iter().product();
                let start = t.offset.max(domain.start);
                let end = (t.offset + len).min(domain.end);
                if start >= end {
                    continue;
                }
                let local = start - domain.start;
                be.optimizer_update(
                    &self.rule,
                    hp,
                    t.decay,
                    m,
                    moff + local,
                    g,
                    goff + local,
                    &mut self.states,
                    self.offsets[u] + local,
                    end - start,
                );
            }
        }
        Ok(())
    }

    /// The master weights and states of unit `u` over `local` (relative to its domain),
    /// downloaded for a checkpoint.
    pub fn export(
        &self,
        core: &Core<'_, B>,
        params: &Params<B>,
        u: usize,
        range: Range<usize>,
        local: Range<usize>,
    ) -> anyhow::Result<UnitPiece> {
        let be = core.be();
        let mut master = vec![0.0; local.len()];
        let (buf, off) = match &self.master[u] {
            Some(m) => (m, 0),
            None => params.fp32_master(core, u).ok_or_else(no_master)?,
        };
        be.download_at(buf, off + local.start, &mut master);
        let at = self.offsets[u] + local.start;
        let states = self
            .states
            .iter()
            .map(|s| {
                let mut v = vec![0.0; local.len()];
                be.download_at(s, at, &mut v);
                v
            })
            .collect();
        Ok(UnitPiece {
            range,
            master,
            states,
        })
    }

    /// Uploads `piece.master[src]` and its states into unit `u`'s domain at `dst`
    /// (relative to the domain).
    pub fn import(
        &mut self,
        core: &Core<'_, B>,
        params: &mut Params<B>,
        u: usize,
        piece: &UnitPiece,
        src: Range<usize>,
        dst: Range<usize>,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.states.len() == piece.states.len(),
            "checkpoint has {} optimizer state vectors, this optimizer has {}",
            piece.states.len(),
            self.states.len()
        );
        let be = core.be();
        let at = self.offsets[u] + dst.start;
        for (dst_state, src_state) in self.states.iter_mut().zip(&piece.states) {
            be.upload_at(dst_state, at, &src_state[src.clone()]);
        }
        let (m, moff) = match &mut self.master[u] {
            Some(m) => (m, 0),
            None => params.fp32_master_mut(core, u).ok_or_else(no_master)?,
        };
        be.upload_at(m, moff + dst.start, &piece.master[src]);
        Ok(())
    }
}

fn no_master() -> anyhow::Error {
    anyhow::anyhow!("internal error: half parameters without master weights")
}
