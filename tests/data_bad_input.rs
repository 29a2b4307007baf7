//! Bad datasets: each must give a clear error naming the file (and position), from the
//! real binary (`data inspect`) and from the loader, and HDF5 must not spray its stack.
mod data_common;
use data_common::*;
use std::path::{Path, PathBuf};
use zerotrain::config::Sampling;
use zerotrain::data::{open_sampler, open_source, Manifest, Split};

const CTX: usize = 8;

/// A fresh 4-shard dataset of 1800 train and 200 val tokens.
fn dataset() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let ds = prepare(tmp.path(), &make_text(2000, 9), 4, 0.1);
    (tmp, ds)
}

fn inspect_err(ds: &Path, verify: bool) -> String {
    let d = ds.to_str().unwrap();
    let args: Vec<&str> = if verify {
        vec!["data", "inspect", d, "--verify"]
    } else {
        vec!["data", "inspect", d]
    };
    let (ok, out, err) = zt(&args);
    assert!(!ok, "inspect should fail\nstdout:\n{out}");
    assert!(
        !err.contains("HDF5-DIAG"),
        "HDF5 error stack leaked to stderr:\n{err}"
    );
    err
}

fn loader_err(ds: &Path, ctx: usize, split: Split) -> String {
    let m = Manifest::load(ds).map(|m| m.vocab_size).unwrap_or(64);
    let mut sp = spec(0, 1, 2, ctx, 1, Sampling::Epoch);
    sp.split = split;
    match open_source(&hdf5_cfg(ds, Sampling::Epoch), &gpt(m, ctx), sp, None) {
        Ok(_) => panic!("loader accepted a bad dataset"),
        Err(e) => format!("{e:#}"),
    }
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error message lacks {p:?}:\n{msg}");
    }
}

fn read_tokens(path: &Path) -> Vec<u16> {
    hdf5::File::open(path)
        .unwrap()
        .dataset("tokens")
        .unwrap()
        .read_raw::<u16>()
        .unwrap()
}

/// Replaces a shard file by one holding `tokens` with HDF5 type `T`.
fn rewrite<T: hdf5::H5Type>(path: &Path, tokens: &[T]) {
    std::fs::remove_file(path).unwrap();
    let f = hdf5::File::create(path).unwrap();
    f.new_dataset_builder()
        .with_data(tokens)
        .create("tokens")
        .unwrap();
}

