//! What every part of the engine shares: the backend, the layout and the plan (the
//! placements), this rank, the two groups with the transport their collectives use, the
//! staged transport's host buffers and the step's communication counters. The parts
//! (`params.rs`, `grads.rs`, `optimizer.rs`) own their state and take a `&mut Core` for
//! the rest.
use super::comm::{CommStats, Link, StagingPool};
use super::{Layout, StagePlan};
use crate::config::DType;
use crate::device::Backend;
use std::ops::Range;
use std::sync::Arc;

pub(super) struct Core<'d, B: Backend> {
    pub backend: Arc<B>,
    pub layout: Layout,
    pub plan: StagePlan,
    /// This rank in the shard group.
    pub rank: usize,
    /// The dtype gradients are reduced in.
    pub reduce: DType,
    /// The data-parallel group (loss and gradient averages, the all-reduce).
    pub dp: Link<'d>,
    /// The group states are sharded over (the layout's world): `dp`, or for hybrid
    /// sharding a part of it.
    pub shard: Link<'d>,
    /// Hybrid sharding: the ranks holding this rank's shard in the other shard groups.
    pub replicas: Option<Link<'d>>,
    pub staging: StagingPool,
    pub stats: CommStats,
}

impl<B: Backend> Core<'_, B> {
    pub fn be(&self) -> &B {
        self.backend.as_ref()
    }

    /// Whether this rank holds the first copy of its shard (always, without replicas):
    /// the copy the gradient norm and checkpoints count.
    pub fn is_first_replica(&self) -> bool {
        self.replicas.is_none_or(|r| r.group.rank() == 0)
    }

    /// The unit-local range of unit `u` the optimizer owns on this rank.
    pub fn domain(&self, u: usize) -> Range<usize> {
        let l = &self.layout.units[u];
        if self.plan.shards_optimizer() {
            l.shard_range(self.rank)
        } else {
            0..l.padded
        }
    }

    /// The part of unit `u`'s optimizer domain holding real elements this rank owns,
    /// relative to the domain's start (what this rank adds to the global grad norm and
    /// saves in checkpoints). Empty where this rank's slice is all padding; the owned range
    /// lies inside the rank's slice, which lies inside the domain, so this cannot underflow.
    pub fn owned_in_domain(&self, u: usize) -> Range<usize> {
        let d = self.domain(u);
        let v = self.layout.units[u].valid_range(self.rank);
        (v.start - d.start)..(v.end - d.start)
    }

    /// Range of unit `u`'s gradient home that covers its optimizer domain.
    pub fn grad_home_range(&self, u: usize) -> Range<usize> {
        if self.plan.shards_grads() {
            0..self.layout.units[u].shard
        } else {
            self.domain(u)
        }
    }
}

/// Where one unit's parameters or gradients live (always backend memory).
pub(super) enum Home<B: Backend> {
    /// fp32: the full unit, which kernels use directly, or a stage-3 parameter shard.
    F32(B::Buf),
    /// Typed memory in the run's dtype (full or this rank's shard).
    Typed(B::Mem),
}

impl<B: Backend> Home<B> {
    /// Bytes held.
    pub fn bytes(&self, be: &B) -> u64 {
        match self {
            Home::F32(b) => be.len(b) as u64 * 4,
            Home::Typed(m) => (be.mem_len(m) * be.mem_dtype(m).bytes()) as u64,
        }
    }
}
