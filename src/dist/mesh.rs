//! Hybrid sharding's two groups (docs/architecture.md, "Hybrid sharding"): the world
//! split into equal shard groups, and the replica groups that join the ranks holding the
//! same shard position in each (PyTorch's 2-D device mesh for HSDP: replicate × shard).
use super::{Dist, Group};
use anyhow::Context;

/// A world of `replicas.size() × shard.size()` ranks: this rank's shard group and its
/// replica group (one rank of every shard group, the one at this rank's shard position).
pub struct Mesh {
    pub shard: Group,
    pub replicas: Group,
}

impl Dist {
    /// Shard groups of the ranks of each node (collective). Every node must hold the same
    /// number of ranks, so that every shard group has the same layout; otherwise an error
    /// on every rank names the nodes' sizes.
    pub fn mesh_by_node(&self) -> anyhow::Result<Mesh> {
        let sizes = self
            .world()
            .all_gather_u64s(&[self.local_size() as u64, self.node().node_id])
            .with_context(|| format!("rank {}: the nodes' sizes", self.rank()))?;
        let mut nodes: Vec<(u64, u64)> = sizes.chunks(2).map(|c| (c[1], c[0])).collect();
        nodes.sort_unstable();
        nodes.dedup();
        if nodes.iter().any(|&(_, n)| n != nodes[0].1) {
            let list: Vec<String> = nodes
                .iter()
                .map(|(first, n)| format!("{n} on the node of rank {first}"))
                .collect();
            anyhow::bail!(
                "rank {}: zero.shard_group = \"node\" needs the same number of ranks on every node, this job has {}; use \"world\" or a number of ranks that divides every node's",
                self.rank(),
                list.join(", ")
            );
        }
        self.mesh(self.node().node_id as usize, self.local_rank(), "node")
    }

    /// Shard groups of `k` consecutive world ranks (collective; `k` divides the world).
    pub fn mesh_by_blocks(&self, k: usize) -> anyhow::Result<Mesh> {
        anyhow::ensure!(
            k >= 1 && self.size().is_multiple_of(k),
            "rank {}: shard groups of {k} ranks do not divide the world of {}",
            self.rank(),
            self.size()
        );
        self.mesh(self.rank() / k, self.rank() % k, "shard")
    }

    /// The groups of this rank's `shard` (a color) and of its `position` in it.
    fn mesh(&self, shard: usize, position: usize, name: &str) -> anyhow::Result<Mesh> {
        let rank = self.rank();
        let shard = self
            .world()
            .split(shard, name)
            .with_context(|| format!("rank {rank}: the shard group"))?;
        let replicas = self
            .world()
            .split(position, "replicas")
            .with_context(|| format!("rank {rank}: the replica group"))?;
        Ok(Mesh { shard, replicas })
    }
}
