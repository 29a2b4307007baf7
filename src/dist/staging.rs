//! Collectives on device buffers: passed to MPI directly when MPI is CUDA-aware and the
//! buffer has a device pointer, otherwise staged through a caller-owned host buffer
//! (copy to host, host collective, copy back). The `device` part implements [`DeviceBuf`].
use std::os::raw::c_int;

use super::call::{check, Call, Kind};
use super::collectives::ReduceOp;
use super::{Elem, Group};

/// A buffer that may live in device memory.
pub trait DeviceBuf<T: Elem> {
    /// Number of elements.
    fn len(&self) -> usize;
    /// True when empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A pointer a CUDA-aware MPI may read and write, valid now (producer work already
    /// synchronised); `None` when the buffer cannot be handed to MPI directly.
    fn device_ptr(&mut self) -> Option<*mut T>;
    /// Copies the whole buffer into `dst` (`dst.len() == self.len()`), synchronously.
    fn copy_to_host(&self, dst: &mut [T]) -> anyhow::Result<()>;
    /// Overwrites the whole buffer from `src` (`src.len() == self.len()`), synchronously.
    fn copy_from_host(&mut self, src: &[T]) -> anyhow::Result<()>;
    /// Multiplies every element by `factor` where the buffer lives (for Avg on the direct path).
    fn scale(&mut self, factor: f32) -> anyhow::Result<()>;
}

/// Resizes the staging buffer to `n` elements (allocating only when it grows).
fn stage<T: Elem>(staging: &mut Vec<T>, n: usize) -> &mut [T] {
    staging.resize(n, T::default());
    &mut staging[..n]
}

impl Group {
    /// The direct-path pointer: only when CUDA-aware and the buffer offers one.
    fn direct<T: Elem>(&self, buf: &mut dyn DeviceBuf<T>) -> Option<*mut T> {
        if self.cuda_aware {
            buf.device_ptr()
        } else {
            None
        }
    }

    fn run_direct(&self, call: Call, what: &'static str) -> anyhow::Result<()> {
        // SAFETY: callers build `call` from device pointers of checked lengths.
        check(unsafe { call.run(&self.comm) }, what, self.world_rank)?;
        Ok(())
    }

    /// In-place all-reduce of a device buffer; `staging` is reused host memory.
    pub fn all_reduce_device<T: Elem>(
        &self,
        buf: &mut dyn DeviceBuf<T>,
        staging: &mut Vec<T>,
        op: ReduceOp,
    ) -> anyhow::Result<()> {
        let n = buf.len();
        let count = self.check_all_reduce(n)?;
        match (self.direct(buf), self.in_place) {
            (Some(p), Some(ip)) if count > 0 => {
                let call = Call::new(self, Kind::AllReduce, ip as *const T, p, count);
                self.run_direct(call, "MPI_Allreduce")?;
                if op == ReduceOp::Avg && self.size() > 1 {
                    buf.scale(1.0 / self.size() as f32)?;
                }
                Ok(())
            }
            _ => {
                let host = stage(staging, n);
                buf.copy_to_host(host)?;
                self.all_reduce(host, op)?;
                buf.copy_from_host(host)
            }
        }
    }

    /// Reduce-scatter of device buffers (`send.len() == recv.len() * size`).
    pub fn reduce_scatter_device<T: Elem>(
        &self,
        send: &mut dyn DeviceBuf<T>,
        recv: &mut dyn DeviceBuf<T>,
        staging: &mut Vec<T>,
        op: ReduceOp,
    ) -> anyhow::Result<()> {
        let (ns, nr) = (send.len(), recv.len());
        let count = self.check_reduce_scatter(ns, nr)?;
        match (self.direct(send), self.direct(recv)) {
            (Some(s), Some(r)) if count > 0 => {
                let call = Call::new(self, Kind::ReduceScatter, s as *const T, r, count);
                self.run_direct(call, "MPI_Reduce_scatter_block")?;
                if op == ReduceOp::Avg && self.size() > 1 {
                    recv.scale(1.0 / self.size() as f32)?;
                }
                Ok(())
            }
            _ => {
                let host = stage(staging, ns + nr);
                let (hs, hr) = host.split_at_mut(ns);
                send.copy_to_host(hs)?;
                self.reduce_scatter(hs, hr, op)?;
                recv.copy_from_host(hr)
            }
        }
    }

    /// All-gather of device buffers (`recv.len() == send.len() * size`).
    pub fn all_gather_device<T: Elem>(
        &self,
        send: &mut dyn DeviceBuf<T>,
        recv: &mut dyn DeviceBuf<T>,
        staging: &mut Vec<T>,
    ) -> anyhow::Result<()> {
        let (ns, nr) = (send.len(), recv.len());
        let count = self.check_all_gather(ns, nr)?;
        match (self.direct(send), self.direct(recv)) {
            (Some(s), Some(r)) if count > 0 => {
                let call = Call::new(self, Kind::AllGather, s as *const T, r, count);
                self.run_direct(call, "MPI_Allgather")
            }
            _ => {
                let host = stage(staging, ns + nr);
                let (hs, hr) = host.split_at_mut(ns);
                send.copy_to_host(hs)?;
                self.all_gather(hs, hr)?;
                recv.copy_from_host(hr)
            }
        }
    }

    /// Broadcast of a device buffer from `root`.
    pub fn broadcast_device<T: Elem>(
        &self,
        buf: &mut dyn DeviceBuf<T>,
        root: usize,
        staging: &mut Vec<T>,
    ) -> anyhow::Result<()> {
        let n = buf.len();
        let count = self.check_broadcast(n, root)?;
        match self.direct(buf) {
            Some(p) if count > 0 => {
                let mut call = Call::new(self, Kind::Broadcast, p as *const T, p, count);
                call.root = root as c_int;
                self.run_direct(call, "MPI_Bcast")
            }
            _ => {
                let host = stage(staging, n);
                if self.rank() == root {
                    buf.copy_to_host(host)?;
                }
                self.broadcast(host, root)?;
                buf.copy_from_host(host)
            }
        }
    }
}
