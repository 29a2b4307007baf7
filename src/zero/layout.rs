//! Partition layout: how each unit's flat buffer is padded and split across ranks.
//!
//! For world size N, unit u with n_u elements is padded to a multiple of N·ALIGN and rank r
//! owns `[r·s_u, (r+1)·s_u)` with `s_u = padded(n_u)/N` (docs/architecture.md, "Partition
//! layout"). The unpadded concatenation of the units in model order is the canonical,
//! world-size-independent parameter order.
//!
//! Padding can cover whole slices (n_u ≤ (N-1)·s_u: small units at many ranks, e.g. a
//! LayerNorm of 2·768 elements from N = 64 up): the last ranks' slices then hold padding
//! only, and those ranks own an empty range of real elements. Every range here stays
//! inside its rank's slice, so offsets relative to the slice never underflow.
use crate::model::UnitSpec;
use std::ops::Range;

/// Elements each rank's slice of a unit is rounded up to (16 f32 = 64 bytes).
pub const ALIGN: usize = 16;

/// One unit's place in the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitLayout {
    pub name: String,
    /// Real elements.
    pub numel: usize,
    /// Elements after padding: a multiple of world·ALIGN.
    pub padded: usize,
    /// Elements each rank owns: padded / world.
    pub shard: usize,
    /// Offset of this unit in the canonical (unpadded) parameter order.
    pub canonical_offset: usize,
}

impl UnitLayout {
    /// Rank r's slice in unit-local (padded) coordinates.
    pub fn shard_range(&self, rank: usize) -> Range<usize> {
        rank * self.shard..(rank + 1) * self.shard
    }
    /// The real elements rank r owns: the part of its slice below `numel`. Always inside
    /// `shard_range(rank)`; empty, at the slice's start, when the slice is all padding.
    pub fn valid_range(&self, rank: usize) -> Range<usize> {
        let r = self.shard_range(rank);
        let end = r.end.min(self.numel).max(r.start);
        r.start..end
    }
}

/// The layout of a whole model for one world size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub world: usize,
    pub units: Vec<UnitLayout>,
}

impl Layout {
    pub fn new(units: &[UnitSpec], world: usize) -> Layout {
        let quantum = world * ALIGN;
        let mut canonical = 0;
        let units = units
            .iter()
            .map(|u| {
                let padded = u.numel.div_ceil(quantum).max(1) * quantum;
                let l = UnitLayout {
                    name: u.name.clone(),
                    numel: u.numel,
                    padded,
                    shard: padded / world,
                    canonical_offset: canonical,
                };
                canonical += u.numel;
                l
            })
            .collect();
        Layout { world, units }
    }

