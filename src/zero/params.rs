//! Parameters for compute: materialising a unit's f32 working buffer (stage 3 gathers its
//! shards, half precision converts), prefetching the next unit, releasing after use, and
//! publishing updated parameters after the optimizer step. Every buffer is backend memory;
//! the host never reads it.
use super::comm::{self, InFlight, MemPair, Target};
use super::engine::{Engine, Home};
use crate::device::Backend;
use crate::metrics::Transient;

impl<B: Backend> Engine<'_, B> {
    fn take_param_work(&mut self) -> anyhow::Result<B::Buf> {
        let buf = match self.pfree.pop() {
            Some(b) => b,
            None => self.backend.alloc(self.layout.max_padded())?,
        };
        self.transient
            .transient_alloc(Transient::Gathered, self.layout.max_padded() * 4);
        Ok(buf)
    }

    /// A (send, receive) pair for an all-gather, sized for the largest unit.
    fn take_gather_bufs(&mut self) -> anyhow::Result<MemPair<B>> {
        if let Some(bufs) = self.gather_bufs.pop() {
            return Ok(bufs);
        }
        let padded = self.layout.max_padded();
        let shard = padded / self.layout.world;
        let dtype = self.plan.dtype;
        // Counted as gathered memory for the rest of the run (reused every step).
        self.transient
            .transient_alloc(Transient::Gathered, (shard + padded) * dtype.bytes());
        Ok(MemPair {
            send: self.backend.alloc_mem(dtype, shard)?,
            recv: self.backend.alloc_mem(dtype, padded)?,
        })
    }

    /// Starts the all-gather of unit `u`'s shards (stage 3) and returns it.
    fn start_gather(&mut self, u: usize) -> anyhow::Result<InFlight<B>> {
        let shard = self.layout.units[u].shard;
        let mut bufs = self.take_gather_bufs()?;
        let be = self.backend.as_ref();
        match &self.params[u] {
            Home::F32(mine) => be.mem_from_f32(&mut bufs.send, 0, mine, 0, shard),
            Home::Typed(mine) => be.mem_copy(&mut bufs.send, 0, mine, 0, shard),
        }
        comm::iall_gather(
            be,
            &self.shard_link,
            &mut self.staging,
            bufs,
            shard,
            &mut self.stats,
        )
    }

    fn wants_prefetch(&self, u: usize) -> bool {
        self.plan.shards_params()
            && self.prefetch
            && u < self.specs.len()
            && self.pwork[u].is_none()
            && self.prefetched.is_none()
    }

    /// Stage 3 with prefetch: start gathering unit `u` (the next in forward or backward
    /// order) while the current unit computes.
    pub(super) fn start_prefetch(&mut self, u: usize) -> anyhow::Result<()> {
        if self.wants_prefetch(u) {
            let op = self.start_gather(u)?;
            self.prefetched = Some((u, op));
        }
        Ok(())
    }

    /// True when kernels use unit `u`'s parameter home directly (full fp32 parameters).
    pub(super) fn params_in_place(&self, u: usize) -> bool {
        !self.plan.shards_params() && matches!(self.params[u], Home::F32(_))
    }

    /// Makes unit `u`'s parameters available as an f32 buffer.
    pub(super) fn materialize(&mut self, u: usize) -> anyhow::Result<()> {
        if self.params_in_place(u) || self.pwork[u].is_some() {
            return Ok(());
        }
        let padded = self.layout.units[u].padded;
        let mut buf = self.take_param_work()?;
        if self.plan.shards_params() {
            let op = match self.prefetched.take() {
                Some((p, op)) if p == u => op,
                other => {
                    self.prefetched = other;
                    self.start_gather(u)?
                }
            };
            let be = self.backend.as_ref();
            let bufs = op.wait(be, self.shard, &mut self.staging, &mut self.stats)?;
            be.mem_to_f32(&mut buf, 0, &bufs.recv, 0, padded);
            self.gather_bufs.push(bufs);
        } else if let Home::Typed(full) = &self.params[u] {
            self.backend.mem_to_f32(&mut buf, 0, full, 0, padded);
        }
        self.pwork[u] = Some(buf);
        Ok(())
    }

    /// Returns unit `u`'s working buffer to the pool (no-op for in-place parameters).
    pub(super) fn release_params(&mut self, u: usize) {
        if let Some(buf) = self.pwork[u].take() {
            self.pfree.push(buf);
            self.transient
                .transient_free(Transient::Gathered, self.layout.max_padded() * 4);
        }
    }

    pub(super) fn release_all_params(&mut self) {
        for u in 0..self.specs.len() {
            self.release_params(u);
        }
    }

    /// After the update: half params take the new master values; stages 1 and 2
    /// all-gather every rank's updated slice so each rank holds the full parameters again.
    pub(super) fn publish_params(&mut self) -> anyhow::Result<()> {
        let be = self.backend.as_ref();
        for u in 0..self.specs.len() {
            let domain = self.domain(u);
            if let (Some(master), Home::Typed(p)) = (&self.master[u], &mut self.params[u]) {
                let start = if self.plan.shards_params() {
                    0
                } else {
                    domain.start
                };
                be.mem_from_f32(p, start, master, 0, domain.len());
            }
            if !self.plan.shards_optimizer() || self.plan.shards_params() {
                continue;
            }
            // The domain is this rank's block of the full unit, at rank * shard.
            let target = match &mut self.params[u] {
                Home::F32(b) => Target::F32(b),
                Home::Typed(m) => Target::Mem(m),
            };
            comm::all_gather_in_place(
                be,
                &self.shard_link,
                &mut self.staging,
                target,
                self.layout.units[u].shard,
                &mut self.stats,
            )?;
        }
        Ok(())
    }
}
