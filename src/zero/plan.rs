//! What each rank holds: the per-rank bytes of parameters, gradients and optimizer
//! states for a stage, and the gradient buckets. The engine allocates exactly these sizes
//! (and counts them as it does), and `zerotrain estimate` prints them.
use super::Layout;
use crate::config::{DType, OptimizerKind};
use crate::metrics::NodeBytes;
use serde::Serialize;

/// The optimizer's fp32 state vectors per parameter (Adam: 2 moments; SGD: momentum).
pub fn optimizer_states(kind: OptimizerKind) -> usize {
    match kind {
        OptimizerKind::Sgd => 1,
        OptimizerKind::Adam | OptimizerKind::Adamw => 2,
    }
}

/// Per-rank bytes of the persistent model states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemPlan {
    pub params: usize,
    pub grads: usize,
    /// fp32 master weights (when params are half) and optimizer moments.
    pub optimizer: usize,
}

/// Where one kind of state lives across the shard group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Every rank holds all of it.
    Replicated,
    /// Each rank holds its slice of every unit (the layout's shard).
    Sharded,
}

/// The placement of each state: what a ZeRO stage means. `zero.stage` is translated
/// into placements once ([`Placements::for_stage`]); the engine matches on these, never
/// on the stage number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placements {
    pub params: Placement,
    pub grads: Placement,
    /// fp32 master weights and optimizer states.
    pub optimizer: Placement,
}

impl Placements {
    /// DDP (0), then optimizer states (1), gradients (2) and parameters (3) sharded.
    pub fn for_stage(stage: u8) -> Placements {
        let at = |from: u8| {
            if stage >= from {
                Placement::Sharded
            } else {
                Placement::Replicated
            }
        };
        Placements {
            params: at(3),
            grads: at(2),
            optimizer: at(1),
        }
    }
}

/// How gradients are reduced, which follows from the placements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradReduction {
    /// Replicated optimizer: all-reduce the full gradients at the accumulation boundary.
    AllReduce,
    /// Replicated gradients, sharded optimizer: accumulate full gradients, reduce-scatter
    /// them at the boundary into the replicated home's own slice.
    ReduceScatterAtBoundary,
    /// Sharded gradients: reduce-scatter every micro-batch into the gradient shard.
    ReduceScatterEachMicro,
}

/// How a run holds its states, decided from the stage and dtypes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagePlan {
    /// The configured stage (recorded in checkpoints and summaries).
    pub stage: u8,
    pub placements: Placements,
    pub dtype: DType,
    pub states: usize,
    pub grad_accum: usize,
}

impl StagePlan {
    pub fn new(stage: u8, dtype: DType, states: usize, grad_accum: usize) -> StagePlan {
        StagePlan {
            stage,
            placements: Placements::for_stage(stage),
            dtype,
            states,
            grad_accum,
        }
    }
    /// Parameters are sharded (stage 3) rather than replicated.
    pub fn shards_params(&self) -> bool {
        self.placements.params == Placement::Sharded
    }
    /// Gradients are sharded (stages 2 and 3).
    pub fn shards_grads(&self) -> bool {
        self.placements.grads == Placement::Sharded
    }
    /// The optimizer updates a shard (stages 1 to 3) rather than the whole model.
    pub fn shards_optimizer(&self) -> bool {
        self.placements.optimizer == Placement::Sharded
    }
    /// How gradients are reduced.
    pub fn reduction(&self) -> GradReduction {
        match (self.shards_grads(), self.shards_optimizer()) {
            (true, _) => GradReduction::ReduceScatterEachMicro,
            (false, true) => GradReduction::ReduceScatterAtBoundary,
            (false, false) => GradReduction::AllReduce,
        }
    }
    /// A separate fp32 master copy exists only when parameters are half precision;
    /// with fp32 parameters the (owned part of the) parameters are the master weights.
    pub fn has_master(&self) -> bool {
        self.dtype != DType::Fp32
    }
    /// Half gradients accumulated over several micro-batches are held in fp32, so the
    /// accumulation does not round at every micro-batch; otherwise grads are in `dtype`.
    pub fn grad_dtype(&self) -> DType {
        if self.grad_accum > 1 {
            DType::Fp32
        } else {
            self.dtype
        }
    }

