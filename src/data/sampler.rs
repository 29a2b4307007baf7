//! The distributed sampler: which samples make up global micro-batch g, and which of
//! them are this rank's. Independent of world size: global batch g holds
//! `micro_batch * world` samples; rank r takes samples `[r*mb, (r+1)*mb)` of it.
//!
//! A *unit* is what one sample is cut from: a window start (tokens) or a row (classify).
//! Shard s offers `counts[s]` units; unit k of shard s starts at element `k * stride`.
//! - `random`: sample i of global batch g is unit `u ~ U[0, total)` drawn from a generator
//!   seeded by (seed, split, g·micro_batch·world + i), the global sample number. Units are all window starts (stride 1).
//! - `epoch`: units are non-overlapping windows (stride ctx for tokens: consecutive windows
//!   share one boundary token, so every (input, target) pair is used exactly once), shuffled
//!   per epoch by a generator seeded by (seed, split, epoch) and cut into global batches;
//!   the tail that does not fill a global batch is dropped.
use super::manifest::Split;
use super::rng::{rng_for, SAMPLE, SHUFFLE};
use super::source::LoaderSpec;
use crate::config::Sampling;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The loader's position, saved in checkpoints. The generators are counter-based, so
/// the counters are the whole state: restoring it continues the exact same sequence.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct LoaderState {
    pub sampling: Sampling,
    /// Global micro-batches delivered so far (the next one is number `batches`).
    pub batches: u64,
    /// Epoch of the next batch (`epoch` mode; 0 otherwise).
    pub epoch: u64,
    /// Units of the shuffled epoch already consumed (`epoch` mode; 0 otherwise).
    pub cursor: u64,
}

impl LoaderState {
    pub fn start(sampling: Sampling) -> Self {
        LoaderState {
            sampling,
            batches: 0,
            epoch: 0,
            cursor: 0,
        }
    }
}

/// One sample: shard index (into the manifest's `shards`) and element offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SampleRef {
    pub shard: usize,
    pub offset: u64,
}

/// Walks the global batch sequence for one rank.
pub struct Sampler {
    seed: u64,
    split: Split,
    rank: usize,
    micro_batch: usize,
    global_batch: usize,
    stride: u64,
    /// Manifest shard index of each unit range.
    shard_ids: Vec<usize>,
    /// prefix[j] = units in the first j shards; len shard_ids.len() + 1.
    prefix: Vec<u64>,
    /// Current epoch's permutation of units (`epoch` mode), and which epoch it is.
    perm: Vec<u32>,
    perm_epoch: Option<u64>,
    state: LoaderState,
}

impl Sampler {
    /// `units`: (manifest shard index, units in it) for each shard of the split.
    /// Callers check `total >= micro_batch * world` for epoch mode and `total > 0`.
    pub fn new(
        units: &[(usize, u64)],
        stride: u64,
        spec: &LoaderSpec,
        state: LoaderState,
    ) -> Sampler {
        let mut prefix = vec![0u64];
        for &(_, n) in units {
            prefix.push(prefix[prefix.len() - 1] + n);
        }
        Sampler {
            seed: spec.seed,
            split: spec.split,
            rank: spec.rank,
            micro_batch: spec.micro_batch,
            global_batch: spec.micro_batch * spec.world,
            stride,
            shard_ids: units.iter().map(|u| u.0).collect(),
            prefix,
            perm: Vec::new(),
            perm_epoch: None,
            state,
        }
    }

    /// Units in the split.
    pub fn total(&self) -> u64 {
        self.prefix[self.prefix.len() - 1]
    }

    /// Position after the batches returned so far.
    pub fn state(&self) -> LoaderState {
        self.state
    }

    /// Global micro-batches in one epoch (`epoch` mode).
    pub fn batches_per_epoch(&self) -> u64 {
        self.total() / self.global_batch as u64
    }

    fn unit_ref(&self, u: u64) -> SampleRef {
        // last j with prefix[j] <= u
        let j = self.prefix.partition_point(|&p| p <= u) - 1;
        SampleRef {
            shard: self.shard_ids[j],
            offset: (u - self.prefix[j]) * self.stride,
        }
    }

    fn split_tag(&self) -> u64 {
        match self.split {
            Split::Train => 1,
            Split::Val => 2,
        }
    }

    /// This rank's samples of the next global micro-batch; advances the state.
    pub fn next_refs(&mut self) -> Vec<SampleRef> {
        let first = self.rank * self.micro_batch;
        let idx = first..first + self.micro_batch;
        let out = match self.state.sampling {
            Sampling::Random => {
                // Seeded by the global sample number, so the samples of a step are the
                // same for any world size and any number of accumulated micro-batches.
                let sample0 = self.state.batches * self.global_batch as u64;
                let total = self.total();
                idx.map(|i| {
                    let mut r = rng_for(&[self.seed, SAMPLE, self.split_tag(), sample0 + i as u64]);
                    self.unit_ref(r.gen_range(0..total))
                })
                .collect()
            }
            Sampling::Epoch => {
                let gb = self.global_batch as u64;
                if self.state.cursor + gb > self.total() {
                    self.state.epoch += 1;
                    self.state.cursor = 0;
                }
                self.ensure_perm();
                let c = self.state.cursor as usize;
                self.state.cursor += gb;
                idx.map(|i| self.unit_ref(self.perm[c + i] as u64))
                    .collect()
            }
        };
        self.state.batches += 1;
        out
    }

    fn ensure_perm(&mut self) {
        if self.perm_epoch == Some(self.state.epoch) {
            return;
        }
        let total = self.total() as u32;
        self.perm.clear();
        self.perm.extend(0..total);
        let tag = self.split_tag();
        let mut r = rng_for(&[self.seed, SHUFFLE, tag, self.state.epoch]);
        self.perm.shuffle(&mut r);
        self.perm_epoch = Some(self.state.epoch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn epoch_refs(world: usize, mb: usize, batches: u64) -> Vec<SampleRef> {
        let units = [(0, 10), (2, 7), (3, 13)];
        let mut all = Vec::new();
        let mut s: Vec<Sampler> = (0..world)
            .map(|r| {
                let spec = LoaderSpec {
                    rank: r,
                    world,
                    micro_batch: mb,
                    ctx: 5,
                    seed: 9,
                    sampling: Sampling::Epoch,
                    split: Split::Train,
                    prefetch: 1,
                };
                Sampler::new(&units, 5, &spec, LoaderState::start(Sampling::Epoch))
            })
            .collect();
        for _ in 0..batches {
            for sr in s.iter_mut() {
                all.extend(sr.next_refs());
            }
        }
        all
    }

    #[test]
    fn epoch_is_world_size_independent_and_disjoint() {
        // 30 units, global batch 6: 5 batches per epoch cover every unit once.
        let one = epoch_refs(1, 6, 5);
        assert_eq!(one, epoch_refs(2, 3, 5));
        assert_eq!(one, epoch_refs(3, 2, 5));
        let set: HashSet<_> = one.iter().collect();
        assert_eq!(set.len(), 30);
        assert!(one.iter().all(|r| r.offset % 5 == 0));
    }

    #[test]
    fn epoch_rolls_over_and_reshuffles() {
        // 30 units, global batch 8: 3 batches per epoch, 6 units dropped.
        let r = epoch_refs(2, 4, 6);
        let (e0, e1) = r.split_at(24);
        assert_eq!(e0.iter().collect::<HashSet<_>>().len(), 24);
        assert_eq!(e1.iter().collect::<HashSet<_>>().len(), 24);
        assert_ne!(e0, e1);
    }
}
