//! The data tools through the real binary: files readable by h5py, datasets written by
//! the documented h5py code accepted, synthetic tasks reproducible and held out.
mod common;
mod data_common;
use data_common::*;
use std::collections::HashSet;
use std::path::Path;
use zerotrain::config::{ModelConfig, ModelKind, Sampling};
use zerotrain::data::{addition_val_problems, open_source, Batch, Manifest, Split};

/// Runs a Python script with h5py (the caller checked `have_h5py`).
fn python(script: &str, args: &[&str]) -> String {
    let out = common::python(&["h5py", "numpy"])
        .expect("python3 with h5py")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "python failed\nstdout:\n{o}\nstderr:\n{e}"
    );
    o.into_owned()
}

/// The ```python blocks of docs/data-format.md, in order.
fn doc_python_blocks() -> Vec<String> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/data-format.md"))
            .unwrap();
    doc.split("```python\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_string())
        .collect()
}

#[test]
fn h5py_reads_prepared_shards() {
    if common::python_or_skip("h5py interoperability", &["h5py", "numpy"]).is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let text = make_text(5000, 4) + "ünïcödé ✓\n";
    let ds = prepare(tmp.path(), &text, 3, 0.2);
    let script = r#"
import json, sys, zlib, h5py
d = sys.argv[1]
m = json.load(open(d + "/manifest.json"))
out = {"train": "", "val": ""}
for s in m["shards"]:
    with h5py.File(d + "/" + s["file"], "r") as f:
        t = f["tokens"][:]
    assert t.dtype.name == s["dtype"] == "uint16", t.dtype
    assert t.shape == (s["count"],)
    assert format(zlib.crc32(t.astype("<u2").tobytes()), "08x") == s["crc32"], s["file"]
    out[s["split"]] += "".join(m["vocab"][i] for i in t)
sys.stdout.write(out["train"] + out["val"])
"#;
    let decoded = python(script, &[ds.to_str().unwrap()]);
    assert_eq!(decoded, text);
}

#[test]
fn datasets_written_by_the_documented_h5py_code_are_accepted() {
    if common::python_or_skip("h5py interoperability", &["h5py", "numpy"]).is_none() {
        return;
    }
    let blocks = doc_python_blocks();
    assert_eq!(
        blocks.len(),
        2,
        "docs/data-format.md should hold two python examples"
    );
    let tmp = tempfile::tempdir().unwrap();
    let text = make_text(3001, 5);
    // `zerotrain data prepare` with the same split gives the very same shards.
    let ours = prepare(tmp.path(), &text, 2, 0.1);
    let py = tmp.path().join("py");
    let txt = tmp.path().join("input.txt");
    python(&blocks[0], &[py.to_str().unwrap(), txt.to_str().unwrap()]);
    zt_ok(&["data", "inspect", py.to_str().unwrap(), "--verify"]);
    assert_eq!(
        Manifest::load(&py).unwrap().shards,
        Manifest::load(&ours).unwrap().shards
    );
    let m = Manifest::load(&py).unwrap();
    let mut src = open_source(
        &hdf5_cfg(&py, Sampling::Epoch),
        &gpt(m.vocab_size, 32),
        spec(0, 1, 4, 32, 1, Sampling::Epoch),
        None,
    )
    .unwrap();
    src.next_batch().unwrap();

    let cls = tmp.path().join("cls");
    python(&blocks[1], &[cls.to_str().unwrap()]);
    let report = zt_ok(&["data", "inspect", cls.to_str().unwrap(), "--verify"]);
    assert!(report.contains("8 features, 3 classes"), "{report}");
    let mlp = ModelConfig {
        kind: ModelKind::Mlp,
        inputs: 8,
        classes: 3,
        ..ModelConfig::default()
    };
    let mut sp = spec(0, 1, 10, 0, 1, Sampling::Epoch);
    sp.split = Split::Val;
    let mut src = open_source(&hdf5_cfg(&cls, Sampling::Epoch), &mlp, sp, None).unwrap();
    let Batch::Features { x, y, .. } = src.next_batch().unwrap() else {
        panic!()
    };
    // The example's labels: (x0 > 0) + (x1 > 0).
    for (row, &c) in x.chunks(8).zip(&y) {
        assert_eq!(c, (row[0] > 0.0) as u32 + (row[1] > 0.0) as u32);
    }
}

