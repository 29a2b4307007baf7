//! Partition layout: how each unit's flat buffer is padded and split across ranks.
//!
//! For world size N, unit u with n_u elements is padded to a multiple of N·ALIGN and rank r
//! owns `[r·s_u, (r+1)·s_u)` with `s_u = padded(n_u)/N` (DESIGN.md, "Partition layout").
//! The unpadded concatenation of the units in model order is the canonical,
//! world-size-independent parameter order.
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
    /// The part of rank r's slice that holds real elements (may be empty).
    pub fn valid_range(&self, rank: usize) -> Range<usize> {
        let r = self.shard_range(rank);
        r.start.min(self.numel)..r.end.min(self.numel)
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

    fn spec(name: &str, numel: usize) -> UnitSpec {
        UnitSpec {
            name: name.into(),
            tensors: vec![],
            numel,
        }
    }

    #[test]
    fn slices_cover_each_unit_exactly_once() {
        let units = [spec("a", 1), spec("b", 1000), spec("c", 4097)];
        for world in 1..=5 {
            let l = Layout::new(&units, world);
            for u in &l.units {
                assert_eq!(u.padded % (world * ALIGN), 0);
                assert!(
                    u.padded >= u.numel && u.padded - u.numel < world * ALIGN.max(1)
                        || u.numel == 0
                );
                let covered: usize = (0..world).map(|r| u.valid_range(r).len()).sum();
                assert_eq!(covered, u.numel);
            }
            assert_eq!(l.numel(), 5098);
            assert_eq!(l.units[2].canonical_offset, 1001);
        }
    }
}
