//! The parameters part: each unit's parameter home (full or, when sharded, this rank's
//! slice; fp32 or the run's dtype), the f32 working buffers compute uses (stage 3
//! gathers the shards, half precision converts), prefetching the next unit's gather,
//! releasing after use, and publishing updated parameters after the optimizer step.
//! Every buffer is backend memory; the host never reads it.
use super::comm::{self, InFlight, MemPair, Target};
use super::core::{Core, Home};
use crate::device::{Backend, Store};
use crate::dist::{watchdog, RawCollective};
use crate::metrics::{MemCounter, Transient};

pub(super) struct Params<B: Backend> {
    homes: Vec<Home<B>>,
    /// f32 working buffers per unit while materialised, and the pool they come from
    /// (each the largest unit's size).
    work: Vec<Option<B::Buf>>,
    free: Vec<B::Buf>,
    /// Sharded parameters: (send, receive) buffers for all-gathers, and the one in flight.
    gather_bufs: Vec<MemPair<B>>,
    prefetched: Option<(usize, InFlight<B>)>,
    /// Gather the next unit while the current one computes (sharded parameters).
    prefetch: bool,
    /// Transient bytes: working and gather buffers.
    mem: MemCounter,
}

impl<B: Backend> Params<B> {
    pub fn new(units: usize, prefetch: bool) -> Params<B> {
        Params {
            homes: Vec::with_capacity(units),
            work: (0..units).map(|_| None).collect(),
            free: Vec::new(),
            gather_bufs: Vec::new(),
            prefetched: None,
            prefetch,
            mem: MemCounter::default(),
        }
    }

    /// Allocates the next unit's home and uploads its initial values `full` (padded).
    pub fn push_unit(&mut self, core: &Core<'_, B>, full: &[f32]) -> anyhow::Result<()> {
        let (be, plan) = (core.be(), &core.plan);
        let u = self.homes.len();
        let held = if plan.shards_params() {
            &full[core.layout.units[u].shard_range(core.rank)]
        } else {
            full
        };
        let home = if plan.dtype == crate::config::DType::Fp32 {
            let mut buf = be.alloc(held.len())?;
            be.upload(&mut buf, held);
            Home::F32(buf)
        } else {
            let mut host = Store::zeros(plan.dtype, held.len());
            host.write_f32(0, held);
            let mut m = be.alloc_mem(plan.dtype, held.len())?;
            be.upload_mem(&mut m, 0, &host, 0, held.len());
            Home::Typed(m)
        };
        self.homes.push(home);
        Ok(())
    }

    /// Bytes held: the homes, and the peak of the transient buffers.
    pub fn memory(&self, be: &B) -> MemCounter {
        let mut mem = self.mem;
        mem.params = self.homes.iter().map(|h| h.bytes(be)).sum();
        mem
    }

    /// fp32 parameters are their own master weights: unit `u`'s fp32 home and where its
    /// optimizer domain starts in it (the whole home when sharded); `None` for half
    /// parameters.
    pub fn fp32_master_mut(
        &mut self,
        core: &Core<'_, B>,
        u: usize,
    ) -> Option<(&mut B::Buf, usize)> {
        let at = master_offset(core, u);
        match &mut self.homes[u] {
            Home::F32(b) => Some((b, at)),
            Home::Typed(_) => None,
        }
    }

    /// As [`Params::fp32_master_mut`], read-only.
    pub fn fp32_master(&self, core: &Core<'_, B>, u: usize) -> Option<(&B::Buf, usize)> {
        match &self.homes[u] {
            Home::F32(b) => Some((b, master_offset(core, u))),
            Home::Typed(_) => None,
        }
    }

    fn take_work(&mut self, core: &Core<'_, B>) -> anyhow::Result<B::Buf> {
        let max = core.layout.max_padded();
        let buf = match self.free.pop() {
            Some(b) => b,
            None => core.be().alloc(max)?,
        };
        self.mem.transient_alloc(Transient::Gathered, max * 4);
        Ok(buf)
    }

    /// A (send, receive) pair for an all-gather, sized for the largest unit.
    fn take_gather_bufs(&mut self, core: &Core<'_, B>) -> anyhow::Result<MemPair<B>> {
        if let Some(bufs) = self.gather_bufs.pop() {
            return Ok(bufs);
        }
        let padded = core.layout.max_padded();
        let shard = padded / core.layout.world;
        let dtype = core.plan.dtype;
        // Counted as gathered memory for the rest of the run (reused every step).
        self.mem
            .transient_alloc(Transient::Gathered, (shard + padded) * dtype.bytes());
        Ok(MemPair {
            send: core.be().alloc_mem(dtype, shard)?,
            recv: core.be().alloc_mem(dtype, padded)?,
        })
    }

    /// Starts the all-gather of unit `u`'s shards and returns it.
    fn start_gather(&mut self, core: &mut Core<'_, B>, u: usize) -> anyhow::Result<InFlight<B>> {
        let shard = core.layout.units[u].shard;
        let mut bufs = self.take_gather_bufs(core)?;
        let be = core.backend.as_ref();
        match &self.homes[u] {
            Home::F32(mine) => be.mem_from_f32(&mut bufs.send, 0, mine, 0, shard),
            Home::Typed(mine) => be.mem_copy(&mut bufs.send, 0, mine, 0, shard),
        }
        comm::start(
            be,
            &core.shard,
            &mut core.staging,
            RawCollective::AllGather,
            bufs,
            shard,
            &mut core.stats,
        )
    }

