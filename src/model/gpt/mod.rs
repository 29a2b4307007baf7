//! The GPT-2 language model (pre-LayerNorm blocks, learned positions, final LayerNorm,
//! LM head tied to the token embedding, no dropout) as a list of units.
mod block;
mod layout;

pub use layout::unit_specs;

use super::spec::UnitSpec;
use super::Model;
use crate::config::ModelConfig;
use crate::data::batch::Batch;
use crate::device::{Backend, Gemm};
use crate::model::attention::Dims;
use crate::model::loss::CrossEntropy;
use block::{BlockActs, BlockScratch};
use layout::BlockLayout;
use std::sync::Arc;

/// The GPT with its activations, allocated once for (max_batch, ctx).
pub struct Gpt<B: Backend> {
    be: Arc<B>,
    cfg: ModelConfig,
    units: Vec<UnitSpec>,
    layout: BlockLayout,
    max_batch: usize,
    /// Current batch size and sequence length (0 until `set_batch`).
    b: usize,
    t: usize,
    ids: B::Ids,
    /// xs[0] = embedding output, xs[l + 1] = output of block l; each (N, C).
    xs: Vec<B::Buf>,
    blocks: Vec<BlockActs<B>>,
    scratch: BlockScratch<B>,
    lnf: B::Buf,
    lnf_stats: B::Buf,
    /// (N, vocab) logits; backward turns them into their gradient in place.
    logits: B::Buf,
    loss: CrossEntropy<B>,
    /// (N, C) gradient of the residual stream flowing down the units.
    dres: B::Buf,
}

impl<B: Backend> Gpt<B> {
    pub fn new(cfg: &ModelConfig, max_batch: usize, be: Arc<B>) -> anyhow::Result<Self> {
        let (c, t, h) = (cfg.d_model, cfg.ctx, cfg.n_head);
        anyhow::ensure!(
            cfg.n_layer >= 1 && h >= 1 && c >= 1 && t >= 1 && cfg.vocab >= 1 && c % h == 0,
            "gpt: n_layer, n_head, d_model, ctx, vocab must be >= 1 and d_model divisible by n_head"
        );
        let n = max_batch * t;
        let bh = max_batch * h;
        let mut xs = Vec::with_capacity(cfg.n_layer + 1);
        for _ in 0..=cfg.n_layer {
            xs.push(be.alloc(n * c)?);
        }
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for _ in 0..cfg.n_layer {
            blocks.push(BlockActs::new(&*be, n, c, bh, t)?);
        }
        Ok(Gpt {
            cfg: cfg.clone(),
            units: unit_specs(cfg),
            layout: layout::block_layout(c),
            max_batch,
            b: 0,
            t: 0,
            ids: be.alloc_ids(n)?,
            xs,
            blocks,
            scratch: BlockScratch::new(&*be, n, c, bh, t)?,
            lnf: be.alloc(n * c)?,
            lnf_stats: be.alloc(2 * n)?,
            logits: be.alloc(n * cfg.vocab)?,
            loss: CrossEntropy::new(&*be, n)?,
            dres: be.alloc(n * c)?,
            be,
        })
    }

    fn dims(&self) -> Dims {
        Dims {
            b: self.b,
            t: self.t,
            c: self.cfg.d_model,
            h: self.cfg.n_head,
        }
    }

    fn head_index(&self) -> usize {
        self.cfg.n_layer + 1
    }

    /// Checks that `u` exists, a batch is set and the buffers hold the unit.
    fn check(&self, u: usize, params: &B::Buf, grads: Option<&B::Buf>) -> anyhow::Result<()> {
        let grads_len = grads.map(|g| self.be.len(g));
        super::spec::check_unit_call(
            "gpt",
            &self.units,
            u,
            self.b > 0,
            self.be.len(params),
            grads_len,
        )
    }

    fn check_root(&self, root_len: usize) -> anyhow::Result<()> {
        anyhow::ensure!(
            root_len >= self.units[0].numel,
            "gpt: the head needs the embedding unit's parameters ({} elements), got {root_len}",
            self.units[0].numel
        );
        Ok(())
    }
}

/// Validates token ids against the vocabulary and returns (b, t).
fn check_tokens(
    b: usize,
    t: usize,
    inputs: &[u32],
    targets: &[u32],
    vocab: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        inputs.len() == b * t && targets.len() == b * t,
        "batch: inputs ({}) and targets ({}) must both hold b x t = {} ids",
        inputs.len(),
        targets.len(),
        b * t
    );
    for (what, ids) in [("input", inputs), ("target", targets)] {
        if let Some(i) = ids.iter().position(|&id| id as usize >= vocab) {
            anyhow::bail!(
                "batch: {what} token id {} at sequence {}, position {} is not below the vocabulary size {vocab}",
                ids[i],
                i / t,
                i % t
            );
        }
    }
    Ok(())
}

impl<B: Backend> Model<B> for Gpt<B> {
    fn units(&self) -> &[UnitSpec] {
        &self.units
    }
    fn tied_root(&self) -> Option<usize> {
        Some(0)
    }
    fn init_unit(&self, u: usize, seed: u64) -> Vec<f32> {
        match self.units.get(u) {
            Some(spec) => layout::init_unit(&self.cfg, spec, u, seed),
            None => Vec::new(),
        }
    }

