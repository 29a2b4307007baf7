//! Tokenizers and imported token files through the real binary: GPT-2 BPE ids equal
//! Hugging Face's (and tiktoken's) on the tokenizer files `data prepare` writes,
//! nanoGPT and llm.c token files import exactly and train under mpirun, bad token files
//! fail with one line naming the file and field, and `sample` decodes bytes and gpt2.
mod common;
mod data_common;
use data_common::{all_tokens, gpt, hdf5_cfg, spec, zt, zt_ok};
use std::path::{Path, PathBuf};
use zerotrain::config::Sampling;
use zerotrain::data::{open_source, Manifest, Split};

/// A real text, kept in the repository (the first 150 lines of Tiny Shakespeare).
fn shakespeare() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tinyshakespeare_excerpt.txt")
}

/// Unicode, digits, whitespace runs, contractions.
const TRICKY: &str = "Héllo wörld! 你好 🙂 naïve café\n  3.14159 12345678 000   spaces\t\ttabs\n\n\
    It's we're they'll I'd you've she's don't I'M ''quoted''  \n end   ";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Prepares `texts` with the gpt2 tokenizer into `out`, all train.
fn prepare_gpt2(texts: &[&Path], out: &Path) {
    let mut args = vec!["data", "prepare", "--tokenizer", "gpt2", "--out", s(out)];
    args.extend(["--val-fraction", "0", "--text"]);
    args.extend(texts.iter().map(|p| s(p)));
    zt_ok(&args);
}

#[test]
fn gpt2_prepare_writes_documents_eot_and_hf_files() {
    let tmp = tempfile::tempdir().unwrap();
    let tricky = tmp.path().join("tricky.txt");
    std::fs::write(&tricky, TRICKY).unwrap();
    // `<|endoftext|>` written in a text is text (encoded as ordinary tokens).
    let literal = tmp.path().join("literal.txt");
    std::fs::write(&literal, "a <|endoftext|> b").unwrap();
    let ds = tmp.path().join("ds");
    prepare_gpt2(&[&shakespeare(), &tricky, &literal], &ds);
    let m = Manifest::load(&ds).unwrap();
    assert_eq!(m.tokenizer.as_deref(), Some("gpt2"));
    assert_eq!((m.vocab_size, m.vocab.is_none()), (50257, true));
    assert!(m.shards.iter().all(|e| e.dtype.name() == "uint16"));
    let t = all_tokens(&ds, Split::Train);
    // An end-of-text between each two documents, none for the literal one.
    assert_eq!(t.iter().filter(|&&x| x == 50256).count(), 2);
    assert_eq!(&t[..3], &[5962, 22307, 25], "\"First Citizen:\"");
    for f in ["vocab.json", "merges.txt"] {
        assert!(ds.join(f).is_file(), "{f}");
    }
    let merges = std::fs::read_to_string(ds.join("merges.txt")).unwrap();
    assert_eq!(merges.lines().count(), 50001);
    assert!(merges.starts_with("#version: 0.2\nĠ t\n"), "{merges:.40}");
    zt_ok(&["data", "inspect", s(&ds), "--verify"]);
    // A model vocabulary rounded up (50304) reads the dataset; a smaller one does not.
    open_source(
        &hdf5_cfg(&ds, Sampling::Random),
        &gpt(50304, 16),
        spec(0, 1, 2, 16, 1, Sampling::Random),
        None,
    )
    .unwrap();
    let e = open_source(
        &hdf5_cfg(&ds, Sampling::Random),
        &gpt(50000, 16),
        spec(0, 1, 2, 16, 1, Sampling::Random),
        None,
    )
    .err()
    .unwrap();
    assert!(format!("{e:#}").contains("model.vocab is 50000"), "{e:#}");
}

