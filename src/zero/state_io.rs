//! Exporting and importing this rank's model states in canonical coordinates, for
//! checkpoints. A rank exports, per unit, the real elements it owns (`valid_range`),
//! so no rank ever holds more than its shard to write; a rank imports any unit-local
//! range and keeps the part inside its optimizer domain, so a checkpoint written at one
//! world size and stage loads at any other.
use super::engine::{Engine, Home};
use super::update::master_mut;
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
        self.rule.state_names()
    }

    pub fn scaler(&self) -> &LossScaler {
        &self.scaler
    }

    pub fn set_scaler(&mut self, s: LossScaler) {
        self.scaler = s;
    }

    /// `out = master[range]` of unit `u` (range relative to its optimizer domain),
    /// downloaded from the backend.
    fn download_master(
        &self,
        u: usize,
        range: Range<usize>,
        out: &mut [f32],
    ) -> anyhow::Result<()> {
        let be = self.backend.as_ref();
        let d = self.domain(u);
        let (buf, off) = match (&self.master[u], &self.params[u]) {
            (Some(m), _) => (m, 0),
            (None, Home::F32(b)) if self.plan.shards_params() => (b, 0),
            (None, Home::F32(b)) => (b, d.start),
            (None, Home::Typed(_)) => {
                anyhow::bail!("internal error: half parameters without master weights")
            }
        };
        be.download_at(buf, off + range.start, out);
        Ok(())
    }

    /// The part of unit `u` this rank saves: its `valid_range`, with master weights and
    /// optimizer states.
    pub fn export_unit(&self, u: usize) -> anyhow::Result<UnitPiece> {
        let range = self.layout.units[u].valid_range(self.rank);
        let local = self.owned_in_domain(u);
        let mut master = vec![0.0; local.len()];
        self.download_master(u, local.clone(), &mut master)?;
        let off = self.opt_offsets[u];
        let states = self
            .states
            .iter()
            .map(|s| {
                let mut v = vec![0.0; local.len()];
                self.backend.download_at(s, off + local.start, &mut v);
                v
            })
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
        anyhow::ensure!(
            self.states.len() == piece.states.len(),
            "checkpoint has {} optimizer state vectors, this optimizer has {}",
            piece.states.len(),
            self.states.len()
        );
        let be = self.backend.clone();
        for (dst_state, src_state) in self.states.iter_mut().zip(&piece.states) {
            be.upload_at(dst_state, off + dst.start, &src_state[src.clone()]);
        }
        let (m, moff) = master_mut(
            &mut self.master[u],
            &mut self.params[u],
            self.plan.shards_params(),
            d.start,
        )?;
        be.upload_at(m, moff + dst.start, &piece.master[src]);
        Ok(())
    }

    /// After importing: parameters follow the master weights on every rank (stage 1 and
    /// 2 all-gather), and the step counter resumes at `step`.
    pub fn finish_import(&mut self, step: u64) -> anyhow::Result<()> {
        self.step = step;
        self.publish_params()
    }
}