    /// Sharded parameters with prefetch: start gathering unit `u` (the next in forward or
    /// backward order) while the current unit computes.
    pub fn start_prefetch(&mut self, core: &mut Core<'_, B>, u: usize) -> anyhow::Result<()> {
        // Device collectives run on the compute stream: a gather enqueued ahead would
        // only delay the current unit's kernels, so there is nothing to prefetch.
        let on_stream = matches!(core.shard.transport, super::comm::Transport::Device { .. });
        let wanted = core.plan.shards_params()
            && self.prefetch
            && !on_stream
            && u < self.homes.len()
            && self.work[u].is_none()
            && self.prefetched.is_none();
        if wanted {
            let op = self.start_gather(core, u)?;
            self.prefetched = Some((u, op));
        }
        Ok(())
    }

    /// True when kernels use unit `u`'s home directly (full fp32 parameters).
    fn in_place(&self, core: &Core<'_, B>, u: usize) -> bool {
        !core.plan.shards_params() && matches!(self.homes[u], Home::F32(_))
    }

    /// Makes unit `u`'s parameters available as an f32 buffer ([`Params::compute`]).
    pub fn materialize(&mut self, core: &mut Core<'_, B>, u: usize) -> anyhow::Result<()> {
        if self.in_place(core, u) || self.work[u].is_some() {
            return Ok(());
        }
        let padded = core.layout.units[u].padded;
        let mut buf = self.take_work(core)?;
        if core.plan.shards_params() {
            let op = match self.prefetched.take() {
                Some((p, op)) if p == u => op,
                other => {
                    self.prefetched = other;
                    self.start_gather(core, u)?
                }
            };
            let be = core.backend.as_ref();
            watchdog::note("waiting for the parameter gather of unit", Some(u));
            let bufs = op.wait(be, core.shard.group, &mut core.staging, &mut core.stats)?;
            be.mem_to_f32(&mut buf, 0, &bufs.recv, 0, padded);
            self.gather_bufs.push(bufs);
        } else if let Home::Typed(full) = &self.homes[u] {
            core.be().mem_to_f32(&mut buf, 0, full, 0, padded);
        }
        self.work[u] = Some(buf);
        Ok(())
    }

    /// The f32 buffer holding unit `u`'s parameters for compute (after `materialize`).
    pub fn compute(&self, u: usize) -> anyhow::Result<&B::Buf> {
        match (&self.homes[u], &self.work[u]) {
            (_, Some(b)) => Ok(b),
            (Home::F32(b), None) => Ok(b),
            _ => anyhow::bail!(
                "internal error: parameters of unit {u} used before they were gathered"
            ),
        }
    }

    /// Returns unit `u`'s working buffer to the pool (no-op for in-place parameters).
    pub fn release(&mut self, core: &Core<'_, B>, u: usize) {
        if let Some(buf) = self.work[u].take() {
            self.free.push(buf);
            self.mem
                .transient_free(Transient::Gathered, core.layout.max_padded() * 4);
        }
    }

    pub fn release_all(&mut self, core: &Core<'_, B>) {
        for u in 0..self.homes.len() {
            self.release(core, u);
        }
    }

    /// MPI progress for the prefetch in flight.
    pub fn progress(&mut self) {
        if let Some((_, op)) = self.prefetched.as_mut() {
            op.test();
        }
    }

    /// After the update: half params take the new master values (`master`, per unit over
    /// its optimizer domain); a sharded optimizer over replicated parameters all-gathers
    /// every rank's updated slice so each rank holds the full parameters again.
    pub fn publish(
        &mut self,
        core: &mut Core<'_, B>,
        master: &[Option<B::Buf>],
    ) -> anyhow::Result<()> {
        for (u, home) in self.homes.iter_mut().enumerate() {
            let domain = core.domain(u);
            let be = core.backend.as_ref();
            if let (Some(m), Home::Typed(p)) = (&master[u], &mut *home) {
                let start = if core.plan.shards_params() {
                    0
                } else {
                    domain.start
                };
                be.mem_from_f32(p, start, m, 0, domain.len());
            }
            if !core.plan.shards_optimizer() || core.plan.shards_params() {
                continue;
            }
            // The domain is this rank's block of the full unit, at rank * shard.
            let target = match home {
                Home::F32(b) => Target::F32(b),
                Home::Typed(m) => Target::Mem(m),
            };
            let shard = core.layout.units[u].shard;
            watchdog::note("publishing the updated parameters of unit", Some(u));
            comm::all_gather_in_place(
                be,
                &core.shard,
                &mut core.staging,
                target,
                shard,
                &mut core.stats,
            )?;
        }
        Ok(())
    }
}

/// Where unit `u`'s optimizer domain starts in its parameter home: 0 for a shard (the
/// home is the domain), the domain's start in a full unit.
fn master_offset<B: Backend>(core: &Core<'_, B>, u: usize) -> usize {
    if core.plan.shards_params() {
        0
    } else {
        core.domain(u).start
    }
}
