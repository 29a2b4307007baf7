//! `Dist::init`: MPI start-up (FUNNELED), the process groups, the CUDA-aware decision,
//! logger and panic hook, and the start-up log on rank 0.
use std::os::raw::c_void;

use anyhow::Context;
use mpi::environment::Threading;
use mpi::traits::*;

use super::cuda_aware::{self, CudaAwareSetting, CUDA_AWARE_ENV};
use super::{elem, install_panic_hook, launch_check, logging, with_rank_before_init, Dist, Group};

/// The value of `MPI_IN_PLACE` for a library, from its `MPI_Get_library_version` string:
/// `(void*)1` in Open MPI, `(void*)-1` in MPICH and its derivatives; `None` if unknown.
pub fn in_place_sentinel(library_version: &str) -> Option<*mut c_void> {
    let v = library_version.to_ascii_lowercase();
    if v.contains("open mpi") {
        Some(std::ptr::without_provenance_mut(1))
    } else if ["mpich", "mvapich", "intel(r) mpi"]
        .iter()
        .any(|k| v.contains(k))
    {
        Some(std::ptr::without_provenance_mut(usize::MAX))
    } else {
        None
    }
}

impl Dist {
    /// Starts MPI at `MPI_THREAD_FUNNELED` (only the main thread calls MPI), under mpirun or
    /// as a singleton, sets up the rank-prefixed logger, the node-local communicator, the
    /// GPU index and the CUDA-aware decision (`cuda_aware`: `auto`, `on` or `off`; with
    /// `auto`, `ZEROTRAIN_CUDA_AWARE=0/1` overrides detection), and logs them on rank 0.
    pub fn init(cuda_aware: &str) -> anyhow::Result<Dist> {
        // Checks that need no MPI run first, so bad settings fail alike on every rank.
        launch_check::before_init(|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)?;
        let env = std::env::var(CUDA_AWARE_ENV).ok();
        let early = with_rank_before_init(
            CudaAwareSetting::parse(cuda_aware)
                .and_then(|s| cuda_aware::decide_without_query(s, env.as_deref())),
        )?;
        let init = mpi::initialize_with_threading(Threading::Funneled)
            .context("MPI initialisation failed (MPI already initialised in this process?)");
        let (universe, provided) = with_rank_before_init(init)?;
        let rank = universe.world().rank() as usize;
        logging::init_logging(rank);
        install_panic_hook(rank);
        // A world that disagrees with the launcher is the same on every rank of it, so
        // each fails alike before any collective.
        let size = universe.world().size() as usize;
        launch_check::check(size, |k| std::env::var(k).ok())
            .map_err(|e| anyhow::anyhow!("rank {rank}: {e}"))?;
        if provided < Threading::Funneled {
            log::warn!("MPI provides thread level {provided:?} < Funneled; continuing: only the main thread calls MPI");
        }
        let library = mpi::environment::library_version().unwrap_or_default();
        let in_place = in_place_sentinel(&library);
        let ops = elem::SumOps::create()
            .with_context(|| format!("rank {rank}: half-precision sum ops"))?;
        let cuda = cuda_aware::finish_with_query(early, cuda_aware::query_mpix_cuda_support);
        let world = Group::world(
            universe.world(),
            in_place,
            ops,
            cuda.enabled,
            cuda.enabled && cuda.detected(),
        );
        let mut world = world;
        let mut node = world.split_shared();
        // A node is named by its first world rank (split_shared keeps world order).
        let node_id = node
            .all_gather_u64s(&[rank as u64])
            .with_context(|| format!("rank {rank}: naming the node"))?[0];
        (world.node_id, node.node_id) = (node_id, node_id);
        world
            .learn_nodes()
            .with_context(|| format!("rank {rank}: the ranks' nodes"))?;
        let across_nodes = world
            .split(node.rank(), "across-nodes")
            .with_context(|| format!("rank {rank}: the across-nodes group"))?;
        let dist = Dist {
            cuda,
            ops,
            node,
            across_nodes,
            world,
            _universe: universe,
        };
        dist.log_start(&library);
        Ok(dist)
    }

    /// Rank 0 logs the job layout; every rank's node-local rank is gathered for it. (Which
    /// GPU a rank binds is decided where the device is chosen, `device::select`, from the
    /// devices that rank sees; rank 0 logs its own choice there.)
    fn log_start(&self, library: &str) {
        // MPI_ERRORS_ARE_FATAL is the world's handler: a failed gather aborts the job.
        let all = self
            .world
            .all_gather_u64s(&[self.local_rank() as u64])
            .unwrap_or_default();
        if !self.is_root() {
            return;
        }
        let first_line = library
            .lines()
            .next()
            .unwrap_or("unknown MPI library")
            .trim();
        log::info!(
            "MPI: {first_line}; world size {}, {} local ranks on rank 0's node, thread level funneled",
            self.size(),
            self.local_size()
        );
        let layout: Vec<String> = all
            .iter()
            .enumerate()
            .map(|(r, local)| format!("{r}:local {local}"))
            .collect();
        log::info!(
            "ranks (world:node-local; a rank binds GPU local rank % the GPUs it sees): {}",
            layout.join(", ")
        );
        log::info!("{}", cuda_aware::describe(&self.cuda));
        if self.world.in_place.is_none() {
            log::warn!("unknown MPI library (MPI_IN_PLACE unknown): the host collectives copy through a scratch buffer, and training, whose collectives need MPI_IN_PLACE, will refuse to start");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_place_values() {
        assert_eq!(
            in_place_sentinel("Open MPI v4.1.4, package: Debian"),
            Some(std::ptr::without_provenance_mut(1))
        );
        assert_eq!(
            in_place_sentinel("MPICH Version: 4.0"),
            Some(std::ptr::without_provenance_mut(usize::MAX))
        );
        assert_eq!(in_place_sentinel("Some other MPI"), None);
    }
}
