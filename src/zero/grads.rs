//! The gradients part: each unit's gradient home (full, or this rank's shard), the f32
//! working buffers backward writes, buckets whose non-blocking reductions start as soon
//! as their units are done (the `GradReduction` the placements imply), unpacking into
//! the homes, and f32 views for the optimizer. Every buffer is backend memory; the host
//! never reads it.
use super::comm::{self, InFlight, MemPair};
use super::core::{Core, Home};
use super::plan::{buckets, GradReduction};
use crate::config::DType;
use crate::device::Backend;
use crate::dist::{watchdog, RawCollective};
use crate::metrics::{MemCounter, Transient};
use std::collections::VecDeque;
use std::ops::Range;

/// At most this many gradient buckets are in flight; a further one waits for the oldest.
const MAX_BUCKETS_IN_FLIGHT: usize = 2;

/// What a bucket's collective in flight does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The bucket's reduction (`GradReduction`): over the shard group, or the
    /// data-parallel all-reduce.
    Reduce,
    /// Hybrid sharding, once per step: the reduced shards summed across the replicas
    /// (an all-reduce in place).
    Replicas,
}

pub(super) struct Grads<B: Backend> {
    homes: Vec<Home<B>>,
    /// f32 working buffers per unit during backward (when the home is not one), and the
    /// pool they come from (each the largest unit's size).
    work: Vec<Option<B::Buf>>,
    free: Vec<B::Buf>,
    /// Units per bucket (in backward order), each unit's bucket, and how many of a
    /// bucket's units are done this micro-batch.
    buckets: Vec<Vec<usize>>,
    bucket_of: Vec<usize>,
    bucket_ready: Vec<usize>,
    /// (send, receive) buffers sized once for the largest bucket, and the reductions in
    /// flight (bucket, op).
    bucket_bufs: Vec<MemPair<B>>,
    in_flight: VecDeque<(usize, Phase, InFlight<B>)>,
    /// Transient bytes: working and bucket buffers.
    mem: MemCounter,
}

