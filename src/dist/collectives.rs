//! Blocking collectives on host slices, their argument checks (shared with the
//! non-blocking and device forms) and the reduction ops.
use std::os::raw::c_int;

use mpi::ffi;

use super::call::{check, Call, Kind};
use super::{Elem, Group};

/// Reduction for the element collectives. `Avg` is the sum divided by the group's size,
/// applied after the sum (one more rounding for half types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Avg,
}

/// Reduction for the f64 scalar helper (grad norms, overflow flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarOp {
    Sum,
    Max,
}

/// What a collective can refuse. Checks run before any MPI call, on the local arguments.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error("rank {rank}: {op}: {detail}")]
    Length {
        op: &'static str,
        rank: usize,
        detail: String,
    },
    #[error("rank {rank}: {op}: {len} elements exceed MPI's int count limit")]
    TooLong {
        op: &'static str,
        rank: usize,
        len: usize,
    },
    #[error("rank {rank}: broadcast root {root} is not a rank of group {group} ({size} ranks)")]
    BadRoot {
        rank: usize,
        root: usize,
        group: String,
        size: usize,
    },
    #[error("rank {rank}: {what} failed with MPI error code {code}")]
    Mpi {
        what: &'static str,
        code: c_int,
        rank: usize,
    },
}

impl Group {
    fn count(&self, len: usize, op: &'static str) -> Result<c_int, DistError> {
        c_int::try_from(len).map_err(|_| DistError::TooLong {
            op,
            rank: self.world_rank,
            len,
        })
    }

    pub(super) fn length_error(&self, op: &'static str, detail: String) -> DistError {
        DistError::Length {
            op,
            rank: self.world_rank,
            detail,
        }
    }

    /// Checks a reduce-scatter (`send.len() == recv.len() * size`); returns the block count.
    pub(crate) fn check_reduce_scatter(
        &self,
        send: usize,
        recv: usize,
    ) -> Result<c_int, DistError> {
        if recv.checked_mul(self.size()) != Some(send) {
            let d = format!(
                "send has {send} elements but must hold recv's {recv} times {} ranks",
                self.size()
            );
            return Err(self.length_error("reduce_scatter", d));
        }
        self.count(send, "reduce_scatter")?;
        self.count(recv, "reduce_scatter")
    }

    /// Checks an all-gather (`recv.len() == send.len() * size`); returns the block count.
    pub(crate) fn check_all_gather(&self, send: usize, recv: usize) -> Result<c_int, DistError> {
        if send.checked_mul(self.size()) != Some(recv) {
            let d = format!(
                "recv has {recv} elements but must hold send's {send} times {} ranks",
                self.size()
            );
            return Err(self.length_error("all_gather", d));
        }
        self.count(recv, "all_gather")?;
        self.count(send, "all_gather")
    }

    /// Checks a broadcast; returns the count.
    pub(crate) fn check_broadcast(&self, len: usize, root: usize) -> Result<c_int, DistError> {
        if root >= self.size() {
            return Err(DistError::BadRoot {
                rank: self.world_rank,
                root,
                group: self.name().to_string(),
                size: self.size(),
            });
        }
        self.count(len, "broadcast")
    }

    /// Checks an all-reduce; returns the count.
    pub(crate) fn check_all_reduce(&self, len: usize) -> Result<c_int, DistError> {
        self.count(len, "all_reduce")
    }

    /// Applies the post-step of `op` to a reduced buffer (divides by the group's size for Avg).
    pub(crate) fn finish_reduce<T: Elem>(&self, buf: &mut [T], op: ReduceOp) {
        if op == ReduceOp::Avg && self.size() > 1 {
            let n = self.size() as f32;
            for x in buf.iter_mut() {
                *x = T::from_f32(x.to_f32() / n);
            }
        }
    }

    /// In-place all-reduce of `buf` over the group's ranks (`MPI_Allreduce` with `MPI_IN_PLACE`).
    /// Every rank passes the same length; zero length makes no MPI call.
    pub fn all_reduce<T: Elem>(&self, buf: &mut [T], op: ReduceOp) -> Result<(), DistError> {
        let count = self.check_all_reduce(buf.len())?;
        if count > 0 {
            let scratch: Vec<T>;
            let send = match self.in_place {
                Some(p) => p as *const T,
                None => {
                    scratch = buf.to_vec();
                    scratch.as_ptr()
                }
            };
            let call = Call::new(self, Kind::AllReduce, send, buf.as_mut_ptr(), count);
            // SAFETY: `send` is MPI_IN_PLACE or `scratch`, `buf` holds `count` elements.
            check(
                unsafe { call.run(&self.comm) },
                "MPI_Allreduce",
                self.world_rank,
            )?;
        }
        self.finish_reduce(buf, op);
        Ok(())
    }