#[test]
fn gpt2_ids_equal_hugging_face_and_tiktoken() {
    let Some(mut py) = common::python_or_skip("GPT-2 ids against Hugging Face", &["transformers"])
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let tricky = tmp.path().join("tricky.txt");
    std::fs::write(&tricky, TRICKY).unwrap();
    let ds = tmp.path().join("ds");
    let docs = [shakespeare(), tricky];
    prepare_gpt2(&[&docs[0], &docs[1]], &ds);
    let ours: Vec<u32> = all_tokens(&ds, Split::Train);
    // What a user hands to Hugging Face: a model trained on the dataset, exported with
    // its tokenizer.
    let ck = train_small(&ds, 50304, tmp.path(), false);
    let hf = tmp.path().join("hf");
    zt_ok(&[
        "export",
        "--checkpoint",
        &ck,
        "--format",
        "hf",
        "--out",
        s(&hf),
        "--data",
        s(&ds),
    ]);
    // Hugging Face from the files prepare wrote, by name, and from the export directory
    // (`from_pretrained`), and tiktoken (when installed) built from the same vocab.json:
    // documents joined by 50256.
    let script = r#"
import json, sys
from transformers import GPT2TokenizerFast
d, exported, docs = sys.argv[1], sys.argv[2], sys.argv[3:]
texts = [open(p, encoding="utf-8").read() for p in docs]
def joined(enc):
    out = []
    for i, t in enumerate(texts):
        out += ([50256] if i else []) + enc(t)
    return out
import transformers
# The two files by name: `vocab_file=`/`merges_file=` before transformers 5, `vocab=`/`merges=` from 5 on.
files = (dict(vocab=d + "/vocab.json", merges=d + "/merges.txt")
         if int(transformers.__version__.split(".")[0]) >= 5
         else dict(vocab_file=d + "/vocab.json", merges_file=d + "/merges.txt"))
a = GPT2TokenizerFast(**files)
assert len(a) == 50257, len(a)
b = GPT2TokenizerFast.from_pretrained(exported)
res = {"hf": joined(lambda t: a(t)["input_ids"]), "hf_dir": joined(lambda t: b(t)["input_ids"]),
       "decoded": a.decode(joined(lambda t: a(t)["input_ids"]))}
try:
    import tiktoken
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for x in range(256):
        if x not in bs:
            bs.append(x); cs.append(256 + n); n += 1
    byte_of = {chr(c): x for x, c in zip(bs, cs)}
    vocab = json.load(open(d + "/vocab.json", encoding="utf-8"))
    ranks = {bytes(byte_of[ch] for ch in tok): i for tok, i in vocab.items() if i != 50256}
    enc = tiktoken.Encoding("gpt2", pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
                            mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
    res["tiktoken"] = joined(enc.encode_ordinary)
except ImportError:
    pass
print(json.dumps(res))
"#;
    let out = py
        .arg("-c")
        .arg(script)
        .arg(s(&ds))
        .arg(s(&hf))
        .args(docs.iter().map(|p| s(p)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids = |k: &str| -> Vec<u32> {
        res[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect()
    };
    assert!(ours.len() > 1000, "{}", ours.len());
    assert_eq!(
        ids("hf"),
        ours,
        "Hugging Face GPT2TokenizerFast given vocab.json and merges.txt"
    );
    assert_eq!(
        ids("hf_dir"),
        ours,
        "GPT2TokenizerFast.from_pretrained(the export directory)"
    );
    if res.get("tiktoken").is_some() {
        assert_eq!(ids("tiktoken"), ours, "tiktoken");
    } else {
        println!("tiktoken not installed: compared with Hugging Face only");
    }
    let text = std::fs::read_to_string(&docs[0]).unwrap();
    let decoded = res["decoded"].as_str().unwrap();
    assert_eq!(decoded, format!("{text}<|endoftext|>{TRICKY}"));
}

/// Deterministic ids in `0..limit`.
fn ids(n: usize, seed: u64, limit: u32) -> Vec<u32> {
    let mut x = seed.wrapping_mul(6364136223846793005) | 1;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % limit as u64) as u32
        })
        .collect()
}

/// nanoGPT's format: little-endian uint16, no header.
fn nanogpt_bytes(t: &[u32]) -> Vec<u8> {
    t.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect()
}

/// llm.c's format: 256 little-endian int32 (magic, version, count, zeros), then the
/// tokens as little-endian uint16 (`width` 2) or uint32 (4).
fn llmc_bytes(magic: i32, version: i32, count: i32, t: &[u32], width: usize) -> Vec<u8> {
    let mut header = [0i32; 256];
    header[..3].copy_from_slice(&[magic, version, count]);
    let mut b: Vec<u8> = header.iter().flat_map(|v| v.to_le_bytes()).collect();
    for &v in t {
        b.extend_from_slice(&v.to_le_bytes()[..width]);
    }
    b
}

fn import(format: &str, files: &[&Path], out: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["data", "import", "--format", format, "--out", s(out)];
    args.extend_from_slice(extra);
    args.extend(files.iter().map(|p| s(p)));
    zt(&args)
}

/// Trains a small GPT (vocab 50304) for 3 steps on 2 ranks; returns the checkpoint dir.
/// Trains 3 steps of a small GPT on `ds` at 2 ranks, evaluating at the end when the
/// dataset has a val split (`eval`); returns the checkpoint directory.
fn train_small(ds: &Path, vocab: usize, dir: &Path, eval: bool) -> String {
    let ck = dir.join("ck").display().to_string();
    let sets = [
        "data.source=\"hdf5\"".to_string(),
        format!("data.path=\"{}\"", ds.display()),
        format!("model.vocab={vocab}"),
        "model.n_layer=1".into(),
        "model.d_model=16".into(),
        "model.ctx=16".into(),
        "train.micro_batch=2".into(),
        "train.steps=3".into(),
        format!("train.eval_every={}", if eval { 3 } else { 0 }),
        format!("checkpoint.dir=\"{ck}\""),
    ];
    let mut args = vec!["train"];
    for x in &sets {
        args.extend(["--set", x.as_str()]);
    }
    common::mpi_ok(2, &args);
    ck
}

fn sample(ck: &str, ds: &Path, prompt: &str) -> String {
    let out = common::single(&[
        "sample",
        "--checkpoint",
        ck,
        "--data",
        s(ds),
        "--prompt",
        prompt,
        "--max-new",
        "12",
    ]);
    assert!(
        out.status.success(),
        "sample: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn nanogpt_and_llmc_files_import_exactly_train_and_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, val) = (ids(3001, 1, 50257), ids(400, 2, 50257));
    let dir = tmp.path();
    // nanoGPT: train.bin + val.bin, split by name, train cut into 2 shards.
    let (nt, nv) = (dir.join("train.bin"), dir.join("val.bin"));
    std::fs::write(&nt, nanogpt_bytes(&train)).unwrap();
    std::fs::write(&nv, nanogpt_bytes(&val)).unwrap();
    let nano = dir.join("nano");
    let (ok, o, e) = import("nanogpt", &[&nt, &nv], &nano, &["--shards", "2"]);
    assert!(ok, "{o}{e}");
    let m = Manifest::load(&nano).unwrap();
    assert_eq!(
        (m.vocab_size, m.tokenizer.as_deref()),
        (50257, Some("gpt2"))
    );
    assert_eq!(m.split(Split::Train).len(), 2);
    assert!(m.shards.iter().all(|e| e.dtype.name() == "uint16"));
    assert_eq!(all_tokens(&nano, Split::Train), train);
    assert_eq!(all_tokens(&nano, Split::Val), val);
    assert!(nano.join("vocab.json").is_file() && nano.join("merges.txt").is_file());
    zt_ok(&["data", "inspect", s(&nano), "--verify"]);

    // llm.c version 1 (GPT-2, uint16): two train files concatenated in order.
    let (lt1, lt2, lv) = (
        dir.join("shakes_train_000001.bin"),
        dir.join("shakes_train_000002.bin"),
        dir.join("shakes_val_000000.bin"),
    );
    let (a, b) = train.split_at(1000);
    std::fs::write(&lt1, llmc_bytes(20240520, 1, a.len() as i32, a, 2)).unwrap();
    std::fs::write(&lt2, llmc_bytes(20240520, 1, b.len() as i32, b, 2)).unwrap();
    std::fs::write(&lv, llmc_bytes(20240520, 1, val.len() as i32, &val, 2)).unwrap();
    let llmc = dir.join("llmc");
    let (ok, o, e) = import("llmc", &[&lt1, &lt2, &lv], &llmc, &["--shards", "3"]);
    assert!(ok, "{o}{e}");
    assert_eq!(all_tokens(&llmc, Split::Train), train);
    assert_eq!(all_tokens(&llmc, Split::Val), val);
    assert_eq!(
        Manifest::load(&llmc).unwrap().tokenizer.as_deref(),
        Some("gpt2")
    );
    zt_ok(&["data", "inspect", s(&llmc), "--verify"]);

    // llm.c version 7 (LLaMA-3, uint32), --split given: imported, not trained here.
    let big = ids(500, 3, 128256);
    let l3 = dir.join("llama.bin");
    std::fs::write(&l3, llmc_bytes(20240801, 7, big.len() as i32, &big, 4)).unwrap();
    let l3ds = dir.join("l3");
    let (ok, o, e) = import("llmc", &[&l3], &l3ds, &["--split", "train"]);
    assert!(ok, "{o}{e}");
    let m = Manifest::load(&l3ds).unwrap();
    assert_eq!(
        (m.vocab_size, m.tokenizer.as_deref()),
        (128256, Some("llama3"))
    );
    assert_eq!(m.shards[0].dtype.name(), "uint32");
    assert_eq!(all_tokens(&l3ds, Split::Train), big);

    // Both GPT-2 imports train under mpirun; sample decodes the gpt2 dataset.
    let ck = train_small(&nano, 50304, &dir.join("run_nano"), true);
    train_small(&llmc, 50304, &dir.join("run_llmc"), true);
    let text = sample(&ck, &nano, "Hello world");
    assert!(
        text.starts_with("Hello world") && text.len() > 12,
        "{text:?}"
    );
}

#[test]
fn sample_decodes_a_bytes_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let txt = tmp.path().join("t.txt");
    std::fs::write(&txt, "naïve café ".repeat(400)).unwrap();
    let ds = tmp.path().join("b");
    zt_ok(&[
        "data",
        "prepare",
        "--tokenizer",
        "bytes",
        "--text",
        s(&txt),
        "--out",
        s(&ds),
    ]);
    let ck = train_small(&ds, 256, tmp.path(), true);
    let text = sample(&ck, &ds, "café");
    assert!(text.starts_with("café") && text.len() > 5, "{text:?}");
}

/// Runs an import that must fail: one line on stderr naming `file` and `field`.
fn refused(format: &str, file: &Path, extra: &[&str], field: &str) {
    let out = file.with_extension("ds");
    let (ok, o, e) = import(format, &[file], &out, extra);
    assert!(!ok, "{file:?} was accepted: {o}");
    let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{e}");
    assert!(
        e.contains(s(file)) && e.contains(field) && !e.contains("panicked"),
        "{field}: {e}"
    );
    assert!(!out.join("manifest.json").exists());
}

#[test]
fn bad_token_files_are_refused_with_the_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let t = ids(20, 4, 1000);
    let w = |name: &str, b: Vec<u8>| {
        let p = d.join(name);
        std::fs::write(&p, b).unwrap();
        p
    };
    let p = w("magic_train.bin", llmc_bytes(1234, 1, 20, &t, 2));
    refused("llmc", &p, &[], "header[0] (magic): expected 20240520");
    refused("llmc", &p, &[], "found 1234");
    let p = w("version_train.bin", llmc_bytes(20240520, 2, 20, &t, 2));
    refused(
        "llmc",
        &p,
        &[],
        "header[1] (version): expected 1 for magic 20240520, found 2",
    );
    let p = w("count_train.bin", llmc_bytes(20240520, 1, 21, &t, 2));
    refused(
        "llmc",
        &p,
        &[],
        "header[2] (token count): 21 tokens of 2 bytes need a file of 1066 bytes, found 1064",
    );
    let p = w("short_train.bin", vec![0; 100]);
    refused("llmc", &p, &[], "header: expected 1024 bytes");
    let p = w("train.bin", vec![0; 41]);
    refused(
        "nanogpt",
        &p,
        &[],
        "file size: expected an even number of bytes",
    );
    let mut big = t.clone();
    big[7] = 60000;
    let p = w("id_train.bin", nanogpt_bytes(&big));
    refused("nanogpt", &p, &[], "token id 60000 at position 7");
    let p = w("small_train.bin", nanogpt_bytes(&t));
    refused(
        "nanogpt",
        &p,
        &["--vocab-size", "100"],
        "valid ids are 0..100",
    );
    let p = w("tokens.bin", nanogpt_bytes(&t));
    refused("nanogpt", &p, &[], "split: the file name says neither");
    // Accepted with the split given.
    let (ok, _, e) = import("nanogpt", &[&p], &d.join("ok"), &["--split", "train"]);
    assert!(ok, "{e}");
}
