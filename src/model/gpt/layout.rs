//! GPT-2 parameter layout and initialisation.
//!
//! Units: 0 = `embed` (wte (vocab, C), wpe (ctx, C)); 1..=n_layer = `h.{i}` blocks;
//! n_layer + 1 = `head` (ln_f; the logits reuse wte from unit 0). Linear weights are
//! stored (in, out) row-major. Block tensor order: ln_1 w, b; attn.c_attn w (C, 3C), b
//! (3C); attn.c_proj w (C, C), b; ln_2 w, b; mlp.c_fc w (C, 4C), b (4C); mlp.c_proj w
//! (4C, C), b.
use crate::config::ModelConfig;
use crate::model::init::{normal, unit_rng};
use crate::model::linear::Linear;
use crate::model::spec::UnitSpec;

/// Offsets of a block's tensors within its unit.
#[derive(Debug, Clone, Copy)]
pub struct BlockLayout {
    pub ln1_w: usize,
    pub ln1_b: usize,
    pub attn: Linear,
    pub proj: Linear,
    pub ln2_w: usize,
    pub ln2_b: usize,
    pub fc: Linear,
    pub fc_proj: Linear,
}

/// Offsets of the head's tensors within its unit.
pub const LNF_W: usize = 0;
/// The final LayerNorm bias follows its weight (C elements).
pub fn lnf_b(c: usize) -> usize {
    c
}

/// Offsets of the embedding tensors within unit 0.
pub const WTE: usize = 0;
/// wpe follows wte (vocab x C elements).
pub fn wpe(cfg: &ModelConfig) -> usize {
    cfg.vocab * cfg.d_model
}

fn block_spec(i: usize, c: usize) -> (UnitSpec, BlockLayout) {
    let mut u = UnitSpec::new(format!("h.{i}"));
    let p = |s: &str| format!("h.{i}.{s}");
    let ln1_w = u.push(p("ln_1.weight"), &[c], false);
    let ln1_b = u.push(p("ln_1.bias"), &[c], false);
    let attn_w = u.push(p("attn.c_attn.weight"), &[c, 3 * c], true);
    let attn_b = u.push(p("attn.c_attn.bias"), &[3 * c], false);
    let proj_w = u.push(p("attn.c_proj.weight"), &[c, c], true);
    let proj_b = u.push(p("attn.c_proj.bias"), &[c], false);
    let ln2_w = u.push(p("ln_2.weight"), &[c], false);
    let ln2_b = u.push(p("ln_2.bias"), &[c], false);
    let fc_w = u.push(p("mlp.c_fc.weight"), &[c, 4 * c], true);
    let fc_b = u.push(p("mlp.c_fc.bias"), &[4 * c], false);
    let fp_w = u.push(p("mlp.c_proj.weight"), &[4 * c, c], true);
    let fp_b = u.push(p("mlp.c_proj.bias"), &[c], false);
    let lin = |w, b, din, dout| Linear { w, b, din, dout };
    let layout = BlockLayout {
        ln1_w,
        ln1_b,
        attn: lin(attn_w, attn_b, c, 3 * c),
        proj: lin(proj_w, proj_b, c, c),
        ln2_w,
        ln2_b,
        fc: lin(fc_w, fc_b, c, 4 * c),
        fc_proj: lin(fp_w, fp_b, 4 * c, c),
    };
    (u, layout)
}

/// The block layout for width `c` (the same for every block).
pub fn block_layout(c: usize) -> BlockLayout {
    block_spec(0, c).1
}

/// All units of the GPT `cfg` describes.
pub fn unit_specs(cfg: &ModelConfig) -> Vec<UnitSpec> {
    let c = cfg.d_model;
    let mut units = Vec::with_capacity(cfg.n_layer + 2);
    let mut embed = UnitSpec::new("embed");
    embed.push("wte.weight", &[cfg.vocab, c], true);
    embed.push("wpe.weight", &[cfg.ctx, c], false);
    units.push(embed);
    for i in 0..cfg.n_layer {
        units.push(block_spec(i, c).0);
    }
    let mut head = UnitSpec::new("head");
    head.push("ln_f.weight", &[c], false);
    head.push("ln_f.bias", &[c], false);
    units.push(head);
    units
}

/// GPT-2 initialisation of unit `u`: normal(0, 0.02) for weights and embeddings, the
/// residual projections (attn.c_proj, mlp.c_proj) scaled by 1/sqrt(2 n_layer), zero
/// biases, LayerNorm weight 1.
pub fn init_unit(cfg: &ModelConfig, spec: &UnitSpec, u: usize, seed: u64) -> Vec<f32> {
    const STD: f32 = 0.02;
    let mut rng = unit_rng(seed, u);
    let mut v = vec![0.0f32; spec.numel];
    let proj_std = STD / ((2 * cfg.n_layer) as f32).sqrt();
    for t in &spec.tensors {
        let dst = &mut v[t.offset..t.offset + t.numel()];
        let n = &t.name;
        if n.contains("ln_") && n.ends_with(".weight") {
            dst.fill(1.0);
        } else if n.ends_with(".bias") {
            dst.fill(0.0);
        } else if n.ends_with("c_proj.weight") {
            normal(&mut rng, dst, proj_std);
        } else {
            normal(&mut rng, dst, STD);
        }
    }
    v
}