    /// Bytes per rank, from the layout's padded sizes.
    pub fn memory(&self, layout: &Layout) -> MemPlan {
        let full = layout.padded();
        let shard = layout.shard();
        let p = self.dtype.bytes();
        let param_elems = if self.shards_params() { shard } else { full };
        let grad_elems = if self.shards_grads() { shard } else { full };
        let opt_elems = if self.shards_optimizer() { shard } else { full };
        let master = if self.has_master() { opt_elems * 4 } else { 0 };
        MemPlan {
            params: param_elems * p,
            grads: grad_elems * self.grad_dtype().bytes(),
            optimizer: master + self.states * opt_elems * 4,
        }
    }

    /// Logical communication volume per step in elements (padded), as the ZeRO paper
    /// counts it: an all-reduce is a reduce-scatter plus an all-gather. Stage 3 gathers
    /// every unit before forward and again before backward, except the tied root unit,
    /// which stays gathered for the whole step (gathered once).
    pub fn comm_volume(
        &self,
        layout: &Layout,
        reshard_after_forward: bool,
        root: Option<usize>,
    ) -> usize {
        let full = layout.padded();
        let micro = self.grad_accum;
        let reduce = match self.reduction() {
            // An all-reduce counts as a reduce-scatter plus an all-gather.
            GradReduction::AllReduce => 2 * full,
            GradReduction::ReduceScatterAtBoundary => full,
            GradReduction::ReduceScatterEachMicro => micro * full,
        };
        if !self.shards_params() {
            // Replicated parameters: a sharded optimizer all-gathers the update once.
            let publish = if self.shards_optimizer() { full } else { 0 };
            return reduce + publish;
        }
        let root_padded = root.map(|r| layout.units[r].padded).unwrap_or(0);
        let gathers = if reshard_after_forward {
            2 * full - root_padded
        } else {
            full
        };
        micro * gathers + reduce
    }
}

/// Where the ranks of a job run, for predicting traffic: `world` ranks, `per_node` to a
/// node, placed in rank order (ranks 0..per_node on the first node, as mpirun's and
/// srun's default block placement does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    pub world: usize,
    pub per_node: usize,
}

impl Topology {
    /// How many ranks of the groups (which partition the world; each listed in group-rank
    /// order) have their ring successor on another node.
    fn remote_successors(&self, groups: &[Vec<usize>]) -> u64 {
        let node = |r: usize| r / self.per_node;
        groups
            .iter()
            .flat_map(|g| (0..g.len()).map(move |i| (g[i], g[(i + 1) % g.len()])))
            .filter(|&(r, next)| node(r) != node(next))
            .count() as u64
    }

    /// The world's groups: shard groups of `shard` consecutive ranks, or (`replicas`) the
    /// groups of ranks at the same position in each.
    fn groups(&self, shard: usize, replicas: bool) -> Vec<Vec<usize>> {
        match replicas {
            false => (0..self.world / shard)
                .map(|g| (g * shard..(g + 1) * shard).collect())
                .collect(),
            true => (0..shard)
                .map(|p| (p..self.world).step_by(shard).collect())
                .collect(),
        }
    }
}