    /// Ψ: real parameters.
    pub fn numel(&self) -> usize {
        self.units.iter().map(|u| u.numel).sum()
    }
    /// Padded parameters (what full buffers hold).
    pub fn padded(&self) -> usize {
        self.units.iter().map(|u| u.padded).sum()
    }
    /// Elements one rank's shard holds across all units.
    pub fn shard(&self) -> usize {
        self.units.iter().map(|u| u.shard).sum()
    }
    /// The largest unit's padded size: bounds every transient buffer.
    pub fn max_padded(&self) -> usize {
        self.units.iter().map(|u| u.padded).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;

    fn spec(name: &str, numel: usize) -> UnitSpec {
        UnitSpec {
            name: name.into(),
            tensors: vec![],
            numel,
        }
    }

    /// The ownership invariants of one unit at one world size: minimal padding to a
    /// multiple of world·ALIGN, each rank's range inside its own slice and inside the real
    /// elements, and the non-empty ranges in rank order chaining 0..numel without a gap or
    /// an overlap, so every real element has exactly one owner.
    fn check_ownership(l: &UnitLayout, world: usize) {
        let case = || format!("unit {} numel {} world {world}", l.name, l.numel);
        let quantum = world * ALIGN;
        assert!(
            l.padded.is_multiple_of(quantum) && l.padded >= l.numel.max(1),
            "{}",
            case()
        );
        assert!(
            l.padded - l.numel.max(1) < quantum,
            "padding not minimal: {}",
            case()
        );
        assert_eq!(l.shard * world, l.padded, "{}", case());
        let mut next = 0;
        for r in 0..world {
            let (slice, owned) = (l.shard_range(r), l.valid_range(r));
            assert!(
                slice.start <= owned.start && owned.start <= owned.end && owned.end <= slice.end,
                "rank {r}: {owned:?} not inside its slice {slice:?}: {}",
                case()
            );
            assert!(
                owned.is_empty() || owned.end <= l.numel,
                "rank {r} owns padding: {}",
                case()
            );
            assert_eq!(
                owned.is_empty(),
                slice.start >= l.numel,
                "rank {r}: {}",
                case()
            );
            if !owned.is_empty() {
                assert_eq!(owned.start, next, "rank {r}: gap or overlap: {}", case());
                next = owned.end;
            }
        }
        assert_eq!(next, l.numel, "real elements left unowned: {}", case());
    }

    #[test]
    fn every_unit_length_and_world_size_has_one_owner_per_element() {
        // Unit lengths 1..=4096 at world sizes 1..=1024 (2.1e9 rank checks), split over
        // two threads.
        std::thread::scope(|s| {
            for part in 0..2 {
                s.spawn(move || {
                    for world in (1 + part..=1024).step_by(2) {
                        for numel in 1..=4096 {
                            let l = Layout::new(&[spec("u", numel)], world);
                            check_ownership(&l.units[0], world);
                        }
                    }
                });
            }
        });
    }

    /// GPT-2 small and XL as `model::unit_specs` builds them.
    fn gpt2_units() -> Vec<Vec<UnitSpec>> {
        let gpt = |n_layer, n_head, d_model| ModelConfig {
            n_layer,
            n_head,
            d_model,
            ctx: 1024,
            vocab: 50257,
            ..ModelConfig::default()
        };
        [gpt(12, 12, 768), gpt(48, 25, 1600)]
            .iter()
            .map(crate::model::unit_specs)
            .collect()
    }

    #[test]
    fn gpt2_124m_and_1_5b_units_have_one_owner_per_element() {
        let models = gpt2_units();
        assert_eq!(
            models[0].iter().map(|u| u.numel).sum::<usize>(),
            124_439_808
        );
        assert_eq!(
            models[1].iter().map(|u| u.numel).sum::<usize>(),
            1_557_611_200
        );
        for units in &models {
            for world in 1..=1024 {
                let l = Layout::new(units, world);
                let mut canonical = 0;
                for u in &l.units {
                    assert_eq!(u.canonical_offset, canonical);
                    canonical += u.numel;
                    check_ownership(u, world);
                }
            }
        }
    }

    /// Canonical vector -> each rank's slices (as the engine holds them, padding zeroed) ->
    /// the pieces each rank saves (its owned ranges) -> canonical again, and the reshard
    /// of those pieces into another world size's slices, element by element.
    #[test]
    fn canonical_order_round_trips_through_every_world_size() {
        let units: Vec<UnitSpec> = [1usize, 15, 16, 17, 100, 1000, 4096, 3]
            .iter()
            .enumerate()
            .map(|(i, &n)| spec(&format!("u{i}"), n))
            .collect();
        let total: usize = units.iter().map(|u| u.numel).sum();
        // Values 1.. so a zero can only be padding.
        let canonical: Vec<f32> = (1..=total).map(|i| i as f32).collect();
        let slices_of = |l: &Layout, r: usize| -> Vec<Vec<f32>> {
            l.units
                .iter()
                .map(|u| {
                    u.shard_range(r)
                        .map(|i| match i < u.numel {
                            true => canonical[u.canonical_offset + i],
                            false => 0.0,
                        })
                        .collect()
                })
                .collect()
        };
        for world in (1..=64).chain([100, 127, 128, 255, 256, 511, 512, 1000, 1023, 1024]) {
            let l = Layout::new(&units, world);
            let mut back = vec![f32::NAN; total];
            let mut written = 0;
            for r in 0..world {
                let slices = slices_of(&l, r);
                for (u, slice) in l.units.iter().zip(&slices) {
                    let owned = u.valid_range(r);
                    let base = u.shard_range(r).start;
                    let piece = &slice[owned.start - base..owned.end - base];
                    assert!(
                        piece.iter().all(|&x| x != 0.0),
                        "world {world}: padding saved"
                    );
                    if !piece.is_empty() {
                        let at = u.canonical_offset + owned.start;
                        back[at..at + piece.len()].copy_from_slice(piece);
                    }
                    written += piece.len();
                    // Padding is all that lies outside the owned range.
                    let outside = slice.len() - piece.len();
                    assert_eq!(slice.iter().filter(|&&x| x == 0.0).count(), outside);
                }
            }
            assert_eq!(written, total, "world {world}");
            assert_eq!(back, canonical, "world {world}: canonical order lost");
            // Reshard to a neighbouring world size: every rank's new slices, filled from
            // the canonical pieces, equal that layout's own slices.
            let other = Layout::new(&units, world % 7 + 3);
            for r in 0..other.world {
                for (u, want) in other.units.iter().zip(slices_of(&other, r)) {
                    let owned = u.valid_range(r);
                    let base = u.shard_range(r).start;
                    let mut got = vec![0.0f32; u.shard];
                    if !owned.is_empty() {
                        let at = u.canonical_offset + owned.start;
                        got[owned.start - base..owned.end - base]
                            .copy_from_slice(&back[at..at + owned.len()]);
                    }
                    assert_eq!(got, want, "world {world} -> {}", other.world);
                }
            }
        }
    }
}
