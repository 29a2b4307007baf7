//! Exporting and importing this rank's model states in canonical coordinates, for
//! checkpoints. A rank exports, per unit, the real elements it owns (`valid_range`),
//! so no rank ever holds more than its shard to write; a rank imports any unit-local
//! range and keeps the part inside its optimizer domain, so a checkpoint written at one
//! world size and stage loads at any other. The optimizer part does the copies.
use super::engine::Engine;
use crate::device::Backend;
use crate::optim::LossScaler;
use std::ops::Range;

/// One unit's piece as a rank saves it.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitPiece {
    /// Unit-local range of real elements this piece covers.
    pub range: Range<usize>,
    /// fp32 master weights over `range`.
    pub master: Vec<f32>,
    /// Optimizer states over `range`, in the order of `Engine::state_names`.
    pub states: Vec<Vec<f32>>,
}

impl<B: Backend> Engine<'_, B> {
    /// Names of the optimizer's state vectors (e.g. `exp_avg`, `exp_avg_sq`).
    pub fn state_names(&self) -> &'static [&'static str] {
        self.opt.state_names()
    }

    pub fn scaler(&self) -> &LossScaler {
        &self.scaler
    }

    pub fn set_scaler(&mut self, s: LossScaler) {
        self.scaler = s;
    }

    /// The part of unit `u` this rank saves: its `valid_range`, with master weights and
    /// optimizer states.
    pub fn export_unit(&self, u: usize) -> anyhow::Result<UnitPiece> {
        let range = self.core.layout.units[u].valid_range(self.core.rank);
        let local = self.core.owned_in_domain(u);
        self.opt.export(&self.core, &self.params, u, range, local)
    }

    /// The unit-local range of unit `u` this rank needs when loading (its domain, real
    /// elements only).
    pub fn import_range(&self, u: usize) -> Range<usize> {
        let d = self.core.domain(u);
        let n = self.core.layout.units[u].numel;
        d.start.min(n)..d.end.min(n)
    }

    /// Sets master weights and optimizer states of unit `u` for `piece.range`; elements
    /// outside this rank's domain are ignored. Call [`Engine::finish_import`] after all units.
    pub fn import_unit(&mut self, u: usize, piece: &UnitPiece) -> anyhow::Result<()> {
        let d = self.core.domain(u);
        let start = piece.range.start.max(d.start);
        let end = piece.range.end.min(d.end);
        if start >= end {
            return Ok(());
        }
        let src = (start - piece.range.start)..(end - piece.range.start);
        let dst = (start - d.start)..(end - d.start);
        self.opt
            .import(&self.core, &mut self.params, u, piece, src, dst)
    }

    /// After importing: parameters follow the master weights on every rank (stage 1 and
    /// 2 all-gather), and the step counter resumes at `step`.
    pub fn finish_import(&mut self, step: u64) -> anyhow::Result<()> {
        self.step = step;
        self.params.publish(&mut self.core, self.opt.master())
    }
}
