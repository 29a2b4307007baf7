//! `zerotrain data inspect`: what a dataset holds; `--verify` rescans every shard.
use super::manifest::{Kind, Manifest, Split};
use super::shard::Shard;
use anyhow::Result;
use std::fmt::Write;
use std::path::Path;

/// Vocabulary entries shown in the report.
const VOCAB_SHOWN: usize = 96;

/// A human-readable report of the dataset in `dir`. Every shard is opened (read-only,
/// without HDF5 file locking) and checked against the manifest (dtype, shape, count);
/// with `verify`, every shard is also read in full (`Shard::verify`): checksums
/// recomputed and every id checked against the vocabulary (classes).
/// The first problem found is returned as an error naming the file (and position).
pub fn inspect(dir: &Path, verify: bool) -> Result<String> {
    let m = Manifest::load(dir)?;
    let mut out = String::new();
    let _ = writeln!(out, "dataset {}", dir.display());
    match m.kind {
        Kind::Tokens => {
            let _ = write!(out, "kind tokens, vocabulary {}", m.vocab_size);
            if let Some(t) = &m.tokenizer {
                let _ = write!(out, " ({t})");
            }
            let _ = writeln!(out);
            if let Some(v) = &m.vocab {
                let shown: String = v
                    .iter()
                    .take(VOCAB_SHOWN)
                    .map(|s| s.escape_debug().to_string())
                    .collect();
                let more = if v.len() > VOCAB_SHOWN { " ..." } else { "" };
                let _ = writeln!(out, "vocab \"{shown}\"{more}");
            }
        }
        Kind::Classify => {
            let _ = writeln!(
                out,
                "kind classify, {} features, {} classes",
                m.features, m.classes
            );
        }
    }
    if let Some(t) = &m.task {
        let _ = writeln!(out, "task {t}");
    }
    let unit = if m.kind == Kind::Tokens {
        "tokens"
    } else {
        "samples"
    };
    let _ = writeln!(
        out,
        "{:<24} {:<6} {:>12} {:<7} {:>10}  check",
        "shard", "split", unit, "dtype", "crc32"
    );
    for e in &m.shards {
        let shard = Shard::open(dir, &m, e)?;
        let check = if verify {
            shard.verify(m.id_limit())?;
            "verified"
        } else {
            "opened"
        };
        let _ = writeln!(
            out,
            "{:<24} {:<6} {:>12} {:<7} {:>10}  {check}",
            e.file,
            e.split.name(),
            e.count,
            e.dtype.name(),
            crate::checksum::hex(e.crc32)
        );
    }
    for split in [Split::Train, Split::Val] {
        let s = m.split(split);
        let total: u64 = s.iter().map(|(_, e)| e.count).sum();
        let _ = writeln!(out, "{}: {} shards, {total} {unit}", split.name(), s.len());
    }
    if verify {
        let _ = writeln!(out, "verify: all checksums match and all ids are in range");
    }
    Ok(out)
}
