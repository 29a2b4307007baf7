//! The `dist` part: MPI initialisation, process groups (world, node-local, across nodes,
//! any split), CUDA-aware detection, collectives on a group (blocking and non-blocking,
//! host or device buffers), abort-on-error and the panic hook. Knows nothing of models or
//! ZeRO.
//!
//! Only the main thread calls MPI (`MPI_THREAD_FUNNELED`); [`Dist`] and [`Pending`] are
//! neither `Send` nor `Sync`, so the compiler keeps them on that thread.
use mpi::environment::Universe;

mod abort;
mod call;
mod collectives;
mod cuda_aware;
mod elem;
mod group;
mod init;
mod launch_check;
mod logging;
mod mesh;
mod nonblocking;
mod peer_status;
mod raw;
pub mod watchdog;

pub use abort::{abort_on_error, env_rank, eprint_line, install_panic_hook, with_rank_before_init};
pub use collectives::{DistError, ReduceOp, ScalarOp};
pub use cuda_aware::{query_mpix_cuda_support, CudaAware, CudaAwareSetting, CUDA_AWARE_ENV};
pub use elem::{DType, Elem};
pub use group::Group;
pub use init::in_place_sentinel;
pub use logging::init_logging;
pub use mesh::Mesh;
pub use nonblocking::{Pending, Request};
pub use raw::RawCollective;

/// One per process: the MPI session, this rank's place in the job, and its process
/// groups, on which the collectives run. Dropping it finalizes MPI.
pub struct Dist {
    cuda: CudaAware,
    /// The half-precision sum ops every group uses; freed when the `Dist` drops.
    ops: elem::SumOps,
    node: Group,
    across_nodes: Group,
    world: Group,
    // Declared last so it is dropped last: MPI_Finalize runs after the communicators go.
    _universe: Universe,
}

impl Dist {
    /// This rank in `MPI_COMM_WORLD`.
    pub fn rank(&self) -> usize {
        self.world.rank()
    }
    /// Number of ranks in the job.
    pub fn size(&self) -> usize {
        self.world.size()
    }
    /// Rank within this node (the `MPI_Comm_split_type(SHARED)` group).
    pub fn local_rank(&self) -> usize {
        self.node.rank()
    }
    /// Number of ranks on this node.
    pub fn local_size(&self) -> usize {
        self.node.size()
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
        self.world.is_root()
    }
    /// Every rank of the job.
    pub fn world(&self) -> &Group {
        &self.world
    }
    /// The ranks on this process's node.
    pub fn node(&self) -> &Group {
        &self.node
    }
    /// The ranks with this process's local rank, one per node (local rank 0 of every node
    /// for the node leaders), in node order.
    pub fn across_nodes(&self) -> &Group {
        &self.across_nodes
    }
}

impl Drop for Dist {
    fn drop(&mut self) {
        self.ops.free();
    }
}
