//! The MLP classifier: linear layers with ReLU between them and softmax cross-entropy at
//! the end. One unit per linear layer (`fc{i}`: weight (in, out), bias (out)).
use super::init::{uniform, unit_rng};
use super::linear::Linear;
use super::loss::{count_correct, CrossEntropy};
use super::spec::UnitSpec;
use super::Model;
use crate::config::ModelConfig;
use crate::data::batch::Batch;
use crate::device::Backend;
use std::sync::Arc;

/// Layer widths: inputs, hidden..., classes.
fn widths(cfg: &ModelConfig) -> Vec<usize> {
    let mut w = vec![cfg.inputs];
    w.extend(&cfg.hidden);
    w.push(cfg.classes);
    w
}

/// One unit per linear layer.
pub fn unit_specs(cfg: &ModelConfig) -> Vec<UnitSpec> {
    let w = widths(cfg);
    (0..w.len() - 1)
        .map(|i| {
            let mut u = UnitSpec::new(format!("fc{i}"));
            u.push(format!("fc{i}.weight"), &[w[i], w[i + 1]], true);
            u.push(format!("fc{i}.bias"), &[w[i + 1]], false);
            u
        })
        .collect()
}

/// The MLP with its activations, allocated once for `max_batch` rows.
pub struct Mlp<B: Backend> {
    be: Arc<B>,
    units: Vec<UnitSpec>,
    layers: Vec<Linear>,
    max_batch: usize,
    b: usize,
    x: B::Buf,
    /// hs[i]: (N, out_i) output of layer i (after ReLU for hidden layers; logits last,
    /// turned into their gradient in place by backward).
    hs: Vec<B::Buf>,
    /// Ping-pong gradient buffers (N, max width).
    dbuf: [B::Buf; 2],
    loss: CrossEntropy<B>,
    /// Host copy of the logits (N, classes) for [`Model::correct`], allocated once.
    logits_host: Vec<f32>,
}

impl<B: Backend> Mlp<B> {
    pub fn new(cfg: &ModelConfig, max_batch: usize, be: Arc<B>) -> anyhow::Result<Self> {
        let w = widths(cfg);
        anyhow::ensure!(
            w.iter().all(|&x| x > 0) && cfg.classes >= 2,
            "mlp: inputs, hidden sizes must be >= 1 and classes >= 2"
        );
        let units = unit_specs(cfg);
        let layers = units
            .iter()
            .enumerate()
            .map(|(i, u)| Linear {
                w: u.tensors[0].offset,
                b: u.tensors[1].offset,
                din: w[i],
                dout: w[i + 1],
            })
            .collect::<Vec<_>>();
        let n = max_batch;
        let widest = w.iter().copied().max().unwrap_or(1);
        let mut hs = Vec::with_capacity(layers.len());
        for l in &layers {
            hs.push(be.alloc(n * l.dout)?);
        }
        Ok(Mlp {
            units,
            layers,
            max_batch,
            b: 0,
            x: be.alloc(n * cfg.inputs)?,
            hs,
            dbuf: [be.alloc(n * widest)?, be.alloc(n * widest)?],
            loss: CrossEntropy::new(&*be, n)?,
            logits_host: vec![0.0; n * cfg.classes],
            be,
        })
    }

    fn check(&self, u: usize, params: &B::Buf, grads: Option<&B::Buf>) -> anyhow::Result<()> {
        let grads_len = grads.map(|g| self.be.len(g));
        super::spec::check_unit_call(
            "mlp",
            &self.units,
            u,
            self.b > 0,
            self.be.len(params),
            grads_len,
        )
    }

    fn classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.dout)
    }
}

impl<B: Backend> Model<B> for Mlp<B> {
    fn units(&self) -> &[UnitSpec] {
        &self.units
    }
    fn tied_root(&self) -> Option<usize> {
        None
    }
    /// PyTorch's nn.Linear default: weight and bias uniform(±1/sqrt(fan_in)).
    fn init_unit(&self, u: usize, seed: u64) -> Vec<f32> {
        let (Some(spec), Some(l)) = (self.units.get(u), self.layers.get(u)) else {
            return Vec::new();
        };
        let mut rng = unit_rng(seed, u);
        let mut v = vec![0.0f32; spec.numel];
        uniform(&mut rng, &mut v, 1.0 / (l.din as f32).sqrt());
        v
    }

