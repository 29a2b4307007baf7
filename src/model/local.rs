//! All of a model's units held whole on one process: the plain, unsharded way to run a
//! model (benchmarks, tests, sampling). The ZeRO engine replaces this with sharded state.
use super::Model;
use crate::device::Backend;

/// Every unit's parameters and gradients, one buffer per unit.
pub struct LocalState<B: Backend> {
    pub params: Vec<B::Buf>,
    pub grads: Vec<B::Buf>,
}

impl<B: Backend> LocalState<B> {
    /// Parameters initialised from `seed`, zero gradients.
    pub fn new(be: &B, model: &dyn Model<B>, seed: u64) -> anyhow::Result<Self> {
        let mut params = Vec::new();
        let mut grads = Vec::new();
        for (u, spec) in model.units().iter().enumerate() {
            let mut p = be.alloc(spec.numel)?;
            be.upload(&mut p, &model.init_unit(u, seed));
            params.push(p);
            grads.push(be.alloc(spec.numel)?);
        }
        Ok(LocalState { params, grads })
    }

    /// Forward through every unit; returns the mean loss.
    pub fn forward(&self, model: &mut dyn Model<B>) -> anyhow::Result<f32> {
        let root = model.tied_root();
        for u in 0..self.params.len() {
            let r = root.filter(|&r| r != u).map(|r| &self.params[r]);
            model.forward_unit(u, &self.params[u], r)?;
        }
        Ok(model.loss())
    }

    /// Zeroes the gradients, then backward through every unit in reverse order.
    pub fn backward(&mut self, be: &B, model: &mut dyn Model<B>) -> anyhow::Result<()> {
        for g in &mut self.grads {
            let n = be.len(g);
            be.fill(g, 0, n, 0.0);
        }
        let root = model.tied_root();
        for u in (0..self.params.len()).rev() {
            match root {
                Some(r) if r != u => {
                    let (g_u, g_r) = two_mut(&mut self.grads, u, r);
                    let rp = (&self.params[r], g_r);
                    model.backward_unit(u, &self.params[u], g_u, Some(rp))?;
                }
                _ => model.backward_unit(u, &self.params[u], &mut self.grads[u], None)?,
            }
        }
        Ok(())
    }
}

/// Mutable references to two different elements.
fn two_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    if a < b {
        let (lo, hi) = v.split_at_mut(b);
        (&mut lo[a], &mut hi[0])
    } else {
        let (lo, hi) = v.split_at_mut(a);
        (&mut hi[0], &mut lo[b])
    }
}