    fn set_batch(&mut self, batch: &Batch) -> anyhow::Result<()> {
        let Batch::Tokens {
            b,
            t,
            inputs,
            targets,
        } = batch
        else {
            anyhow::bail!("gpt: needs a token batch, got a feature batch");
        };
        let (b, t) = (*b, *t);
        anyhow::ensure!(
            (1..=self.max_batch).contains(&b),
            "batch: {b} sequences, the model was built for 1 to {}",
            self.max_batch
        );
        anyhow::ensure!(
            (1..=self.cfg.ctx).contains(&t),
            "batch: sequence length {t}, must be 1 to ctx = {}",
            self.cfg.ctx
        );
        check_tokens(b, t, inputs, targets, self.cfg.vocab)?;
        self.be.upload_ids(&mut self.ids, inputs);
        self.loss.set_targets(&*self.be, targets);
        self.b = b;
        self.t = t;
        Ok(())
    }

    fn forward_unit(&mut self, u: usize, p: &B::Buf, root: Option<&B::Buf>) -> anyhow::Result<()> {
        self.check(u, p, None)?;
        let be = &*self.be;
        let d = self.dims();
        let (n, c, v) = (d.b * d.t, d.c, self.cfg.vocab);
        if u == 0 {
            let wpe = layout::wpe(&self.cfg);
            be.embedding_fwd(&mut self.xs[0], &self.ids, p, layout::WTE, wpe, d.b, d.t, c);
        } else if u < self.head_index() {
            let (lo, hi) = self.xs.split_at_mut(u);
            let blk = &mut self.blocks[u - 1];
            let heads = &mut self.scratch.heads;
            block::forward(be, &self.layout, blk, heads, &lo[u - 1], &mut hi[0], p, d);
        } else {
            let wte = root.ok_or_else(|| anyhow::anyhow!("gpt: the head unit needs root (wte)"))?;
            self.check_root(be.len(wte))?;
            let x = &self.xs[self.cfg.n_layer];
            let lnf_b = layout::lnf_b(c);
            be.layernorm_fwd(
                &mut self.lnf,
                &mut self.lnf_stats,
                x,
                p,
                layout::LNF_W,
                lnf_b,
                n,
                c,
            );
            // logits (N, V) = lnf (N, C) · wteᵀ
            let g = Gemm::new(n, v, c, false, true).offsets(0, layout::WTE, 0);
            be.gemm(&g, &self.lnf, wte, &mut self.logits);
            self.loss.forward(be, &self.logits, n, v);
        }
        Ok(())
    }

    fn loss(&self) -> f32 {
        self.loss.loss()
    }
    fn set_grad_scale(&mut self, s: f32) {
        self.loss.set_grad_scale(s);
    }

    fn backward_unit(
        &mut self,
        u: usize,
        p: &B::Buf,
        g: &mut B::Buf,
        root: Option<(&B::Buf, &mut B::Buf)>,
    ) -> anyhow::Result<()> {
        self.check(u, p, Some(g))?;
        let be = &*self.be;
        let d = self.dims();
        let (n, c, v) = (d.b * d.t, d.c, self.cfg.vocab);
        if u == 0 {
            let wpe = layout::wpe(&self.cfg);
            be.embedding_bwd(g, layout::WTE, wpe, &self.dres, &self.ids, d.b, d.t, c);
        } else if u < self.head_index() {
            let (blk, x) = (&self.blocks[u - 1], &self.xs[u - 1]);
            block::backward(
                be,
                &self.layout,
                blk,
                &mut self.scratch,
                &mut self.dres,
                x,
                p,
                g,
                d,
            );
        } else {
            let (wte, dwte) = root
                .ok_or_else(|| anyhow::anyhow!("gpt: the head unit needs root (wte, its grads)"))?;
            self.check_root(be.len(wte).min(be.len(dwte)))?;
            self.loss.backward(be, &mut self.logits, n, v);
            // dlnf (N, C) = dlogits (N, V) · wte (V, C); dwte (V, C) += dlogitsᵀ · lnf
            let dlnf = &mut self.scratch.dtmp;
            be.gemm(
                &Gemm::new(n, c, v, false, false).offsets(0, layout::WTE, 0),
                &self.logits,
                wte,
                dlnf,
            );
            let gw = Gemm::new(v, c, n, true, false)
                .offsets(0, 0, layout::WTE)
                .scaled(1.0, 1.0);
            be.gemm(&gw, &self.logits, &self.lnf, dwte);
            be.fill(&mut self.dres, 0, n * c, 0.0);
            let x = &self.xs[self.cfg.n_layer];
            let lnf_b = layout::lnf_b(c);
            be.layernorm_bwd(
                &mut self.dres,
                g,
                layout::LNF_W,
                lnf_b,
                dlnf,
                x,
                p,
                &self.lnf_stats,
                n,
                c,
            );
        }
        Ok(())
    }

    fn logits_at(&self, row: usize, pos: usize, out: &mut [f32]) {
        let v = self.cfg.vocab;
        let m = v.min(out.len());
        if row >= self.b || pos >= self.t {
            out.fill(f32::NAN);
            return;
        }
        self.be
            .download_at(&self.logits, (row * self.t + pos) * v, &mut out[..m]);
    }
}
