//! Gradients: working buffers for backward, bucketed non-blocking reductions launched as
//! soon as a bucket's units are done (all-reduce in stage 0, reduce-scatter otherwise),
//! unpacking into each unit's gradient home, and f32 views for the optimizer.
use super::comm;
use super::engine::{Engine, Home};
use super::params::{host_view, host_view_mut};
use crate::device::Backend;
use crate::device::Store;
use crate::metrics::Transient;
use std::ops::Range;

impl<B: Backend> Engine<'_, B> {
    /// Gives unit `u` a zeroed f32 buffer for backward unless its home is one already.
    pub(super) fn acquire_grad_work(&mut self, u: usize) -> anyhow::Result<()> {
        if matches!(self.grads[u], Home::Device(_)) || self.gwork[u].is_some() {
            return Ok(());
        }
        let n = self.layout.max_padded();
        let mut buf = match self.gfree.pop() {
            Some(b) => b,
            None => self.backend.alloc(n)?,
        };
        // Pooled at the largest unit's size; only this unit's padded length is ever read.
        let padded = self.layout.units[u].padded;
        host_view_mut(self.backend.as_ref(), &mut buf)?[..padded].fill(0.0);
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
            // Replicated gradients in host storage accumulate every micro-batch.
            if let (Home::Host(home), Some(work)) = (&mut self.grads[u], &self.gwork[u]) {
                let padded = self.layout.units[u].padded;
                let view = host_view(self.backend.as_ref(), work)?;
                home.add_f32(0, &view[..padded]);
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

    /// Copies `src_range` of unit `u`'s current gradients into `dst[at..]`.
    fn pack_unit(
        &self,
        u: usize,
        range: Range<usize>,
        dst: &mut Store,
        at: usize,
    ) -> anyhow::Result<()> {
        // The f32 buffer backward wrote (a working buffer, or a device-resident home),
        // else the home in host storage.
        match (&self.gwork[u], &self.grads[u]) {
            (Some(b), _) | (None, Home::Device(b)) => {
                dst.write_f32(at, &host_view(self.backend.as_ref(), b)?[range])
            }
            (None, Home::Host(s)) => dst.copy_from(at, s, range),
        }
        Ok(())
    }

    fn take_send_recv(&mut self) -> anyhow::Result<(Store, Store)> {
        if self.bucket_bufs.is_empty()
            && self.in_flight.len() >= super::engine::MAX_BUCKETS_IN_FLIGHT
        {
            self.complete_oldest()?;
        }
        Ok(self.bucket_bufs.pop().unwrap_or_else(|| {
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
            let recv_len = if self.plan.stage == 0 {
                0
            } else {
                max / self.layout.world
            };
            self.transient
                .transient_alloc(Transient::Bucket, (max + recv_len) * self.reduce.bytes());
            (
                Store::zeros(self.reduce, max),
                Store::zeros(self.reduce, recv_len),
            )
        }))
    }

    /// Packs bucket `b` and starts its reduction.
    fn launch_bucket(&mut self, b: usize) -> anyhow::Result<()> {
        let (mut send, mut recv) = self.take_send_recv()?;
        let world = self.layout.world;
        let units = std::mem::take(&mut self.buckets[b]);
        let total: usize = units.iter().map(|&u| self.layout.units[u].padded).sum();
        send.set_len(total);
        let op = if self.plan.stage == 0 {
            let mut at = 0;
            for &u in &units {
                let padded = self.layout.units[u].padded;
                self.pack_unit(u, 0..padded, &mut send, at)?;
                at += padded;
            }
            drop(recv); // empty: an all-reduce reduces in place
            comm::iall_reduce(self.dp, send, &mut self.stats)?
        } else {
            // Reduce-scatter layout: for each rank r, every unit's r-th slice in order, so
            // rank r receives exactly its shards of the bucket's units.
            let mut at = 0;
            for r in 0..world {
                for &u in &units {
                    let range = self.layout.units[u].shard_range(r);
                    let n = range.len();
                    self.pack_unit(u, range, &mut send, at)?;
                    at += n;
                }
            }
            recv.set_len(total / world);
            comm::ireduce_scatter(self.shard, send, recv, &mut self.stats)?
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
        let (result, other) = op.wait(&mut self.stats)?;
        let units = std::mem::take(&mut self.buckets[b]);
        let mut at = 0;
        for &u in &units {
            let l = &self.layout.units[u];
            let (dst_start, n) = match self.plan.stage {
                0 => (0, l.padded),
                1 => (l.shard_range(self.rank).start, l.shard),
                _ => (0, l.shard),
            };
            match &mut self.grads[u] {
                Home::Device(buf) => {
                    let view = host_view_mut(self.backend.as_ref(), buf)?;
                    result.read_f32(at..at + n, &mut view[dst_start..dst_start + n]);
                }
                Home::Host(home) if self.plan.shards_grads() => {
                    home.add_from(dst_start, &result, at..at + n)
                }
                Home::Host(home) => home.copy_from(dst_start, &result, at..at + n),
            }
            at += n;
        }
        self.buckets[b] = units;
        // Back to the pool as (send, recv): an all-reduce's result is its send buffer
        // (and `other` is empty); a reduce-scatter's `other` is the send buffer.
        if self.plan.stage == 0 {
            self.bucket_bufs.push((result, other));
        } else {
            self.bucket_bufs.push((other, result));
        }
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
        for g in self.grads.iter_mut() {
            match g {
                Home::Device(buf) => match self.backend.host_mut(buf) {
                    Some(v) => v.fill(0.0),
                    None => {
                        let n = self.backend.len(buf);
                        self.host_tmp[..n].fill(0.0);
                        self.backend.upload(buf, &self.host_tmp[..n]);
                    }
                },
                Home::Host(s) => s.fill_zero(),
            }
        }
    }

    /// Writes an infinity into this rank's first owned gradient element (test hook for
    /// the fp16 overflow path).
    pub(super) fn poison_grads(&mut self) -> anyhow::Result<()> {
        let at = self.home_range(0).start + self.owned_in_domain(0).start;
        match &mut self.grads[0] {
            Home::Device(buf) => host_view_mut(self.backend.as_ref(), buf)?[at] = f32::INFINITY,
            Home::Host(s) => s.write_f32(at, &[f32::INFINITY]),
        }
        Ok(())
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

    /// Unit `u`'s reduced gradients over its optimizer domain as f32 (borrowed when the
    /// home is f32, converted into `tmp` otherwise).
    pub(super) fn grad_domain<'a>(
        &'a self,
        u: usize,
        tmp: &'a mut [f32],
    ) -> anyhow::Result<&'a [f32]> {
        let range = self.home_range(u);
        Ok(match &self.grads[u] {
            Home::Device(b) => &host_view(self.backend.as_ref(), b)?[range],
            Home::Host(Store::F32(v)) => &v[range],
            Home::Host(s) => {
                let n = range.len();
                s.read_f32(range, &mut tmp[..n]);
                &tmp[..n]
            }
        })
    }
}
