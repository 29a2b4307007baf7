//! The tokenizer files of an export (`export --data DATASET_DIR`): where the dataset's
//! `manifest.json` says `"tokenizer": "gpt2"`, its `vocab.json` and `merges.txt` (that
//! `data prepare --tokenizer gpt2` writes) are copied, with the `tokenizer_config.json`
//! and `special_tokens_map.json` that `GPT2TokenizerFast.from_pretrained` reads.
use super::export::write_json;
use crate::data::gpt2_bpe::{EOT_TEXT as EOT, HF_FILES};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// Copies the tokenizer of dataset `data` into `out` for a model of context `ctx`.
/// Returns the files written, or none (with why) when the dataset's tokenizer is not
/// GPT-2's BPE (a character vocabulary has no Hugging Face tokenizer files).
pub fn export_tokenizer(
    data: &Path,
    out: &Path,
    ctx: usize,
) -> anyhow::Result<Result<Vec<PathBuf>, String>> {
    let manifest = data.join("manifest.json");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("--data: {}: cannot read", manifest.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("--data: {}: not JSON", manifest.display()))?;
    let name = v.get("tokenizer").and_then(|t| t.as_str());
    if name != Some("gpt2") {
        return Ok(Err(format!(
            "{}: the tokenizer is {}, not \"gpt2\": no tokenizer files exported",
            manifest.display(),
            name.map_or("not named".to_string(), |n| format!("{n:?}"))
        )));
    }
    let mut files = Vec::new();
    for f in HF_FILES {
        let src = data.join(f);
        if !src.is_file() {
            bail!(
                "--data: {} is missing; {} says \"tokenizer\": \"gpt2\" (data prepare --tokenizer gpt2 writes it)",
                src.display(),
                manifest.display()
            );
        }
        let dst = out.join(f);
        std::fs::copy(&src, &dst)
            .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        files.push(dst);
    }
    let special = serde_json::json!({
        "bos_token": EOT, "eos_token": EOT, "unk_token": EOT,
    });
    let mut config = special.clone();
    if let Some(c) = config.as_object_mut() {
        c.insert("tokenizer_class".into(), "GPT2Tokenizer".into());
        c.insert("model_max_length".into(), ctx.into());
        c.insert("add_prefix_space".into(), false.into());
    }
    for (name, value) in [
        ("special_tokens_map.json", &special),
        ("tokenizer_config.json", &config),
    ] {
        let p = out.join(name);
        write_json(&p, value)?;
        files.push(p);
    }
    Ok(Ok(files))
}
