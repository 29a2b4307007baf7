//! Collectives on raw memory addresses: how a device-aware transport hands device memory
//! (or the host memory of the CPU backend) to MPI without copying it through host
//! buffers. The caller owns the memory and keeps it alive and unmoved until a started
//! request completes; sums use the same ops as every other collective (half types: add in
//! f32, round once).
use std::os::raw::c_int;

use mpi::ffi;

use super::call::{check, Call, Kind};
use super::collectives::DistError;
use super::elem::{mpi_datatype, DType};
use super::nonblocking::Request;
use super::Group;

/// A collective on raw memory, with `count` as each variant says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawCollective {
    /// Sum `count` elements at `recv` over the group, in place (`send` is not read).
    AllReduceInPlace,
    /// `send` holds `count * size` elements; this rank's summed block of `count` lands
    /// in `recv`.
    ReduceScatter,
    /// `send` holds `count` elements; `recv` gets every rank's block (`count * size`).
    AllGather,
    /// `recv` holds `count * size` elements with this rank's block already in place at
    /// `rank * count`; every other block is filled in (`send` is not read).
    AllGatherInPlace,
}

impl Group {
    /// True when this MPI's `MPI_IN_PLACE` is known (OpenMPI, MPICH); the in-place raw
    /// collectives need it.
    pub fn has_in_place(&self) -> bool {
        self.in_place.is_some()
    }

    /// True when device buffers may be handed to MPI directly (CUDA-aware MPI, as
    /// decided at start-up; see `cuda_aware.rs`).
    pub fn cuda_aware(&self) -> bool {
        self.cuda_aware
    }

    /// True when CUDA-awareness was detected from the library rather than set by the
    /// user (`system.cuda_aware = "on"` or `ZEROTRAIN_CUDA_AWARE=1`).
    pub fn cuda_aware_detected(&self) -> bool {
        self.cuda_aware_detected
    }

    fn raw_call(
        &self,
        what: RawCollective,
        dtype: DType,
        send: *const u8,
        recv: *mut u8,
        count: usize,
    ) -> Result<Call, DistError> {
        let n = count.saturating_mul(self.size());
        let (kind, count, send) = match what {
            RawCollective::AllReduceInPlace => (
                Kind::AllReduce,
                self.check_all_reduce(count)?,
                self.in_place_ptr()?,
            ),
            RawCollective::ReduceScatter => (
                Kind::ReduceScatter,
                self.check_reduce_scatter(n, count)?,
                send,
            ),
            RawCollective::AllGather => (Kind::AllGather, self.check_all_gather(count, n)?, send),
            RawCollective::AllGatherInPlace => (
                Kind::AllGather,
                self.check_all_gather(count, n)?,
                self.in_place_ptr()?,
            ),
        };
        Ok(Call {
            kind,
            send: send as *const std::ffi::c_void,
            recv: recv as *mut std::ffi::c_void,
            count,
            datatype: mpi_datatype(dtype),
            op: self.ops.sum(dtype),
            root: 0 as c_int,
        })
    }

    fn in_place_ptr(&self) -> Result<*const u8, DistError> {
        self.in_place.map(|p| p as *const u8).ok_or_else(|| {
            self.length_error(
                "in-place collective",
                "MPI_IN_PLACE of this MPI is unknown".into(),
            )
        })
    }

    /// Runs `what` to completion.
    ///
    /// # Safety
    /// `send` and `recv` must address memory MPI can use (host memory, or device memory
    /// with CUDA-aware MPI) of the sizes `what` states, with pending device work on it
    /// finished.
    pub unsafe fn run_raw(
        &self,
        what: RawCollective,
        dtype: DType,
        send: *const u8,
        recv: *mut u8,
        count: usize,
    ) -> Result<(), DistError> {
        let call = self.raw_call(what, dtype, send, recv, count)?;
        if call.count == 0 {
            return Ok(());
        }
        check(call.run(&self.comm), raw_name(what, false), self.world_rank)
    }

    /// Starts `what`; the returned request must complete (test, wait or drop) before the
    /// memory is reused or freed.
    ///
    /// # Safety
    /// As [`Group::run_raw`], and the memory must stay valid until the request completes.
    pub unsafe fn start_raw(
        &self,
        what: RawCollective,
        dtype: DType,
        send: *const u8,
        recv: *mut u8,
        count: usize,
    ) -> Result<Request, DistError> {
        let call = self.raw_call(what, dtype, send, recv, count)?;
        let mut raw: ffi::MPI_Request = ffi::RSMPI_REQUEST_NULL;
        if call.count == 0 {
            return Ok(Request::new(raw, true));
        }
        check(
            call.start(&self.comm, &mut raw),
            raw_name(what, true),
            self.world_rank,
        )?;
        Ok(Request::new(raw, false))
    }
}

fn raw_name(what: RawCollective, nonblocking: bool) -> &'static str {
    match (what, nonblocking) {
        (RawCollective::AllReduceInPlace, false) => "MPI_Allreduce",
        (RawCollective::AllReduceInPlace, true) => "MPI_Iallreduce",
        (RawCollective::ReduceScatter, false) => "MPI_Reduce_scatter_block",
        (RawCollective::ReduceScatter, true) => "MPI_Ireduce_scatter_block",
        (RawCollective::AllGather | RawCollective::AllGatherInPlace, false) => "MPI_Allgather",
        (RawCollective::AllGather | RawCollective::AllGatherInPlace, true) => "MPI_Iallgather",
    }
}
