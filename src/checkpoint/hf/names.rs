//! What a Hugging Face GPT-2 directory holds, shared by export and import: tensor names
//! (zerotrain's GPT tensor names are GPT-2's, `model/gpt/layout.rs`; in a
//! `GPT2LMHeadModel` state dict they carry the `transformer.` prefix), the buffers and
//! the tied head that are not parameters here, the file names, and `config.json`.
use crate::config::ModelConfig;
use crate::dtype::DType;
use serde::{Deserialize, Serialize};

/// The weights of an unsharded export.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The index of a sharded export: `metadata.total_size` and `weight_map`.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The model's shape and kind, as transformers reads it.
pub const CONFIG_FILE: &str = "config.json";
/// `GPT2LMHeadModel`'s prefix for the base model's tensors.
const PREFIX: &str = "transformer.";
/// The LM head: tied to `wte.weight` in zerotrain, so never a parameter of its own.
pub const LM_HEAD: &str = "lm_head.weight";

/// The name `GPT2LMHeadModel.state_dict()` gives zerotrain's tensor `name`
/// (`h.0.attn.c_attn.weight` -> `transformer.h.0.attn.c_attn.weight`), as
/// `save_pretrained` writes it.
pub fn hf_name(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// What a stored tensor name is to zerotrain: a parameter (named as zerotrain names it,
/// with or without the prefix), the tied LM head, or a buffer to skip (the causal mask
/// `attn.bias` and `attn.masked_bias` that older transformers saved).
#[derive(Debug, PartialEq, Eq)]
pub enum Stored<'a> {
    Param(&'a str),
    LmHead,
    Buffer,
}

pub fn classify(stored: &str) -> Stored<'_> {
    if stored == LM_HEAD {
        return Stored::LmHead;
    }
    let name = stored.strip_prefix(PREFIX).unwrap_or(stored);
    if name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias") {
        return Stored::Buffer;
    }
    Stored::Param(name)
}

/// The `config.json` fields zerotrain writes and checks (transformers' `GPT2Config`).
/// zerotrain's GPT is GPT-2's: GELU is the tanh approximation (`device` `gelu_fwd`,
/// transformers' `gelu_new`), LayerNorm's epsilon 1e-5 (`device/cpu/norm.rs` `EPS`),
/// attention scaled by 1/sqrt(head size), the MLP 4x wide, no dropout, and the LM head
/// tied to the token embedding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigJson {
    pub architectures: Vec<String>,
    pub model_type: String,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    pub n_positions: usize,
    #[serde(default)]
    pub n_ctx: Option<usize>,
    pub vocab_size: usize,
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "gelu_new")]
    pub activation_function: String,
    #[serde(default = "ln_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "yes")]
    pub tie_word_embeddings: bool,
    #[serde(default = "yes")]
    pub scale_attn_weights: bool,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    pub reorder_and_upcast_attn: bool,
    #[serde(default)]
    pub resid_pdrop: f64,
    #[serde(default)]
    pub embd_pdrop: f64,
    #[serde(default)]
    pub attn_pdrop: f64,
    #[serde(default)]
    pub summary_first_dropout: f64,
    #[serde(default = "init_range")]
    pub initializer_range: f64,
    #[serde(default)]
    pub torch_dtype: Option<String>,
    /// `null` where the vocabulary has no GPT-2 `<|endoftext|>` (GPT2Config would
    /// otherwise default to 50256, past a small vocabulary).
    #[serde(default)]
    pub bos_token_id: Option<usize>,
    #[serde(default)]
    pub eos_token_id: Option<usize>,
    #[serde(default = "yes")]
    pub use_cache: bool,
}

fn gelu_new() -> String {
    "gelu_new".into()
}
/// LayerNorm's epsilon in zerotrain's kernels (`device/cpu/norm.rs`, `cuda/kernels/norm.cu`),
/// as the decimal it is written as (1e-5, not the f32's 9.99999974e-6 widened).
fn ln_eps() -> f64 {
    let eps = crate::device::LAYERNORM_EPS;
    eps.to_string().parse().unwrap_or(eps as f64)
}
fn yes() -> bool {
    true
}
fn init_range() -> f64 {
    0.02
}

