//! The `dist` part: MPI initialisation, world and node-local ranks, GPU binding index,
//! CUDA-aware detection, collectives (blocking and non-blocking, host or device buffers)
//! and abort-on-error. Knows nothing of models or ZeRO.
//!
//! Only the main thread calls MPI (`MPI_THREAD_FUNNELED`); [`Dist`] and [`Pending`] are
//! neither `Send` nor `Sync`, so the compiler keeps them on that thread.
use std::os::raw::c_void;

use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;

mod abort;
pub mod bench;
mod call;
mod collectives;
mod cuda_aware;
mod elem;
mod init;
mod logging;
mod nonblocking;
pub mod selftest;
mod staging;

pub use abort::{abort_on_error, env_rank, eprint_line, install_panic_hook, with_rank_before_init};
pub use collectives::{DistError, ReduceOp, ScalarOp};
pub use cuda_aware::{query_mpix_cuda_support, CudaAware, CudaAwareSetting, CUDA_AWARE_ENV};
pub use elem::{DType, Elem};
pub use init::{in_place_sentinel, visible_gpu_count};
pub use logging::init_logging;
pub use nonblocking::{Pending, Request};
pub use staging::DeviceBuf;

/// One per process: the MPI session, this rank's place in the job, and the collectives.
/// Dropping it finalizes MPI.
pub struct Dist {
    rank: usize,
    size: usize,
    local_rank: usize,
    local_size: usize,
    visible_gpus: usize,
    gpu_index: Option<usize>,
    cuda: CudaAware,
    /// `MPI_IN_PLACE` of the linked library (a macro, so not exported by mpi-sys); `None`
    /// for an unknown library, where in-place collectives copy through a scratch buffer.
    in_place: Option<*mut c_void>,
    ops: elem::SumOps,
    local: SimpleCommunicator,
    world: SimpleCommunicator,
    // Declared last so it is dropped last: MPI_Finalize runs after the communicators go.
    _universe: Universe,
}

impl Dist {
    /// This rank in `MPI_COMM_WORLD`.
    pub fn rank(&self) -> usize {
        self.rank
    }
    /// Number of ranks in the job.
    pub fn size(&self) -> usize {
        self.size
    }
    /// Rank within this node (the `MPI_Comm_split_type(SHARED)` communicator).
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }
    /// Number of ranks on this node.
    pub fn local_size(&self) -> usize {
        self.local_size
    }
    /// GPU this rank would bind: `local_rank % visible devices`; `None` when
    /// `CUDA_VISIBLE_DEVICES` hides every device.
    pub fn gpu_index(&self) -> Option<usize> {
        self.gpu_index
    }
    /// Number of devices counted for binding (see [`visible_gpu_count`]).
    pub fn visible_gpus(&self) -> usize {
        self.visible_gpus
    }
    /// Whether device buffers go to MPI directly (true) or through host staging (false).
    pub fn cuda_aware(&self) -> bool {
        self.cuda.enabled
    }
    /// The CUDA-aware decision with its reason.
    pub fn cuda_aware_info(&self) -> &CudaAware {
        &self.cuda
    }
    /// True on rank 0.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }
    /// The world communicator (rsmpi), for callers that need an MPI call not wrapped here.
    pub fn world(&self) -> &SimpleCommunicator {
        &self.world
    }
    /// The node-local communicator.
    pub fn local(&self) -> &SimpleCommunicator {
        &self.local
    }
}

impl Drop for Dist {
    fn drop(&mut self) {
        self.ops.free();
    }
}
