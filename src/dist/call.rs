//! The one place that issues collective MPI calls: a described call, run blocking or
//! started non-blocking. Blocking, non-blocking and device-buffer forms all go through it.
use std::os::raw::{c_int, c_void};

use mpi::ffi;
use mpi::raw::AsRaw;

use super::collectives::DistError;
use super::{Elem, Group};

/// Which collective.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `count` elements, `send` may be `MPI_IN_PLACE`.
    AllReduce,
    /// `count` = elements per rank block received; `send` holds `count * size`.
    ReduceScatter,
    /// `count` = elements each rank sends; `recv` holds `count * size`.
    AllGather,
    /// `count` elements at `recv`, from `root`.
    Broadcast,
}

/// A collective call with raw pointers. Building one is safe; running it is `unsafe`
/// because the pointers must stay valid (and unmoved) until the call completes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call {
    pub kind: Kind,
    pub send: *const c_void,
    pub recv: *mut c_void,
    pub count: c_int,
    pub datatype: ffi::MPI_Datatype,
    pub op: ffi::MPI_Op,
    pub root: c_int,
}

impl Call {
    /// A call on `T` elements with the sum op for `T`.
    pub(crate) fn new<T: Elem>(
        group: &Group,
        kind: Kind,
        send: *const T,
        recv: *mut T,
        count: c_int,
    ) -> Call {
        Call {
            kind,
            send: send as *const c_void,
            recv: recv as *mut c_void,
            count,
            datatype: T::mpi_datatype(),
            op: group.ops.sum(T::DTYPE),
            root: 0,
        }
    }

    /// Runs the blocking MPI call.
    ///
    /// # Safety
    /// `send`/`recv` must be valid for the sizes `kind` and `count` imply.
    pub(crate) unsafe fn run(&self, comm: &impl AsRaw<Raw = ffi::MPI_Comm>) -> c_int {
        let c = comm.as_raw();
        match self.kind {
            Kind::AllReduce => {
                ffi::MPI_Allreduce(self.send, self.recv, self.count, self.datatype, self.op, c)
            }
            Kind::ReduceScatter => ffi::MPI_Reduce_scatter_block(
                self.send,
                self.recv,
                self.count,
                self.datatype,
                self.op,
                c,
            ),
            Kind::AllGather => ffi::MPI_Allgather(
                self.send,
                self.count,
                self.datatype,
                self.recv,
                self.count,
                self.datatype,
                c,
            ),
            Kind::Broadcast => ffi::MPI_Bcast(self.recv, self.count, self.datatype, self.root, c),
        }
    }

    /// Starts the non-blocking MPI call, writing its request to `req`.
    ///
    /// # Safety
    /// As [`Call::run`], and the buffers must stay valid until the request completes.
    pub(crate) unsafe fn start(
        &self,
        comm: &impl AsRaw<Raw = ffi::MPI_Comm>,
        req: &mut ffi::MPI_Request,
    ) -> c_int {
        let c = comm.as_raw();
        match self.kind {
            Kind::AllReduce => ffi::MPI_Iallreduce(
                self.send,
                self.recv,
                self.count,
                self.datatype,
                self.op,
                c,
                req,
            ),
            Kind::ReduceScatter => ffi::MPI_Ireduce_scatter_block(
                self.send,
                self.recv,
                self.count,
                self.datatype,
                self.op,
                c,
                req,
            ),
            Kind::AllGather => ffi::MPI_Iallgather(
                self.send,
                self.count,
                self.datatype,
                self.recv,
                self.count,
                self.datatype,
                c,
                req,
            ),
            Kind::Broadcast => {
                ffi::MPI_Ibcast(self.recv, self.count, self.datatype, self.root, c, req)
            }
        }
    }
}

/// Turns an MPI return code into an error naming the call and the rank.
pub(crate) fn check(rc: c_int, what: &'static str, rank: usize) -> Result<(), DistError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(DistError::Mpi {
            what,
            code: rc,
            rank,
        })
    }
}