    fn set_batch(&mut self, batch: &Batch) -> anyhow::Result<()> {
        let Batch::Features { b, d, x, y } = batch else {
            anyhow::bail!("mlp: needs a feature batch, got a token batch");
        };
        let (b, d) = (*b, *d);
        let inputs = self.layers[0].din;
        anyhow::ensure!(
            (1..=self.max_batch).contains(&b),
            "batch: {b} rows, the model was built for 1 to {}",
            self.max_batch
        );
        anyhow::ensure!(
            d == inputs,
            "batch: {d} features per row, the model takes {inputs}"
        );
        anyhow::ensure!(
            x.len() == b * d && y.len() == b,
            "batch: x must hold b x d = {} values and y {b} labels, got {} and {}",
            b * d,
            x.len(),
            y.len()
        );
        let classes = self.classes();
        if let Some(i) = y.iter().position(|&c| c as usize >= classes) {
            anyhow::bail!(
                "batch: class id {} at row {i} is not below the number of classes {classes}",
                y[i]
            );
        }
        self.be.upload(&mut self.x, x);
        self.loss.set_targets(&*self.be, y);
        self.b = b;
        Ok(())
    }

    fn forward_unit(&mut self, u: usize, p: &B::Buf, _root: Option<&B::Buf>) -> anyhow::Result<()> {
        self.check(u, p, None)?;
        let be = &*self.be;
        let (n, l) = (self.b, self.layers[u]);
        let (lo, hi) = self.hs.split_at_mut(u);
        let x = if u == 0 { &self.x } else { &lo[u - 1] };
        let out = &mut hi[0];
        l.forward(be, out, x, p, n, None);
        if u + 1 < self.layers.len() {
            be.relu_fwd(out, n * l.dout);
        } else {
            self.loss.forward(be, out, n, l.dout);
        }
        Ok(())
    }

    fn loss(&self) -> f32 {
        self.loss.loss()
    }
    fn set_grad_scale(&mut self, s: f32) {
        self.loss.set_grad_scale(s);
    }
    fn correct(&mut self, labels: &[u32]) -> Option<(usize, usize)> {
        let (n, c) = (self.b, self.classes());
        // logits: (n, c) row-major, the last layer's output.
        let host = &mut self.logits_host[..n * c];
        self.be.download(&self.hs[self.layers.len() - 1], host);
        Some((count_correct(host, labels.get(..n)?, c), n))
    }

    fn backward_unit(
        &mut self,
        u: usize,
        p: &B::Buf,
        g: &mut B::Buf,
        _root: Option<(&B::Buf, &mut B::Buf)>,
    ) -> anyhow::Result<()> {
        self.check(u, p, Some(g))?;
        let be = &*self.be;
        let (n, l) = (self.b, self.layers[u]);
        let last = self.layers.len() - 1;
        // d(output of layer u) lives in the logits (last layer) or in dbuf[u % 2]; d(input)
        // goes to dbuf[(u + 1) % 2], which layer u - 1 reads as its d(output).
        let [d0, d1] = &mut self.dbuf;
        let (dy_buf, dx_buf) = if u.is_multiple_of(2) {
            (d0, d1)
        } else {
            (d1, d0)
        };
        if u == last {
            self.loss.backward(be, &mut self.hs[u], n, l.dout);
        } else {
            be.relu_bwd(dy_buf, &self.hs[u], n * l.dout);
        }
        let dy: &B::Buf = if u == last { &self.hs[u] } else { dy_buf };
        let x = if u == 0 { &self.x } else { &self.hs[u - 1] };
        let dx = (u > 0).then_some((dx_buf, false));
        l.backward(be, dx, g, dy, x, p, n);
        Ok(())
    }

    fn logits_at(&self, row: usize, _pos: usize, out: &mut [f32]) {
        let c = self.classes();
        if row >= self.b {
            out.fill(f32::NAN);
            return;
        }
        let m = c.min(out.len());
        self.be
            .download_at(&self.hs[self.layers.len() - 1], row * c, &mut out[..m]);
    }
}