fn edit_manifest(ds: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = ds.join("manifest.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
}

#[test]
fn missing_shard() {
    let (_t, ds) = dataset();
    std::fs::remove_file(ds.join("train_001.h5")).unwrap();
    assert_has(&inspect_err(&ds, false), &["train_001.h5", "missing"]);
    assert_has(
        &loader_err(&ds, CTX, Split::Train),
        &["train_001.h5", "missing"],
    );
}

#[test]
fn manifest_count_disagrees_with_shard() {
    let (_t, ds) = dataset();
    edit_manifest(&ds, |v| v["shards"][2]["count"] = serde_json::json!(455));
    assert_has(
        &inspect_err(&ds, false),
        &["train_002.h5", "450 elements", "count = 455"],
    );
    assert_has(
        &loader_err(&ds, CTX, Split::Train),
        &["train_002.h5", "count"],
    );
}

#[test]
fn wrong_dtype() {
    let (_t, ds) = dataset();
    let p = ds.join("train_000.h5");
    let floats: Vec<f32> = read_tokens(&p).iter().map(|&t| t as f32).collect();
    rewrite(&p, &floats);
    assert_has(&inspect_err(&ds, false), &["train_000.h5", "dtype"]);
    assert_has(
        &loader_err(&ds, CTX, Split::Train),
        &["train_000.h5", "dtype"],
    );
    // A wider integer than the manifest says is refused too.
    let wide: Vec<u32> = floats.iter().map(|&t| t as u32).collect();
    rewrite(&p, &wide);
    assert_has(&inspect_err(&ds, false), &["train_000.h5", "dtype"]);
}

#[test]
fn truncated_or_garbage_hdf5() {
    let (_t, ds) = dataset();
    let p = ds.join("train_003.h5");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    assert_has(&inspect_err(&ds, false), &["train_003.h5", "HDF5"]);
    assert_has(&loader_err(&ds, CTX, Split::Train), &["train_003.h5"]);
    std::fs::write(&p, vec![0x5au8; bytes.len()]).unwrap();
    assert_has(&inspect_err(&ds, false), &["train_003.h5", "HDF5"]);
}

#[test]
fn corrupted_values_fail_the_checksum() {
    let (_t, ds) = dataset();
    zt_ok(&["data", "inspect", ds.to_str().unwrap(), "--verify"]);
    let p = ds.join("train_002.h5");
    let mut t = read_tokens(&p);
    t.swap(10, 20);
    assert_ne!(t[10], t[20], "test text must differ at 10 and 20");
    rewrite(&p, &t);
    zt_ok(&["data", "inspect", ds.to_str().unwrap()]);
    assert_has(
        &inspect_err(&ds, true),
        &["train_002.h5", "checksum mismatch"],
    );
}

#[test]
fn token_outside_vocabulary() {
    let (_t, ds) = dataset();
    let m = Manifest::load(&ds).unwrap();
    let bad = m.vocab_size as u16 + 5;
    let p = ds.join("train_001.h5");
    let mut t = read_tokens(&p);
    t[123] = bad;
    rewrite(&p, &t);
    let msg = format!("token id {bad} at position 123");
    assert_has(&inspect_err(&ds, true), &["train_001.h5", &msg]);
    // Training with data.verify = false: the batch whose window covers position 123 of
    // shard 1 fails, not earlier. With data.verify (the default): the first batch that
    // reads shard 1, whose check reads it all.
    let sp = spec(0, 1, 2, CTX, 1, Sampling::Epoch);
    let (_, mut sampler) = open_sampler(&ds, &sp, None).unwrap();
    let refs: Vec<_> = (0..200).map(|_| sampler.next_refs()).collect();
    let first = |covers: &dyn Fn(u64) -> bool| {
        refs.iter()
            .position(|b| b.iter().any(|r| r.shard == 1 && covers(r.offset)))
            .unwrap()
    };
    let g_bad = first(&|o| o <= 123 && 123 < o + CTX as u64 + 1);
    let g_first = first(&|_| true);
    assert!(
        g_first < g_bad,
        "the test needs shard 1 read before position 123"
    );
    for (verify, g_fail) in [(false, g_bad), (true, g_first)] {
        let mut cfg = hdf5_cfg(&ds, Sampling::Epoch);
        cfg.verify = verify;
        let (g, e) = first_failure(&cfg, &gpt(m.vocab_size, CTX), sp.clone());
        assert_eq!(g, g_fail, "verify {verify}: {e}");
        assert_has(
            &e,
            &[
                "train_001.h5",
                &msg,
                &format!("global micro-batch {g_fail}"),
            ],
        );
    }
}

/// The global micro-batch at which the loader first fails (0 when opening it fails: it
/// reads the first batch), with the error; and a failed loader stays failed.
fn first_failure(
    cfg: &zerotrain::config::DataConfig,
    model: &zerotrain::config::ModelConfig,
    sp: zerotrain::data::LoaderSpec,
) -> (usize, String) {
    let mut src = match open_source(cfg, model, sp, None) {
        Ok(src) => src,
        Err(e) => return (0, format!("{e:#}")),
    };
    // The first batch was read when the source opened.
    for g in 0..1000 {
        if let Err(e) = src.next_batch() {
            assert!(src.next_batch().is_err(), "a failed loader stays failed");
            return (g, format!("{e:#}"));
        }
    }
    panic!("the loader never failed");
}

#[test]
fn empty_split() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = prepare(tmp.path(), &make_text(500, 1), 2, 0.0);
    assert_has(
        &loader_err(&ds, CTX, Split::Val),
        &["split \"val\" has no shards"],
    );
    // Too few windows for one global batch (epoch mode) is an error, not a hang.
    let sp = spec(0, 4, 64, CTX, 1, Sampling::Epoch);
    let e = format!("{:#}", open_sampler(&ds, &sp, None).err().unwrap());
    assert_has(&e, &["fewer than one global batch"]);
}

#[test]
fn ctx_longer_than_a_shard() {
    let (_t, ds) = dataset();
    assert_has(
        &loader_err(&ds, 1000, Split::Train),
        &["train_000.h5", "ctx + 1 = 1001"],
    );
}

#[test]
fn bad_manifest_and_model_mismatch() {
    let (_t, ds) = dataset();
    let m = Manifest::load(&ds).unwrap();
    let e = open_source(
        &hdf5_cfg(&ds, Sampling::Random),
        &gpt(m.vocab_size - 1, CTX),
        spec(0, 1, 2, CTX, 1, Sampling::Random),
        None,
    )
    .err()
    .unwrap();
    assert_has(&format!("{e:#}"), &["manifest.json", "model.vocab"]);
    std::fs::write(ds.join("manifest.json"), "{ not json").unwrap();
    assert_has(
        &inspect_err(&ds, false),
        &["manifest.json", "not a valid manifest"],
    );
    std::fs::remove_file(ds.join("manifest.json")).unwrap();
    assert_has(&inspect_err(&ds, false), &["manifest.json"]);
    edit_manifest_fresh(&ds);
}

/// A manifest naming a file outside the dataset directory is refused.
fn edit_manifest_fresh(ds: &Path) {
    let mut m = Manifest::new(zerotrain::data::Kind::Tokens);
    m.vocab_size = 10;
    m.shards.push(zerotrain::data::ShardEntry {
        file: "../escape.h5".into(),
        split: Split::Train,
        count: 10,
        dtype: zerotrain::data::IntType::Uint16,
        crc32: 0,
    });
    m.save(ds).unwrap();
    assert_has(
        &inspect_err(ds, false),
        &["manifest.json", "relative path inside"],
    );
}