fn synth(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["data", "synth", "--out", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    zt_ok(&args);
    std::fs::read_to_string(dir.join("manifest.json")).unwrap()
}

#[test]
fn synth_addition_is_reproducible_and_held_out() {
    let tmp = tempfile::tempdir().unwrap();
    let a = &[
        "--task",
        "addition",
        "--count",
        "3000",
        "--val-count",
        "200",
        "--digits",
        "2",
        "--shards",
        "2",
    ];
    let m1 = synth(
        &tmp.path().join("a1"),
        &[a.as_slice(), &["--seed", "5"]].concat(),
    );
    let m2 = synth(
        &tmp.path().join("a2"),
        &[a.as_slice(), &["--seed", "5"]].concat(),
    );
    let m3 = synth(
        &tmp.path().join("a3"),
        &[a.as_slice(), &["--seed", "6"]].concat(),
    );
    assert_eq!(m1, m2, "same seed, same dataset");
    assert_ne!(m1, m3, "another seed, another dataset");
    let ds = tmp.path().join("a1");
    let val = addition_val_problems(&ds).unwrap();
    assert_eq!(val.len(), 200);
    let parse = |p: &str| -> (u64, u64) {
        let (a, b) = p.trim_end_matches('=').split_once('+').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    };
    let held: HashSet<(u64, u64)> = val.iter().map(|(p, _)| parse(p)).collect();
    assert_eq!(held.len(), 200, "val problems are distinct");
    for (p, ans) in &val {
        let (a, b) = parse(p);
        assert!(a < 100 && b < 100);
        assert_eq!(ans.parse::<u64>().unwrap(), a + b, "{p}{ans}");
    }
    let m = Manifest::load(&ds).unwrap();
    let vocab = m.vocab.unwrap();
    let train: String = all_tokens(&ds, Split::Train)
        .iter()
        .map(|&t| vocab[t as usize].as_str())
        .collect();
    let lines: Vec<&str> = train.lines().collect();
    assert_eq!(lines.len(), 3000);
    for l in lines {
        let (p, ans) = l.split_once('=').unwrap();
        let (a, b) = parse(p);
        assert_eq!(ans.parse::<u64>().unwrap(), a + b);
        assert!(!held.contains(&(a, b)), "val problem {l} appears in train");
    }
    // Not an addition dataset: a clear error.
    let cls = tmp.path().join("c");
    synth(
        &cls,
        &["--task", "classify", "--count", "50", "--val-count", "5"],
    );
    let e = format!("{:#}", addition_val_problems(&cls).unwrap_err());
    assert!(e.contains("not an addition dataset"), "{e}");
}

/// The text of a split, decoded through the manifest's vocabulary.
fn split_text(ds: &Path, split: Split) -> String {
    let vocab = Manifest::load(ds).unwrap().vocab.unwrap();
    all_tokens(ds, split)
        .iter()
        .map(|&t| vocab[t as usize].as_str())
        .collect()
}

#[test]
fn synth_addition_reverse_sum_is_recorded_written_and_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let a = [
        "--task",
        "addition",
        "--count",
        "2000",
        "--val-count",
        "200",
        "--digits",
        "2",
    ];
    let (plain, rev, rev_pad) = (
        tmp.path().join("p"),
        tmp.path().join("r"),
        tmp.path().join("rp"),
    );
    synth(&plain, &a);
    let m = synth(&rev, &[a.as_slice(), &["--reverse-sum"]].concat());
    assert!(m.contains("\"reverse_sum\": true"), "{m}");
    synth(
        &rev_pad,
        &[a.as_slice(), &["--reverse-sum", "--pad"]].concat(),
    );
    assert_eq!(Manifest::load(&plain).unwrap().reverse_sum, Some(false));
    assert_eq!(Manifest::load(&rev).unwrap().reverse_sum, Some(true));
    let parse = |p: &str| -> (u64, u64) {
        let (a, b) = p.trim_end_matches('=').split_once('+').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    };
    // Train and val lines write the sum least-significant digit first: "48+39=78".
    let mut differs = 0;
    for split in [Split::Train, Split::Val] {
        for l in split_text(&rev, split).lines() {
            let (p, ans) = l.split_once('=').unwrap();
            let (a, b) = parse(p);
            let read: String = ans.chars().rev().collect();
            assert_eq!(read, (a + b).to_string(), "{l}");
            differs += (ans != read) as usize;
        }
    }
    assert!(differs > 1000, "most sums are not palindromes: {differs}");
    // Padded: every line has one shape, "03+06=900".
    for l in split_text(&rev_pad, Split::Train).lines() {
        let (p, ans) = l.split_once('=').unwrap();
        assert!(p.len() == 5 && ans.len() == 3, "{l}");
        let read: String = ans.chars().rev().collect();
        let (a, b) = parse(p);
        assert_eq!(read, format!("{:03}", a + b), "{l}");
    }
    // The val problems read back most-significant digit first, the same problems as
    // the unreversed dataset of the same seed.
    let val = addition_val_problems(&rev).unwrap();
    assert_eq!(val, addition_val_problems(&plain).unwrap());
    for (p, ans) in &val {
        let (a, b) = parse(p);
        assert_eq!(ans, &(a + b).to_string(), "{p}{ans}");
    }
    let val_pad = addition_val_problems(&rev_pad).unwrap();
    assert!(val_pad.iter().all(|(p, ans)| {
        let (a, b) = parse(p);
        *ans == format!("{:03}", a + b)
    }));
    // A manifest written before the field existed: not reversed, answers as written.
    let path = rev.join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let old = text.replace("  \"reverse_sum\": true,\n", "");
    assert_ne!(old, text);
    std::fs::write(&path, old).unwrap();
    assert_eq!(Manifest::load(&rev).unwrap().reverse_sum, None);
    let as_written = addition_val_problems(&rev).unwrap();
    assert!(as_written
        .iter()
        .zip(&val)
        .all(|(w, v)| w.1.chars().rev().collect::<String>() == v.1));
}

