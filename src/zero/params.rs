//! Parameters for compute: materialising a unit's f32 working buffer (stage 3 gathers its
//! shards, half precision converts), prefetching the next unit, releasing after use, and
//! publishing updated parameters after the optimizer step.
use super::comm;
use super::engine::{Engine, Home};
use crate::device::Backend;
use crate::device::Store;
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
    fn take_gather_bufs(&mut self) -> (Store, Store) {
        self.gather_bufs.pop().unwrap_or_else(|| {
            let (shard, padded) = (
                self.layout.max_padded() / self.layout.world,
                self.layout.max_padded(),
            );
            let dtype = self.plan.dtype;
            // Counted as gathered memory for the rest of the run (reused every step).
            self.transient
                .transient_alloc(Transient::Gathered, (shard + padded) * dtype.bytes());
            (Store::zeros(dtype, shard), Store::zeros(dtype, padded))
        })
    }

    /// Starts the all-gather of unit `u`'s shards (stage 3) and returns it.
    fn start_gather(&mut self, u: usize) -> anyhow::Result<comm::InFlight> {
        let l = &self.layout.units[u];
        let (shard, padded) = (l.shard, l.padded);
        let (mut send, mut recv) = self.take_gather_bufs();
        let Home::Host(mine) = &self.params[u] else {
            anyhow::bail!("internal error: stage 3 unit {u} is not sharded");
        };
        send.set_len(shard);
        send.copy_from(0, mine, 0..shard);
        recv.set_len(padded);
        comm::iall_gather(self.shard, send, recv, &mut self.stats)
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

    /// Makes unit `u`'s parameters available as an f32 device buffer.
    pub(super) fn materialize(&mut self, u: usize) -> anyhow::Result<()> {
        if matches!(self.params[u], Home::Device(_)) || self.pwork[u].is_some() {
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
            let (recv, send) = op.wait(&mut self.stats)?;
            write_device(
                self.backend.as_ref(),
                &mut buf,
                &recv,
                padded,
                &mut self.host_tmp,
            );
            self.gather_bufs.push((send, recv));
        } else if let Home::Host(full) = &self.params[u] {
            write_device(
                self.backend.as_ref(),
                &mut buf,
                full,
                padded,
                &mut self.host_tmp,
            );
        }
        self.pwork[u] = Some(buf);
        Ok(())
    }

    /// Returns unit `u`'s working buffer to the pool (no-op for device-resident params).
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
        for u in 0..self.specs.len() {
            let domain = self.domain(u);
            let (shard, padded) = (self.layout.units[u].shard, self.layout.units[u].padded);
            if self.plan.has_master() {
                let start = if self.plan.shards_params() {
                    0
                } else {
                    domain.start
                };
                if let Home::Host(p) = &mut self.params[u] {
                    p.write_f32(start, &self.master[u]);
                }
            }
            if !self.plan.shards_optimizer() || self.plan.shards_params() {
                continue;
            }
            match &mut self.params[u] {
                Home::Device(buf) => {
                    let full = host_view_mut(self.backend.as_ref(), buf)?;
                    self.host_tmp[..shard].copy_from_slice(&full[domain]);
                    comm::all_gather_f32(
                        self.shard,
                        &self.host_tmp[..shard],
                        &mut full[..padded],
                        &mut self.stats,
                    )?;
                }
                Home::Host(_) => {
                    let (mut send, recv) = self.take_gather_bufs();
                    if let Home::Host(full) = &mut self.params[u] {
                        send.set_len(shard);
                        send.copy_from(0, full, domain);
                        comm::all_gather(self.shard, &send, full, &mut self.stats)?;
                    }
                    self.gather_bufs.push((send, recv));
                }
            }
        }
        Ok(())
    }
}

fn no_host_view<B: Backend>(backend: &B) -> anyhow::Error {
    anyhow::anyhow!(
        "backend {} has no host view: device-resident ZeRO collectives are not built yet",
        backend.name()
    )
}

/// Host view of a device buffer; backends without one are not supported yet by the
/// engine's host-side collectives.
pub(super) fn host_view<'a, B: Backend>(backend: &B, buf: &'a B::Buf) -> anyhow::Result<&'a [f32]> {
    backend.host(buf).ok_or_else(|| no_host_view(backend))
}

/// Mutable host view of a device buffer (see [`host_view`]).
pub(super) fn host_view_mut<'a, B: Backend>(
    backend: &B,
    buf: &'a mut B::Buf,
) -> anyhow::Result<&'a mut [f32]> {
    backend.host_mut(buf).ok_or_else(|| no_host_view(backend))
}

/// `buf[..n] = src[..n]` as f32 (zero-copy into the host view on CPU, staged otherwise).
pub(super) fn write_device<B: Backend>(
    backend: &B,
    buf: &mut B::Buf,
    src: &Store,
    n: usize,
    tmp: &mut [f32],
) {
    match backend.host_mut(buf) {
        Some(view) => src.read_f32(0..n, &mut view[..n]),
        None => {
            src.read_f32(0..n, &mut tmp[..n]);
            backend.upload(buf, &tmp[..n]);
        }
    }
}
