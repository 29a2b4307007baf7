//! Non-blocking collectives that own their buffers, so callers need no MPI scopes:
//! start with `Group::i*`, drive progress with `test()`, collect with `wait()`.
use std::marker::PhantomData;
use std::os::raw::c_int;

use mpi::ffi;

use super::call::{check, Call, Kind};
use super::collectives::{DistError, ReduceOp};
use super::{Elem, Group};

/// A started MPI request. `test()` drives progress; dropping an unfinished request waits
/// for it (unless MPI is already finalized, where nothing can be waited for).
pub struct Request {
    raw: ffi::MPI_Request,
    done: bool,
    // MPI_THREAD_FUNNELED: keep requests on the thread that started them.
    _not_send: PhantomData<*const ()>,
}

impl Request {
    pub(super) fn new(raw: ffi::MPI_Request, done: bool) -> Request {
        Request {
            raw,
            done,
            _not_send: PhantomData,
        }
    }

    /// One `MPI_Test`: makes progress and reports whether the request has completed.
    pub fn test(&mut self) -> bool {
        if !self.done {
            let mut flag: c_int = 0;
            // SAFETY: `raw` is an active request started by this process.
            unsafe { ffi::MPI_Test(&mut self.raw, &mut flag, ffi::RSMPI_STATUS_IGNORE) };
            self.done = flag != 0;
        }
        self.done
    }

    /// True once the request has completed (no MPI call).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Blocks until the request completes.
    pub fn wait(mut self) {
        self.complete();
    }

    /// Waits if needed; false only when MPI was finalized with the request still active.
    fn complete(&mut self) -> bool {
        if !self.done {
            if mpi::environment::is_finalized() {
                return false;
            }
            // SAFETY: `raw` is an active request started by this process.
            unsafe { ffi::MPI_Wait(&mut self.raw, ffi::RSMPI_STATUS_IGNORE) };
            self.done = true;
        }
        true
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        self.complete();
    }
}

/// A non-blocking collective in flight, owning both of its buffers.
///
/// [`Pending::wait`] returns `(result, other)`:
/// - all-reduce, broadcast: `result` is the buffer passed in, now reduced (Avg already
///   divided) or broadcast; `other` is empty (or, on an MPI library without a known
///   `MPI_IN_PLACE`, the internal copy of the input).
/// - reduce-scatter: `result` is `recv` holding this rank's reduced block; `other` is
///   `send`, unchanged, returned for reuse.
/// - all-gather: `result` is `recv` holding every rank's block; `other` is `send`.
///
/// The Vec heap allocations never move while MPI uses them (moving a Vec moves only its
/// header). Dropping an unfinished `Pending` waits first; if MPI is already finalized the
/// buffers are leaked rather than freed under MPI.
pub struct Pending<T: Elem> {
    req: Request,
    result: Vec<T>,
    other: Vec<T>,
    avg_over: Option<usize>,
}

impl<T: Elem> Pending<T> {
    /// One `MPI_Test`: drives progress; true once complete. Call it between units of work.
    pub fn test(&mut self) -> bool {
        self.req.test()
    }

    /// Blocks until complete and returns `(result, other)` as described on [`Pending`].
    pub fn wait(mut self) -> (Vec<T>, Vec<T>) {
        self.req.complete();
        let mut result = std::mem::take(&mut self.result);
        let other = std::mem::take(&mut self.other);
        if let Some(n) = self.avg_over.filter(|&n| n > 1) {
            let n = n as f32;
            for x in result.iter_mut() {
                *x = T::from_f32(x.to_f32() / n);
            }
        }
        (result, other)
    }
}

impl<T: Elem> Drop for Pending<T> {
    fn drop(&mut self) {
        if !self.req.complete() {
            log::warn!(
                "a non-blocking collective was still active at MPI_Finalize; leaking its buffers"
            );
            std::mem::forget(std::mem::take(&mut self.result));
            std::mem::forget(std::mem::take(&mut self.other));
        }
    }
}

