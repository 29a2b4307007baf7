//! Gradients: working buffers for backward, bucketed non-blocking reductions launched as
//! soon as a bucket's units are done (all-reduce in stage 0, reduce-scatter otherwise),
//! unpacking into each unit's gradient home, and f32 views for the optimizer. Every
//! buffer is backend memory; the host never reads it.
use super::comm::{self, MemPair};
use super::engine::{Engine, Home};
use super::plan::GradReduction;
use crate::device::Backend;
use crate::metrics::Transient;
use std::ops::Range;

impl<B: Backend> Engine<'_, B> {
    /// Gives unit `u` a zeroed f32 buffer for backward unless its home is one already.
    pub(super) fn acquire_grad_work(&mut self, u: usize) -> anyhow::Result<()> {
        if matches!(self.grads[u], Home::F32(_)) || self.gwork[u].is_some() {
            return Ok(());
        }
        let n = self.layout.max_padded();
        let mut buf = match self.gfree.pop() {
            Some(b) => b,
            None => self.backend.alloc(n)?,
        };
        // Pooled at the largest unit's size; only this unit's padded length is ever read.
        let padded = self.layout.units[u].padded;
        self.backend.fill(&mut buf, 0, padded, 0.0);
        self.gwork[u] = Some(buf);
        self.transient.transient_alloc(Transient::Bucket, n * 4);
        Ok(())
    }

    fn release_grad_work(&mut self, u: usize) {
        if let Some(buf) = self.gwork[u].take() {
            self.gfree.push(buf);
            self.transient
                .transient_free(Transient::Bucket, self.layout.max_padded() * 4);
        }
    }

    /// Unit `u`'s backward is done: fold or hand its gradients to its bucket.
    pub(super) fn grads_ready(&mut self, u: usize, last_micro: bool) -> anyhow::Result<()> {
        if !self.plan.shards_grads() {
            // Replicated gradients in typed memory accumulate every micro-batch.
            if let (Home::Typed(home), Some(work)) = (&mut self.grads[u], &self.gwork[u]) {
                let padded = self.layout.units[u].padded;
                self.backend.mem_add_f32(home, 0, work, 0, padded);
            }
            self.release_grad_work(u);
        }
        if self.plan.shards_grads() || last_micro {
            let b = self.bucket_of[u];
            self.bucket_ready[b] += 1;
            if self.bucket_ready[b] == self.buckets[b].len() {
                self.bucket_ready[b] = 0;
                self.launch_bucket(b)?;
            }
        }
        Ok(())
    }

    /// Copies `range` of unit `u`'s current gradients into `dst[at..]`.
    fn pack_unit(&self, u: usize, range: Range<usize>, dst: &mut B::Mem, at: usize) {
        let be = self.backend.as_ref();
        // The f32 buffer backward wrote (a working buffer, or an fp32 home), else the
        // home in typed memory.
        match (&self.gwork[u], &self.grads[u]) {
            (Some(b), _) | (None, Home::F32(b)) => {
                be.mem_from_f32(dst, at, b, range.start, range.len())
            }
            (None, Home::Typed(s)) => be.mem_copy(dst, at, s, range.start, range.len()),
        }
    }

    fn take_send_recv(&mut self) -> anyhow::Result<MemPair<B>> {
        if self.bucket_bufs.is_empty()
            && self.in_flight.len() >= super::engine::MAX_BUCKETS_IN_FLIGHT
        {
            self.complete_oldest()?;
        }
        if let Some(bufs) = self.bucket_bufs.pop() {
            return Ok(bufs);
        }
        let max: usize = self
            .buckets
            .iter()
            .map(|b| {
                b.iter()
                    .map(|&u| self.layout.units[u].padded)
                    .sum::<usize>()
            })
            .max()
            .unwrap_or(0);
        let recv_len = match self.plan.reduction() {
            GradReduction::AllReduce => 0, // reduced in place
            _ => max / self.layout.world,
        };
        self.transient
            .transient_alloc(Transient::Bucket, (max + recv_len) * self.reduce.bytes());
        Ok(MemPair {
            send: self.backend.alloc_mem(self.reduce, max)?,
            recv: self.backend.alloc_mem(self.reduce, recv_len)?,
        })
    }

    /// Packs bucket `b` and starts its reduction.
    fn launch_bucket(&mut self, b: usize) -> anyhow::Result<()> {
        let mut bufs = self.take_send_recv()?;
        let world = self.layout.world;
        let units = std::mem::take(&mut self.buckets[b]);
        let total: usize = units.iter().map(|&u| self.layout.units[u].padded).sum();
        let op = if self.plan.reduction() == GradReduction::AllReduce {
            let mut at = 0;
            for &u in &units {
                let padded = self.layout.units[u].padded;
                self.pack_unit(u, 0..padded, &mut bufs.send, at);
                at += padded;
            }
            comm::iall_reduce(
                self.backend.as_ref(),
                &self.dp_link,
                &mut self.staging,
                bufs,
                total,
                &mut self.stats,
            )?
        } else {
            // Reduce-scatter layout: for each rank r, every unit's r-th slice in order, so
            // rank r receives exactly its shards of the bucket's units.
            let mut at = 0;
            for r in 0..world {
                for &u in &units {
                    let range = self.layout.units[u].shard_range(r);
                    let n = range.len();
                    self.pack_unit(u, range, &mut bufs.send, at);
                    at += n;
                }
            }
            comm::ireduce_scatter(
                self.backend.as_ref(),
                &self.shard_link,
                &mut self.staging,
                bufs,
                total / world,
                &mut self.stats,
            )?
        };
        if self.plan.shards_grads() {
            for &u in &units {
                self.release_grad_work(u);
            }
        }
        self.buckets[b] = units;
        self.in_flight.push_back((b, op));
        Ok(())
    }

    /// Waits for the oldest reduction and unpacks it into the gradient homes.
    fn complete_oldest(&mut self) -> anyhow::Result<()> {
        let Some((b, op)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let be = self.backend.as_ref();
        let reduction = self.plan.reduction();
        let group = match reduction {
            GradReduction::AllReduce => self.dp,
            _ => self.shard,
        };
        let bufs = op.wait(be, group, &mut self.staging, &mut self.stats)?;
        // An all-reduce's result is in its send buffer, a reduce-scatter's in recv.
        let result = match reduction {
            GradReduction::AllReduce => &bufs.send,
            _ => &bufs.recv,
        };
        let mut at = 0;
        for &u in &self.buckets[b] {
            let l = &self.layout.units[u];
            // Where the unit's reduced part goes in its home, and how long it is.
            let (dst_start, n) = match reduction {
                GradReduction::AllReduce => (0, l.padded),
                GradReduction::ReduceScatterAtBoundary => (l.shard_range(self.rank).start, l.shard),
                GradReduction::ReduceScatterEachMicro => (0, l.shard),
            };
            match &mut self.grads[u] {
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

    /// Waits for every reduction of this step.
    pub(super) fn finish_reductions(&mut self) -> anyhow::Result<()> {
        while !self.in_flight.is_empty() {
            self.complete_oldest()?;
        }
        Ok(())
    }

    pub(super) fn zero_grads(&mut self) {
        let be = self.backend.as_ref();
        for g in self.grads.iter_mut() {
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

    /// Writes an infinity into this rank's first owned gradient element (test hook for
    /// the fp16 overflow path).
    pub(super) fn poison_grads(&mut self) {
        let at = self.home_range(0).start + self.owned_in_domain(0).start;
        let be = self.backend.as_ref();
        match &mut self.grads[0] {
            Home::F32(buf) => be.fill(buf, at, 1, f32::INFINITY),
            Home::Typed(m) => be.mem_fill(m, at, 1, f32::INFINITY),
        }
    }

    /// Range of unit `u`'s gradient home that covers its optimizer domain.
    pub(super) fn home_range(&self, u: usize) -> Range<usize> {
        if self.plan.shards_grads() {
            0..self.layout.units[u].shard
        } else {
            self.domain(u)
        }
    }

    /// The part of unit `u`'s optimizer domain holding real elements this rank owns,
    /// relative to the domain's start (what this rank adds to the global grad norm and
    /// saves in checkpoints). Empty where this rank's slice is all padding; the owned range
    /// lies inside the rank's slice, which lies inside the domain, so this cannot underflow.
    pub(super) fn owned_in_domain(&self, u: usize) -> Range<usize> {
        let d = self.domain(u);
        let v = self.layout.units[u].valid_range(self.rank);
        (v.start - d.start)..(v.end - d.start)
    }
}

/// A unit's reduced gradients over `range` of its home as an f32 buffer and the offset
/// where the range starts in it: the home itself when it is fp32, else `tmp`, converted
/// into.
pub(super) fn grads_f32<'a, B: Backend>(
    backend: &B,
    home: &'a mut Home<B>,
    range: Range<usize>,
    tmp: &'a mut B::Buf,
) -> (&'a mut B::Buf, usize) {
    match home {
        Home::F32(b) => (b, range.start),
        Home::Typed(s) => {
            backend.mem_to_f32(tmp, 0, s, range.start, range.len());
            (tmp, 0)
        }
    }
}
