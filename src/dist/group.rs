//! Process groups: the set of ranks a collective runs over. Every collective is a method
//! of a [`Group`]: the world, the ranks of one node, the ranks that share a local rank
//! across nodes (one per node), or any split of these (docs/architecture.md, "dist").
//!
//! A group carries what its collectives need besides the communicator (the half-precision
//! sum ops, the library's `MPI_IN_PLACE`, this process's world rank for messages), so
//! callers such as the ZeRO engine hold a `&Group` and nothing else of MPI.
use std::os::raw::{c_int, c_void};

use mpi::ffi;
use mpi::topology::{Color, SimpleCommunicator};
use mpi::traits::Communicator;

use super::call::check;
use super::collectives::DistError;
use super::elem::SumOps;

/// A communicator with this process's place in it. Groups made by [`Dist::init`]
/// (`world`, `node`, `across_nodes`) live as long as the `Dist`; one made by
/// [`Group::split`] must be dropped before the `Dist` (it frees its communicator).
///
/// [`Dist::init`]: super::Dist::init
pub struct Group {
    pub(super) comm: SimpleCommunicator,
    name: String,
    rank: usize,
    size: usize,
    /// This process's rank in the world, for messages.
    pub(super) world_rank: usize,
    /// Names this process's node: the world rank of the node's first rank.
    pub(super) node_id: u64,
    /// This rank's successor on the group's ring (rank + 1 mod size) runs on another
    /// node: the communication accounting counts ring collectives (`zero/comm.rs`).
    successor_remote: bool,
    /// `MPI_IN_PLACE` of the linked library (a macro, so not exported by mpi-sys); `None`
    /// for an unknown library, where the host collectives (`collectives.rs`) copy through a
    /// scratch buffer and the raw ones (`raw.rs`) refuse the in-place forms.
    pub(super) in_place: Option<*mut c_void>,
    /// Handles of the half-precision sum ops; the `Dist` that created them frees them.
    pub(super) ops: SumOps,
    /// Device buffers go to MPI directly (CUDA-aware MPI) rather than staged.
    pub(super) cuda_aware: bool,
    /// ... and that was detected (`MPIX_Query_cuda_support`), not asked for by the user.
    pub(super) cuda_aware_detected: bool,
}

impl Group {
    /// The world group; others come from [`Group::split`] and [`Group::split_shared`].
    pub(super) fn world(
        comm: SimpleCommunicator,
        in_place: Option<*mut c_void>,
        ops: SumOps,
        cuda_aware: bool,
        cuda_aware_detected: bool,
    ) -> Group {
        Group {
            rank: comm.rank() as usize,
            size: comm.size() as usize,
            world_rank: comm.rank() as usize,
            node_id: 0,
            successor_remote: false,
            comm,
            name: "world".into(),
            in_place,
            ops,
            cuda_aware,
            cuda_aware_detected,
        }
    }

    /// A group over `comm`, a communicator derived from this one.
    fn derived(&self, comm: SimpleCommunicator, name: &str) -> Group {
        Group {
            rank: comm.rank() as usize,
            size: comm.size() as usize,
            comm,
            name: name.into(),
            ..*self
        }
    }

    /// This process's rank in the group.
    pub fn rank(&self) -> usize {
        self.rank
    }
    /// Number of ranks in the group.
    pub fn size(&self) -> usize {
        self.size
    }
    /// What the group is (`world`, `node`, `across-nodes`, or a split's name), for logs.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// True on the group's rank 0.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }
    /// Whether this rank's successor on the group's ring is on another node, so what a
    /// ring collective sends from here crosses the network between nodes.
    pub fn successor_on_other_node(&self) -> bool {
        self.successor_remote
    }

    /// Learns which of the group's ranks share this process's node (collective): every
    /// rank's node id, gathered once when the group is made.
    pub(super) fn learn_nodes(&mut self) -> Result<(), DistError> {
        let ids = self.all_gather_u64s(&[self.node_id])?;
        self.successor_remote = ids[(self.rank + 1) % self.size] != ids[self.rank];
        Ok(())
    }

    /// Splits the group (collective over it): ranks passing the same `color` form one new
    /// group, ordered as here. Every rank gets the group of its own color.
    pub fn split(&self, color: usize, name: &str) -> Result<Group, DistError> {
        let value = c_int::try_from(color).map_err(|_| DistError::Length {
            op: "split",
            rank: self.world_rank,
            detail: format!("color {color} exceeds MPI's int range"),
        })?;
        let comm = self
            .comm
            .split_by_color(Color::with_value(value))
            .ok_or(DistError::Mpi {
                what: "MPI_Comm_split",
                code: -1,
                rank: self.world_rank,
            })?;
        let mut group = self.derived(comm, name);
        group.learn_nodes()?;
        Ok(group)
    }

    /// The ranks of this group that share a node (memory) with this process, named `node`
    /// (`MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)`; collective over the group). Its
    /// ring never leaves the node.
    pub fn split_shared(&self) -> Group {
        let comm = self.comm.split_shared(self.rank as c_int);
        let mut node = self.derived(comm, "node");
        node.successor_remote = false;
        node
    }

    /// Gathers every rank's `mine` (the same length everywhere) in rank order: small
    /// integer tables such as file sizes and checksums, memory counters, node-local ranks.
    pub fn all_gather_u64s(&self, mine: &[u64]) -> Result<Vec<u64>, DistError> {
        let n = c_int::try_from(mine.len()).map_err(|_| DistError::TooLong {
            op: "all_gather_u64s",
            rank: self.world_rank,
            len: mine.len(),
        })?;
        let mut all = vec![0u64; mine.len() * self.size];
        if n > 0 {
            // SAFETY: `mine` holds n u64, `all` n per rank; the datatype handle is immutable.
            let rc = unsafe {
                ffi::MPI_Allgather(
                    mine.as_ptr() as *const c_void,
                    n,
                    ffi::RSMPI_UINT64_T,
                    all.as_mut_ptr() as *mut c_void,
                    n,
                    ffi::RSMPI_UINT64_T,
                    mpi::raw::AsRaw::as_raw(&self.comm),
                )
            };
            check(rc, "MPI_Allgather", self.world_rank)?;
        }
        Ok(all)
    }
}