impl StagePlan {
    /// Bytes all ranks together send in one step, within nodes and between them, had every
    /// collective run as a ring (`comm::ring_bytes`): what the engine counts as it runs
    /// (the record's `comm_bytes`). `layout` is the shard group's (its world is the shard
    /// group's size); the data-parallel world and the node size come from `topo`.
    #[allow(clippy::too_many_arguments)]
    pub fn ring_traffic(
        &self,
        layout: &Layout,
        topo: Topology,
        reduce: DType,
        bucket_bytes: usize,
        reshard_after_forward: bool,
        root: Option<usize>,
    ) -> NodeBytes {
        use crate::dist::RawCollective::{AllGather, AllReduceInPlace, ReduceScatter};
        let (k, n) = (layout.world, topo.world);
        let copies = n / k;
        let (rb, pb) = (reduce.bytes(), self.dtype.bytes());
        let shard = layout.shard();
        let buckets = buckets(layout, bucket_bytes, rb);
        let bucket_len =
            |b: &Vec<usize>| b.iter().map(|&u| layout.units[u].padded).sum::<usize>();
        // (bytes each rank sends, the groups it sends them over)
        let world = topo.groups(n, false);
        let shards = topo.groups(k, false);
        let replicas = topo.groups(k, true);
        let mut classes: Vec<(u64, &[Vec<usize>])> = Vec::new();
        let micro = self.grad_accum as u64;
        match self.reduction() {
            GradReduction::AllReduce => {
                let b = buckets
                    .iter()
                    .map(|b| super::comm::ring_bytes(AllReduceInPlace, bucket_len(b), n, rb))
                    .sum();
                classes.push((b, &world));
            }
            reduction => {
                let times = match reduction {
                    GradReduction::ReduceScatterEachMicro => micro,
                    _ => 1,
                };
                let rs = super::comm::ring_bytes(ReduceScatter, shard, k, rb);
                classes.push((times * rs, &shards));
                if copies > 1 {
                    let b = buckets
                        .iter()
                        .map(|b| {
                            super::comm::ring_bytes(AllReduceInPlace, bucket_len(b) / k, copies, rb)
                        })
                        .sum();
                    classes.push((b, &replicas));
                }
            }
        }
        if self.shards_params() {
            let root_shard = root.map_or(0, |r| layout.units[r].shard);
            let gathered = match reshard_after_forward {
                true => 2 * shard - root_shard,
                false => shard,
            };
            let g = super::comm::ring_bytes(AllGather, gathered, k, pb);
            classes.push((micro * g, &shards));
        } else if self.shards_optimizer() {
            classes.push((super::comm::ring_bytes(AllGather, shard, k, pb), &shards));
        }
        let mut out = NodeBytes::default();
        for (bytes, groups) in classes {
            let remote = topo.remote_successors(groups);
            out.inter_node += bytes * remote;
            out.intra_node += bytes * (n as u64 - remote);
        }
        out
    }
}

/// Groups units into gradient buckets in backward order (last unit first), fusing small
/// neighbours until a bucket reaches `bucket_bytes`.
pub fn buckets(layout: &Layout, bucket_bytes: usize, elem_bytes: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for u in (0..layout.units.len()).rev() {
        current.push(u);
        bytes += layout.units[u].padded * elem_bytes;
        if bytes >= bucket_bytes {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UnitSpec;

    fn layout(world: usize) -> Layout {
        let units: Vec<UnitSpec> = [640usize, 6400, 6400, 128]
            .iter()
            .enumerate()
            .map(|(i, &n)| UnitSpec {
                name: format!("u{i}"),
                tensors: vec![],
                numel: n,
            })
            .collect();
        Layout::new(&units, world)
    }

    #[test]
    fn zero_paper_formulas_fp32_and_half() {
        let l = layout(4);
        let (psi, n) = (l.padded(), 4);
        let mem = |stage, dtype| {
            let m = StagePlan::new(stage, dtype, 2, 1).memory(&l);
            m.params + m.grads + m.optimizer
        };
        assert_eq!(mem(0, DType::Fp32), 16 * psi);
        assert_eq!(mem(1, DType::Fp32), 8 * psi + 8 * psi / n);
        assert_eq!(mem(2, DType::Fp32), 4 * psi + 12 * psi / n);
        assert_eq!(mem(3, DType::Fp32), 16 * psi / n);
        assert_eq!(mem(0, DType::Bf16), 16 * psi);
        assert_eq!(mem(1, DType::Bf16), 4 * psi + 12 * psi / n);
        assert_eq!(mem(2, DType::Fp16), 2 * psi + 14 * psi / n);
        assert_eq!(mem(3, DType::Bf16), 16 * psi / n);
    }

    #[test]
    fn buckets_cover_units_in_backward_order() {
        let l = layout(2);
        let b = buckets(&l, 6400 * 4, 4);
        let flat: Vec<usize> = b.iter().flatten().copied().collect();
        assert_eq!(flat, vec![3, 2, 1, 0]);
        assert_eq!(b[0], vec![3, 2]);
    }
}
