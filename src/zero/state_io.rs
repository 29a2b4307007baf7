//! Exporting and importing this rank's model states in canonical coordinates, for
//! checkpoints. A rank exports, per unit, the real elements it owns (`valid_range`),
//! so no rank ever holds more than its shard to write; a rank imports any unit-local
//! range and keeps the part inside its optimizer domain, so a checkpoint written at one
//! world size and stage loads at any other.
use super::engine::{Engine, Home};
use super::params::host_view;
use super::update::master_view_mut;
use crate::device::Backend;
use crate::device::Store;
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
        self.optimizer.state_names()
    }

    pub fn scaler(&self) -> &LossScaler {
        &self.scaler
    }

    pub fn set_scaler(&mut self, s: LossScaler) {
        self.scaler = s;
    }

    /// fp32 master weights of unit `u` over its optimizer domain.
    fn master_domain(&self, u: usize) -> anyhow::Result<&[f32]> {
        if self.plan.has_master() {
            return Ok(&self.master[u]);
        }
        let d = self.domain(u);
        match &self.params[u] {
            Home::Device(b) => Ok(&host_view(self.backend.as_ref(), b)?[d]),
            Home::Host(Store::F32(v)) => Ok(&v[..]),
            Home::Host(_) => {
                anyhow::bail!("internal error: half parameters without master weights")
            }
        }
    }

    /// The part of unit `u` this rank saves: its `valid_range`, with master weights and
    /// optimizer states.
    pub fn export_unit(&self, u: usize) -> anyhow::Result<UnitPiece> {
        let range = self.layout.units[u].valid_range(self.rank);
        let local = self.owned_in_domain(u);
        let master = self.master_domain(u)?[local.clone()].to_vec();
        let off = self.opt_offsets[u];
        let states = self
            .optimizer
            .state()
            .iter()
            .map(|s| s[off + local.start..off + local.end].to_vec())
            .collect();
        Ok(UnitPiece {
            range,
            master,
            states,
        })
    }

    /// The unit-local range of unit `u` this rank needs when loading (its domain, real
    /// elements only).
    pub fn import_range(&self, u: usize) -> Range<usize> {
        let d = self.domain(u);
        let n = self.layout.units[u].numel;
        d.start.min(n)..d.end.min(n)
    }

    /// Sets master weights and optimizer states of unit `u` for `piece.range`; elements
    /// outside this rank's domain are ignored. Call [`Engine::finish_import`] after all units.
    pub fn import_unit(&mut self, u: usize, piece: &UnitPiece) -> anyhow::Result<()> {
        let d = self.domain(u);
        let start = piece.range.start.max(d.start);
        let end = piece.range.end.min(d.end);
        if start >= end {
            return Ok(());
        }
        let src = (start - piece.range.start)..(end - piece.range.start);
        let dst = (start - d.start)..(end - d.start);
        let off = self.opt_offsets[u];
        let mut states = self.optimizer.state_mut();
        anyhow::ensure!(
            states.len() == piece.states.len(),
            "checkpoint has {} optimizer state vectors, this optimizer has {}",
            piece.states.len(),
            states.len()
        );
        for (dst_state, src_state) in states.iter_mut().zip(&piece.states) {
            dst_state[off + dst.start..off + dst.end].copy_from_slice(&src_state[src.clone()]);
        }
        let m = master_view_mut(
            self.backend.as_ref(),
            &mut self.master[u],
            &mut self.params[u],
            d,
        )?;
        m[dst].copy_from_slice(&piece.master[src]);
        Ok(())
    }

    /// After importing: parameters follow the master weights on every rank (stage 1 and
    /// 2 all-gather), and the step counter resumes at `step`.
    pub fn finish_import(&mut self, step: u64) -> anyhow::Result<()> {
        self.step = step;
        self.publish_params()
    }
}