impl ConfigJson {
    /// The config of GPT `m` stored as `dtype`.
    pub fn of(m: &ModelConfig, dtype: DType) -> ConfigJson {
        let eot_id = crate::data::gpt2_bpe::EOT as usize;
        let eot = (m.vocab > eot_id).then_some(eot_id);
        ConfigJson {
            architectures: vec!["GPT2LMHeadModel".into()],
            model_type: "gpt2".into(),
            n_layer: m.n_layer,
            n_head: m.n_head,
            n_embd: m.d_model,
            n_positions: m.ctx,
            n_ctx: Some(m.ctx),
            vocab_size: m.vocab,
            n_inner: None,
            activation_function: gelu_new(),
            layer_norm_epsilon: ln_eps(),
            tie_word_embeddings: true,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            reorder_and_upcast_attn: false,
            resid_pdrop: 0.0,
            embd_pdrop: 0.0,
            attn_pdrop: 0.0,
            summary_first_dropout: 0.0,
            initializer_range: 0.02,
            torch_dtype: Some(torch_dtype(dtype).into()),
            bos_token_id: eot,
            eos_token_id: eot,
            use_cache: true,
        }
    }

    /// Where this config describes another model than GPT `m`, or one zerotrain does not
    /// compute: the first difference, as `key VALUE, the config's model needs WANT`.
    pub fn mismatch(&self, m: &ModelConfig) -> Option<String> {
        let sizes = [
            ("n_layer", self.n_layer, m.n_layer, "model.n_layer"),
            ("n_head", self.n_head, m.n_head, "model.n_head"),
            ("n_embd", self.n_embd, m.d_model, "model.d_model"),
            ("n_positions", self.n_positions, m.ctx, "model.ctx"),
            ("vocab_size", self.vocab_size, m.vocab, "model.vocab"),
            (
                "n_inner",
                self.n_inner.unwrap_or(4 * self.n_embd),
                4 * m.d_model,
                "4 x model.d_model",
            ),
        ];
        for (key, have, want, ours) in sizes {
            if have != want {
                return Some(format!("{key} is {have}, the config's {ours} is {want}"));
            }
        }
        if !matches!(
            self.activation_function.as_str(),
            "gelu_new" | "gelu_pytorch_tanh"
        ) {
            return Some(format!(
                "activation_function is {:?}, zerotrain's GELU is the tanh approximation (\"gelu_new\")",
                self.activation_function
            ));
        }
        if (self.layer_norm_epsilon - ln_eps()).abs() > 1e-12 {
            return Some(format!(
                "layer_norm_epsilon is {}, zerotrain's LayerNorm uses {}",
                self.layer_norm_epsilon,
                ln_eps()
            ));
        }
        let flags = [
            ("tie_word_embeddings", self.tie_word_embeddings, true),
            ("scale_attn_weights", self.scale_attn_weights, true),
            (
                "scale_attn_by_inverse_layer_idx",
                self.scale_attn_by_inverse_layer_idx,
                false,
            ),
        ];
        for (key, have, want) in flags {
            if have != want {
                return Some(format!("{key} is {have}, zerotrain's GPT needs {want}"));
            }
        }
        None
    }
}

/// transformers' name of a dtype (`torch_dtype`).
pub fn torch_dtype(d: DType) -> &'static str {
    match d {
        DType::Fp32 => "float32",
        DType::Bf16 => "bfloat16",
        DType::Fp16 => "float16",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_and_without_prefix() {
        assert_eq!(hf_name("wte.weight"), "transformer.wte.weight");
        assert_eq!(
            classify("transformer.h.0.ln_1.weight"),
            Stored::Param("h.0.ln_1.weight")
        );
        assert_eq!(
            classify("h.0.ln_1.weight"),
            Stored::Param("h.0.ln_1.weight")
        );
        assert_eq!(classify("h.3.attn.bias"), Stored::Buffer);
        assert_eq!(classify("transformer.h.3.attn.masked_bias"), Stored::Buffer);
        assert_eq!(
            classify("h.3.attn.c_attn.bias"),
            Stored::Param("h.3.attn.c_attn.bias")
        );
        assert_eq!(classify("lm_head.weight"), Stored::LmHead);
    }

    #[test]
    fn config_round_trip_and_mismatch() {
        let m = ModelConfig::default();
        let c = ConfigJson::of(&m, DType::Fp32);
        assert_eq!(c.bos_token_id, None);
        let back: ConfigJson = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert!(back.mismatch(&m).is_none());
        let mut other = m.clone();
        other.d_model = 64;
        let why = back.mismatch(&other).unwrap();
        assert!(
            why.contains("n_embd is 32, the config's model.d_model is 64"),
            "{why}"
        );
    }
}