    /// Reduces half (or f32) data into an f32 result: widens `send` into `recv`, then
    /// all-reduces in f32, so the sum rounds only as f32 does.
    pub fn all_reduce_into_f32<T: Elem>(
        &self,
        send: &[T],
        recv: &mut [f32],
        op: ReduceOp,
    ) -> Result<(), DistError> {
        if send.len() != recv.len() {
            let d = format!("send has {} elements, recv {}", send.len(), recv.len());
            return Err(self.length_error("all_reduce_into_f32", d));
        }
        for (y, x) in recv.iter_mut().zip(send) {
            *y = x.to_f32();
        }
        self.all_reduce(recv, op)
    }

    /// Reduce-scatter in equal blocks: `send` (`recv.len() * size` elements, rank r's block
    /// at `[r*b, (r+1)*b)`) is reduced over ranks and this rank's block lands in `recv`.
    pub fn reduce_scatter<T: Elem>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: ReduceOp,
    ) -> Result<(), DistError> {
        let count = self.check_reduce_scatter(send.len(), recv.len())?;
        if count > 0 {
            let call = Call::new(
                self,
                Kind::ReduceScatter,
                send.as_ptr(),
                recv.as_mut_ptr(),
                count,
            );
            // SAFETY: lengths checked above.
            check(
                unsafe { call.run(&self.comm) },
                "MPI_Reduce_scatter_block",
                self.world_rank,
            )?;
        }
        self.finish_reduce(recv, op);
        Ok(())
    }

    /// All-gather in equal blocks: rank r's `send` lands at `recv[r*b .. (r+1)*b]`.
    pub fn all_gather<T: Elem>(&self, send: &[T], recv: &mut [T]) -> Result<(), DistError> {
        let count = self.check_all_gather(send.len(), recv.len())?;
        if count > 0 {
            let call = Call::new(
                self,
                Kind::AllGather,
                send.as_ptr(),
                recv.as_mut_ptr(),
                count,
            );
            // SAFETY: lengths checked above.
            check(
                unsafe { call.run(&self.comm) },
                "MPI_Allgather",
                self.world_rank,
            )?;
        }
        Ok(())
    }

    /// Broadcast of `buf` from `root` to every rank.
    pub fn broadcast<T: Elem>(&self, buf: &mut [T], root: usize) -> Result<(), DistError> {
        let count = self.check_broadcast(buf.len(), root)?;
        if count > 0 {
            let mut call = Call::new(self, Kind::Broadcast, buf.as_ptr(), buf.as_mut_ptr(), count);
            call.root = root as c_int;
            // SAFETY: `buf` holds `count` elements.
            check(
                unsafe { call.run(&self.comm) },
                "MPI_Bcast",
                self.world_rank,
            )?;
        }
        Ok(())
    }

    /// Blocks until every rank of the group has entered the barrier.
    pub fn barrier(&self) -> Result<(), DistError> {
        // SAFETY: a valid communicator.
        let rc = unsafe { ffi::MPI_Barrier(mpi::raw::AsRaw::as_raw(&self.comm)) };
        check(rc, "MPI_Barrier", self.world_rank)
    }

    /// All-reduce of one f64 (sum for norms and counts, max for overflow flags).
    pub fn all_reduce_f64(&self, x: f64, op: ScalarOp) -> f64 {
        self.all_reduce_f64s([x], op)[0]
    }

    /// Element-wise all-reduce of a few f64s in one collective.
    pub fn all_reduce_f64s<const N: usize>(&self, x: [f64; N], op: ScalarOp) -> [f64; N] {
        let mut y = x;
        // SAFETY: N f64 in, N out; the built-in ops and datatype handles are immutable.
        unsafe {
            let mpi_op = match op {
                ScalarOp::Sum => ffi::RSMPI_SUM,
                ScalarOp::Max => ffi::RSMPI_MAX,
            };
            let comm = mpi::raw::AsRaw::as_raw(&self.comm);
            // MPI_ERRORS_ARE_FATAL is the world's handler: a failure aborts the job.
            ffi::MPI_Allreduce(
                x.as_ptr() as *const _,
                y.as_mut_ptr() as *mut _,
                N as i32,
                ffi::RSMPI_DOUBLE,
                mpi_op,
                comm,
            );
        }
        y
    }
}