impl<B: Backend> Grads<B> {
    /// Homes for every unit of the layout, zero, and buckets of `bucket_bytes`.
    pub fn new(core: &Core<'_, B>, bucket_bytes: usize) -> anyhow::Result<Grads<B>> {
        let (be, plan, layout) = (core.be(), &core.plan, &core.layout);
        let dtype = plan.grad_dtype();
        let homes = layout
            .units
            .iter()
            .map(|l| {
                Ok(if plan.shards_grads() {
                    Home::Typed(be.alloc_mem(dtype, l.shard)?)
                } else if dtype == DType::Fp32 {
                    // What backward accumulates into directly.
                    Home::F32(be.alloc(l.padded)?)
                } else {
                    Home::Typed(be.alloc_mem(dtype, l.padded)?)
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let buckets = buckets(layout, bucket_bytes, core.reduce.bytes());
        let mut bucket_of = vec![0; homes.len()];
        for (b, units) in buckets.iter().enumerate() {
            for &u in units {
                bucket_of[u] = b;
            }
        }
        Ok(Grads {
            work: (0..homes.len()).map(|_| None).collect(),
            homes,
            free: Vec::new(),
            bucket_ready: vec![0; buckets.len()],
            buckets,
            bucket_of,
            bucket_bufs: Vec::new(),
            in_flight: VecDeque::new(),
            mem: MemCounter::default(),
        })
    }

    /// Bytes held: the homes, and the peak of the transient buffers.
    pub fn memory(&self, be: &B) -> MemCounter {
        let mut mem = self.mem;
        mem.grads = self.homes.iter().map(|h| h.bytes(be)).sum();
        mem
    }

    /// Gives unit `u` a zeroed f32 buffer for backward unless its home is one already.
    pub fn acquire_work(&mut self, core: &Core<'_, B>, u: usize) -> anyhow::Result<()> {
        if matches!(self.homes[u], Home::F32(_)) || self.work[u].is_some() {
            return Ok(());
        }
        let n = core.layout.max_padded();
        let mut buf = match self.free.pop() {
            Some(b) => b,
            None => core.be().alloc(n)?,
        };
        // Pooled at the largest unit's size; only this unit's padded length is ever read.
        core.be()
            .fill(&mut buf, 0, core.layout.units[u].padded, 0.0);
        self.work[u] = Some(buf);
        self.mem.transient_alloc(Transient::Bucket, n * 4);
        Ok(())
    }

    fn release_work(&mut self, core: &Core<'_, B>, u: usize) {
        if let Some(buf) = self.work[u].take() {
            self.free.push(buf);
            self.mem
                .transient_free(Transient::Bucket, core.layout.max_padded() * 4);
        }
    }

    /// The f32 buffer backward accumulates unit `u`'s gradients into.
    pub fn compute_mut(&mut self, u: usize) -> anyhow::Result<&mut B::Buf> {
        f32_target(&mut self.homes[u], &mut self.work[u], u)
    }

    /// The f32 gradient buffers of unit `u` and of the tied root `r < u` at once.
    pub fn compute_mut_with_root(
        &mut self,
        u: usize,
        r: usize,
    ) -> anyhow::Result<(&mut B::Buf, &mut B::Buf)> {
        debug_assert!(r < u);
        let (h_lo, h_hi) = self.homes.split_at_mut(u);
        let (w_lo, w_hi) = self.work.split_at_mut(u);
        Ok((
            f32_target(&mut h_hi[0], &mut w_hi[0], u)?,
            f32_target(&mut h_lo[r], &mut w_lo[r], r)?,
        ))
    }

    /// Unit `u`'s backward is done: fold or hand its gradients to its bucket.
    pub fn ready(
        &mut self,
        core: &mut Core<'_, B>,
        u: usize,
        last_micro: bool,
    ) -> anyhow::Result<()> {
        let each_micro = core.plan.reduction() == GradReduction::ReduceScatterEachMicro;
        if !each_micro {
            // Replicated gradients in typed memory accumulate every micro-batch.
            if let (Home::Typed(home), Some(work)) = (&mut self.homes[u], &self.work[u]) {
                let padded = core.layout.units[u].padded;
                core.be().mem_add_f32(home, 0, work, 0, padded);
            }
            self.release_work(core, u);
        }
        if each_micro || last_micro {
            let b = self.bucket_of[u];
            self.bucket_ready[b] += 1;
            if self.bucket_ready[b] == self.buckets[b].len() {
                self.bucket_ready[b] = 0;
                self.launch_bucket(core, b)?;
            }
        }
        Ok(())
    }

    /// Copies `range` of unit `u`'s current gradients into `dst[at..]`.
    fn pack_unit(&self, be: &B, u: usize, range: Range<usize>, dst: &mut B::Mem, at: usize) {
        // The f32 buffer backward wrote (a working buffer, or an fp32 home), else the
        // home in typed memory.
        match (&self.work[u], &self.homes[u]) {
            (Some(b), _) | (None, Home::F32(b)) => {
                be.mem_from_f32(dst, at, b, range.start, range.len())
            }
            (None, Home::Typed(s)) => be.mem_copy(dst, at, s, range.start, range.len()),
        }
    }

    fn take_send_recv(&mut self, core: &mut Core<'_, B>) -> anyhow::Result<MemPair<B>> {
        if self.bucket_bufs.is_empty() && self.in_flight.len() >= MAX_BUCKETS_IN_FLIGHT {
            self.complete_oldest(core)?;
        }
        if let Some(bufs) = self.bucket_bufs.pop() {
            return Ok(bufs);
        }
        let layout = &core.layout;
        let max: usize = self
            .buckets
            .iter()
            .map(|b| b.iter().map(|&u| layout.units[u].padded).sum::<usize>())
            .max()
            .unwrap_or(0);
        let recv_len = match core.plan.reduction() {
            GradReduction::AllReduce => 0, // reduced in place
            _ => max / layout.world,
        };
        self.mem
            .transient_alloc(Transient::Bucket, (max + recv_len) * core.reduce.bytes());
        Ok(MemPair {
            send: core.be().alloc_mem(core.reduce, max)?,
            recv: core.be().alloc_mem(core.reduce, recv_len)?,
        })
    }

    /// Packs bucket `b` and starts its reduction.
    fn launch_bucket(&mut self, core: &mut Core<'_, B>, b: usize) -> anyhow::Result<()> {
        let mut bufs = self.take_send_recv(core)?;
        let world = core.layout.world;
        let units = std::mem::take(&mut self.buckets[b]);
        let total: usize = units.iter().map(|&u| core.layout.units[u].padded).sum();
        let be = core.backend.as_ref();
        let op = if core.plan.reduction() == GradReduction::AllReduce {
            let mut at = 0;
            for &u in &units {
                let padded = core.layout.units[u].padded;
                self.pack_unit(be, u, 0..padded, &mut bufs.send, at);
                at += padded;
            }
            comm::start(
                be,
                &core.dp,
                &mut core.staging,
                RawCollective::AllReduceInPlace,
                bufs,
                total,
                &mut core.stats,
            )?
        } else {
            // Reduce-scatter layout: for each rank r, every unit's r-th slice in order, so
            // rank r receives exactly its shards of the bucket's units.
            let mut at = 0;
            for r in 0..world {
                for &u in &units {
                    let range = core.layout.units[u].shard_range(r);
                    let n = range.len();
                    self.pack_unit(be, u, range, &mut bufs.send, at);
                    at += n;
                }
            }
            let count = total / world;
            comm::start(
                be,
                &core.shard,
                &mut core.staging,
                RawCollective::ReduceScatter,
                bufs,
                count,
                &mut core.stats,
            )?
        };
        if core.plan.reduction() == GradReduction::ReduceScatterEachMicro {
            for &u in &units {
                self.release_work(core, u);
            }
        }
        self.buckets[b] = units;
        self.in_flight.push_back((b, Phase::Reduce, op));
        Ok(())
    }

    /// Hybrid sharding: packs bucket `b`'s reduced gradient shards (each unit's home over
    /// its optimizer domain) and starts their sum across the replicas.
    fn launch_replicas(&mut self, core: &mut Core<'_, B>, b: usize) -> anyhow::Result<()> {
        let Some(link) = core.replicas else {
            return Ok(());
        };
        let mut bufs = self.take_send_recv(core)?;
        let be = core.backend.as_ref();
        let mut at = 0;
        for &u in &self.buckets[b] {
            let range = core.grad_home_range(u);
            let n = range.len();
            match &self.homes[u] {
                Home::F32(h) => be.mem_from_f32(&mut bufs.send, at, h, range.start, n),
                Home::Typed(h) => be.mem_copy(&mut bufs.send, at, h, range.start, n),
            }
            at += n;
        }
        let op = comm::start(
            be,
            &link,
            &mut core.staging,
            RawCollective::AllReduceInPlace,
            bufs,
            at,
            &mut core.stats,
        )?;
        self.in_flight.push_back((b, Phase::Replicas, op));
        Ok(())
    }

    /// Waits for the oldest reduction and unpacks it into the gradient homes.
    fn complete_oldest(&mut self, core: &mut Core<'_, B>) -> anyhow::Result<()> {
        let Some((b, phase, op)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        if phase == Phase::Replicas {
            return self.complete_replicas(core, b, op);
        }
        let reduction = core.plan.reduction();
        let group = match reduction {
            GradReduction::AllReduce => core.dp.group,
            _ => core.shard.group,
        };
        let be = core.backend.as_ref();
        watchdog::note("waiting for the gradient reduction of bucket", Some(b));
        let bufs = op.wait(be, group, &mut core.staging, &mut core.stats)?;
        // An all-reduce's result is in its send buffer, a reduce-scatter's in recv.
        let result = match reduction {
            GradReduction::AllReduce => &bufs.send,
            _ => &bufs.recv,
        };
        let mut at = 0;
        for &u in &self.buckets[b] {
            let l = &core.layout.units[u];
            // Where the unit's reduced part goes in its home, and how long it is.
            let (dst_start, n) = match reduction {
                GradReduction::AllReduce => (0, l.padded),
                GradReduction::ReduceScatterAtBoundary => (l.shard_range(core.rank).start, l.shard),
                GradReduction::ReduceScatterEachMicro => (0, l.shard),
            };
            match &mut self.homes[u] {
                Home::F32(buf) => be.mem_to_f32(buf, dst_start, result, at, n),
                // A shard accumulates over micro-batches; a full home takes the result.
                Home::Typed(home) if reduction == GradReduction::ReduceScatterEachMicro => {
                    be.mem_add(home, dst_start, result, at, n)
                }
                Home::Typed(home) => be.mem_copy(home, dst_start, result, at, n),
            }
            at += n;
        }
        self.bucket_bufs.push(bufs);
        Ok(())
    }

    /// Waits for bucket `b`'s sum across the replicas and copies it into the homes.
    fn complete_replicas(
        &mut self,
        core: &mut Core<'_, B>,
        b: usize,
        op: InFlight<B>,
    ) -> anyhow::Result<()> {
        let Some(link) = core.replicas else {
            anyhow::bail!("internal error: a sum across replicas without replicas");
        };
        let be = core.backend.as_ref();
        watchdog::note("waiting for the sum across replicas of bucket", Some(b));
        let bufs = op.wait(be, link.group, &mut core.staging, &mut core.stats)?;
        let mut at = 0;
        for &u in &self.buckets[b] {
            let range = core.grad_home_range(u);
            let n = range.len();
            match &mut self.homes[u] {
                Home::F32(h) => be.mem_to_f32(h, range.start, &bufs.send, at, n),
                Home::Typed(h) => be.mem_copy(h, range.start, &bufs.send, at, n),
            }
            at += n;
        }
        self.bucket_bufs.push(bufs);
        Ok(())
    }

    /// Waits for every reduction of this step; with hybrid sharding then sums the reduced
    /// shards across the replicas (the shard group's sums, added over every shard group,
    /// are the data-parallel sum).
    pub fn finish(&mut self, core: &mut Core<'_, B>) -> anyhow::Result<()> {
        while !self.in_flight.is_empty() {
            self.complete_oldest(core)?;
        }
        if core.replicas.is_some() && core.plan.reduction() != GradReduction::AllReduce {
            for b in 0..self.buckets.len() {
                self.launch_replicas(core, b)?;
            }
            while !self.in_flight.is_empty() {
                self.complete_oldest(core)?;
            }
        }
        Ok(())
    }

    /// MPI progress for the reductions in flight.
    pub fn progress(&mut self) {
        for (_, _, op) in self.in_flight.iter_mut() {
            op.test();
        }
    }

    pub fn zero(&mut self, be: &B) {
        for g in self.homes.iter_mut() {
            match g {
                Home::F32(buf) => {
                    let n = be.len(buf);
                    be.fill(buf, 0, n, 0.0)
                }
                Home::Typed(m) => {
                    let n = be.mem_len(m);
                    be.mem_fill(m, 0, n, 0.0)
                }
            }
        }
    }

    /// Unit `u`'s reduced gradients over its optimizer domain as an f32 buffer and the
    /// offset where the domain starts in it: the home itself when it is fp32, else `tmp`,
    /// converted into.
    pub fn domain_f32<'a>(
        &'a mut self,
        core: &Core<'_, B>,
        u: usize,
        tmp: &'a mut B::Buf,
    ) -> (&'a mut B::Buf, usize) {
        let range = core.grad_home_range(u);
        match &mut self.homes[u] {
            Home::F32(b) => (b, range.start),
            Home::Typed(s) => {
                core.be().mem_to_f32(tmp, 0, s, range.start, range.len());
                (tmp, 0)
            }
        }
    }
}

/// The f32 buffer backward writes for a unit: its working buffer, else its fp32 home.
fn f32_target<'a, B: Backend>(
    home: &'a mut Home<B>,
    work: &'a mut Option<B::Buf>,
    u: usize,
) -> anyhow::Result<&'a mut B::Buf> {
    match (home, work) {
        (_, Some(b)) => Ok(b),
        (Home::F32(b), None) => Ok(b),
        _ => anyhow::bail!("internal error: no gradient buffer for unit {u}"),
    }
}
