//! `zerotrain logits`: the logits a GPT checkpoint computes for given token ids, as JSON,
//! so its forward can be compared with another implementation's (e.g. the Hugging Face
//! export loaded in transformers). Single process, CPU, fp32 (the master weights).
use super::sample::Generator;
use anyhow::{bail, Context};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct LogitsArgs {
    /// Checkpoint: a step directory, or a checkpoint dir with `latest`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// One sequence of token ids, comma-separated (repeatable: one row each, all of one
    /// length, at most the model's ctx), e.g. --tokens 3,1,4,1,5.
    #[arg(long, required = true)]
    pub tokens: Vec<String>,
}

pub fn run(a: LogitsArgs) -> anyhow::Result<()> {
    let rows = a
        .tokens
        .iter()
        .map(|r| parse_row(r))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let t = rows[0].len();
    if rows.iter().any(|r| r.len() != t) {
        bail!("--tokens: every row must have the same length");
    }
    let mut gen = Generator::load(&a.checkpoint, rows.len())?;
    let logits = all_logits(&mut gen, &rows)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::json!({ "logits": logits })).context("writing stdout")
}

fn parse_row(text: &str) -> anyhow::Result<Vec<u32>> {
    let row = text
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<u32>()
                .with_context(|| format!("--tokens {text:?}: {s:?} is not a token id"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if row.is_empty() {
        bail!("--tokens is empty");
    }
    Ok(row)
}

/// Logits at every position: `out[b][t]` has `vocab` values; rows are (b, t) token ids
/// (t <= ctx; an id past the vocabulary is the model's error).
fn all_logits(gen: &mut Generator, rows: &[Vec<u32>]) -> anyhow::Result<Vec<Vec<Vec<f32>>>> {
    let (b, t, vocab) = (rows.len(), rows[0].len(), gen.cfg.vocab);
    if t > gen.cfg.ctx {
        bail!("--tokens: {t} tokens, the model's ctx is {}", gen.cfg.ctx);
    }
    gen.forward(rows)?;
    let mut out = vec![vec![vec![0.0f32; vocab]; t]; b];
    for (i, row) in out.iter_mut().enumerate() {
        for (p, o) in row.iter_mut().enumerate() {
            gen.model.logits_at(i, p, o);
        }
    }
    Ok(out)
}
