//! Helpers shared by the tests/data_*.rs files.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::Command;
use zerotrain::config::{DataConfig, DataSource, ModelConfig, ModelKind, Sampling};
use zerotrain::data::{LoaderSpec, Manifest, Split};

/// A deterministic pseudo-random text of `n` characters over a small alphabet.
pub fn make_text(n: usize, seed: u64) -> String {
    let alphabet: Vec<char> = "abcdefgh ijk\nLMN.,;".chars().collect();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            alphabet[((s >> 33) % alphabet.len() as u64) as usize]
        })
        .collect()
}

/// Runs the binary; returns (success, stdout, stderr).
pub fn zt(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_zerotrain"))
        .args(args)
        .output()
        .expect("spawn zerotrain");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `zt` that must succeed.
pub fn zt_ok(args: &[&str]) -> String {
    let (ok, o, e) = zt(args);
    assert!(ok, "zerotrain {args:?} failed\nstdout:\n{o}\nstderr:\n{e}");
    o
}

/// Writes `text` to `dir/input.txt` and prepares it into `dir/ds` (char tokenizer).
pub fn prepare(dir: &Path, text: &str, shards: usize, val_fraction: f64) -> PathBuf {
    let txt = dir.join("input.txt");
    std::fs::write(&txt, text).unwrap();
    let ds = dir.join("ds");
    zt_ok(&[
        "data",
        "prepare",
        "--text",
        txt.to_str().unwrap(),
        "--out",
        ds.to_str().unwrap(),
        "--shards",
        &shards.to_string(),
        "--val-fraction",
        &val_fraction.to_string(),
    ]);
    ds
}

/// Token ids of `text` under the manifest's character vocabulary.
pub fn encode(m: &Manifest, text: &str) -> Vec<u32> {
    let vocab = m.vocab.as_ref().expect("char vocabulary");
    text.chars()
        .map(|c| vocab.iter().position(|v| *v == c.to_string()).unwrap() as u32)
        .collect()
}

/// Start offset of each shard's tokens in the concatenation of its split, by manifest index.
pub fn shard_starts(m: &Manifest) -> Vec<u64> {
    let mut next = [0u64; 2];
    m.shards
        .iter()
        .map(|s| {
            let k = (s.split == Split::Val) as usize;
            let start = next[k];
            next[k] += s.count;
            start
        })
        .collect()
}

pub fn hdf5_cfg(dir: &Path, sampling: Sampling) -> DataConfig {
    DataConfig {
        source: DataSource::Hdf5,
        path: dir.to_string_lossy().into_owned(),
        sampling,
        prefetch: 2,
        verify: true,
    }
}

pub fn gpt(vocab: usize, ctx: usize) -> ModelConfig {
    ModelConfig {
        kind: ModelKind::Gpt,
        vocab,
        ctx,
        ..ModelConfig::default()
    }
}

pub fn spec(
    rank: usize,
    world: usize,
    mb: usize,
    ctx: usize,
    seed: u64,
    sampling: Sampling,
) -> LoaderSpec {
    LoaderSpec {
        rank,
        world,
        micro_batch: mb,
        ctx,
        seed,
        sampling,
        split: Split::Train,
        prefetch: 2,
    }
}

/// Every token of `split` of the dataset at `ds`, in shard order.
pub fn all_tokens(ds: &Path, split: Split) -> Vec<u32> {
    let m = Manifest::load(ds).unwrap();
    m.split(split)
        .iter()
        .flat_map(|(_, e)| {
            let f = hdf5::File::open(ds.join(&e.file)).unwrap();
            f.dataset("tokens").unwrap().read_raw::<u32>().unwrap()
        })
        .collect()
}
