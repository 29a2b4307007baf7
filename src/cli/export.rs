//! `zerotrain export`: a checkpoint in another framework's format (single process, no
//! mpirun; any world size and stage). `--format hf`: a Hugging Face `GPT2LMHeadModel`
//! directory (`checkpoint/hf/export.rs`; docs/checkpoint-format.md).
use crate::checkpoint::hf::{export_hf, ExportOptions};
use crate::dtype::DType;
use anyhow::{bail, Context};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A step directory, or a checkpoint directory with `latest`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Output format: `hf` (Hugging Face transformers, safetensors).
    #[arg(long)]
    pub format: String,
    /// Output directory (new or empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Stored dtype: fp32, bf16 or fp16 (rounded from the fp32 master weights).
    #[arg(long, default_value = "fp32")]
    pub dtype: String,
    /// Largest file before the weights are sharded, e.g. 2GB, 500MB, 10KiB or bytes.
    #[arg(long, default_value = "2GB")]
    pub max_shard_size: String,
    /// The training dataset: a GPT-2 tokenized one (manifest "tokenizer": "gpt2") adds
    /// its tokenizer files.
    #[arg(long)]
    pub data: Option<PathBuf>,
}

pub fn run(a: ExportArgs) -> anyhow::Result<()> {
    if a.format != "hf" {
        bail!("--format {:?}: the formats are: hf", a.format);
    }
    let dtype = DType::parse(&a.dtype).with_context(|| format!("--dtype {:?}", a.dtype))?;
    let max_shard_bytes = parse_size(&a.max_shard_size)
        .map_err(|why| anyhow::anyhow!("--max-shard-size {:?}: {why}", a.max_shard_size))?;
    let opts = ExportOptions {
        dtype,
        max_shard_bytes,
        data: a.data.clone(),
    };
    let done = export_hf(&a.checkpoint, &a.out, &opts)?;
    if let Some(why) = &done.note {
        println!("note: {why}");
    }
    println!(
        "exported step {} ({} tensors, {} parameters, {}) to {}:",
        done.step,
        done.tensors,
        done.parameters,
        dtype.name(),
        a.out.display()
    );
    for f in &done.files {
        println!("  {}", f.display());
    }
    Ok(())
}

/// A size as transformers writes `max_shard_size`: digits with an optional unit, KB MB GB
/// (powers of 1000) or KiB MiB GiB (powers of 1024), or plain bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| "not a size: use e.g. 2GB, 500MB, 10KiB or bytes".to_string())?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KIB" => 1 << 10,
        "MIB" => 1 << 20,
        "GIB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit {other:?}: use KB, MB, GB, KiB, MiB or GiB"
            ))
        }
    };
    match n.checked_mul(mult) {
        Some(0) => Err("must be above 0".into()),
        Some(b) => Ok(b),
        None => Err("too large".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("10KiB"), Ok(10240));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("5 mb"), Ok(5_000_000));
        for bad in ["", "GB", "2TB", "0", "-1", "1.5GB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