impl Group {
    fn start<T: Elem>(
        &self,
        call: Option<Call>,
        what: &'static str,
        result: Vec<T>,
        other: Vec<T>,
        avg_over: Option<usize>,
    ) -> Result<Pending<T>, DistError> {
        let mut raw: ffi::MPI_Request = unsafe { ffi::RSMPI_REQUEST_NULL };
        let done = match call {
            None => true,
            Some(call) => {
                // SAFETY: the call's pointers point into `result`/`other`, whose heap
                // buffers the returned Pending owns until the request completes.
                check(
                    unsafe { call.start(&self.comm, &mut raw) },
                    what,
                    self.world_rank,
                )?;
                false
            }
        };
        Ok(Pending {
            req: Request::new(raw, done),
            result,
            other,
            avg_over,
        })
    }

    fn avg(&self, op: ReduceOp) -> Option<usize> {
        (op == ReduceOp::Avg).then_some(self.size())
    }

    /// Starts an in-place all-reduce of `buf` (`MPI_Iallreduce`).
    pub fn iall_reduce<T: Elem>(
        &self,
        mut buf: Vec<T>,
        op: ReduceOp,
    ) -> Result<Pending<T>, DistError> {
        let count = self.check_all_reduce(buf.len())?;
        let mut other = Vec::new();
        let call = (count > 0).then(|| {
            let send = match self.in_place {
                Some(p) => p as *const T,
                None => {
                    other = buf.clone();
                    other.as_ptr()
                }
            };
            Call::new(self, Kind::AllReduce, send, buf.as_mut_ptr(), count)
        });
        self.start(call, "MPI_Iallreduce", buf, other, self.avg(op))
    }

    /// Starts a reduce-scatter: `send` has `recv.len() * size` elements; this rank's
    /// reduced block lands in `recv` (`MPI_Ireduce_scatter_block`).
    pub fn ireduce_scatter<T: Elem>(
        &self,
        send: Vec<T>,
        mut recv: Vec<T>,
        op: ReduceOp,
    ) -> Result<Pending<T>, DistError> {
        let count = self.check_reduce_scatter(send.len(), recv.len())?;
        let call = (count > 0).then(|| {
            Call::new(
                self,
                Kind::ReduceScatter,
                send.as_ptr(),
                recv.as_mut_ptr(),
                count,
            )
        });
        self.start(call, "MPI_Ireduce_scatter_block", recv, send, self.avg(op))
    }

    /// Starts an all-gather: `recv` has `send.len() * size` elements (`MPI_Iallgather`).
    pub fn iall_gather<T: Elem>(
        &self,
        send: Vec<T>,
        mut recv: Vec<T>,
    ) -> Result<Pending<T>, DistError> {
        let count = self.check_all_gather(send.len(), recv.len())?;
        let call = (count > 0).then(|| {
            Call::new(
                self,
                Kind::AllGather,
                send.as_ptr(),
                recv.as_mut_ptr(),
                count,
            )
        });
        self.start(call, "MPI_Iallgather", recv, send, None)
    }

    /// Starts a broadcast of `buf` from `root` (`MPI_Ibcast`).
    pub fn ibroadcast<T: Elem>(
        &self,
        mut buf: Vec<T>,
        root: usize,
    ) -> Result<Pending<T>, DistError> {
        let count = self.check_broadcast(buf.len(), root)?;
        let call = (count > 0).then(|| {
            let mut c = Call::new(self, Kind::Broadcast, buf.as_ptr(), buf.as_mut_ptr(), count);
            c.root = root as c_int;
            c
        });
        self.start(call, "MPI_Ibcast", buf, Vec::new(), None)
    }

    /// Starts a barrier (`MPI_Ibarrier`).
    pub fn ibarrier(&self) -> Result<Request, DistError> {
        let mut raw: ffi::MPI_Request = unsafe { ffi::RSMPI_REQUEST_NULL };
        // SAFETY: a valid communicator and out-pointer.
        let rc = unsafe { ffi::MPI_Ibarrier(mpi::raw::AsRaw::as_raw(&self.comm), &mut raw) };
        check(rc, "MPI_Ibarrier", self.world_rank)?;
        Ok(Request::new(raw, false))
    }
}