#[test]
fn synth_classify_is_reproducible_and_labelled() {
    let tmp = tempfile::tempdir().unwrap();
    let a = [
        "--task",
        "classify",
        "--count",
        "400",
        "--val-count",
        "40",
        "--features",
        "6",
        "--classes",
        "4",
        "--seed",
        "3",
    ];
    let m1 = synth(&tmp.path().join("c1"), &a);
    assert_eq!(m1, synth(&tmp.path().join("c2"), &a));
    let ds = tmp.path().join("c1");
    let f = hdf5::File::open(ds.join("train_000.h5")).unwrap();
    assert_eq!(f.dataset("x").unwrap().shape(), vec![400, 6]);
    let y = f.dataset("y").unwrap().read_raw::<u32>().unwrap();
    let classes: HashSet<u32> = y.iter().copied().collect();
    assert!(classes.iter().all(|&c| c < 4));
    assert!(
        classes.len() >= 3,
        "the teacher should use most classes: {classes:?}"
    );
    zt_ok(&["data", "inspect", ds.to_str().unwrap(), "--verify"]);
}

#[test]
fn bytes_tokenizer_and_non_utf8_text() {
    let tmp = tempfile::tempdir().unwrap();
    let raw: Vec<u8> = (0..2000u32).map(|i| (i * 7 % 256) as u8).collect();
    let p = tmp.path().join("raw.bin");
    std::fs::write(&p, &raw).unwrap();
    let out = tmp.path().join("b");
    let (ok, _, err) = zt(&[
        "data",
        "prepare",
        "--text",
        p.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("raw.bin") && err.contains("not UTF-8"),
        "{err}"
    );
    zt_ok(&[
        "data",
        "prepare",
        "--text",
        p.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--tokenizer",
        "bytes",
        "--val-fraction",
        "0",
    ]);
    let m = Manifest::load(&out).unwrap();
    assert_eq!((m.vocab_size, m.vocab.is_none()), (256, true));
    let t = all_tokens(&out, Split::Train);
    assert_eq!(t, raw.iter().map(|&b| b as u32).collect::<Vec<_>>());
}

#[test]
fn bench_reports_throughput() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = prepare(tmp.path(), &make_text(4000, 6), 2, 0.1);
    let out = zt_ok(&[
        "data",
        "bench",
        ds.to_str().unwrap(),
        "--ctx",
        "32",
        "--micro-batch",
        "4",
        "--batches",
        "50",
    ]);
    let rate: f64 = out
        .split(" tokens/s")
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rate > 0.0, "{out}");
}
