//! Hugging Face interop (`export --format hf`, `model.init = "hf:DIR"`), through the
//! real binary under mpirun: a GPT trained at 2 ranks, ZeRO stage 3, exported; loaded by
//! transformers' `GPT2LMHeadModel` with no missing or unexpected keys and the same
//! logits; trained from at another world size and stage and exported again bit for bit;
//! bf16 and sharded exports; bad inputs failing on every rank with the file or tensor
//! named. The transformers parts skip without Python; the round trips need none.
mod ckpt_common;
mod common;

use ckpt_common::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A checkpoint of the small GPT (n_layer 2, d_model 32, 2 heads, ctx 16, vocab 64 of
/// the synthetic data) after 3 steps at 2 ranks, stage 3; made once per test binary.
fn trained() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // In cargo's scratch directory for integration tests (under target/): a static is
        // never dropped, so a TempDir here would be left in /tmp.
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hf_interop");
        let _ = std::fs::remove_dir_all(&dir);
        let ck = dir.join("ck");
        train_ok(
            2,
            &dir.join("m.jsonl"),
            &sets(&[
                "zero.stage=3",
                "train.steps=3",
                &format!("checkpoint.dir={}", ck.display()),
            ]),
        );
        ck
    })
}

fn run_ok(args: &[&str]) -> String {
    let o = common::single(args);
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// `zerotrain export --format hf` of `ck` into `out` with `extra` flags.
fn export(ck: &Path, out: &Path, extra: &[&str]) -> String {
    let (c, o) = (ck.display().to_string(), out.display().to_string());
    let mut a = vec!["export", "--checkpoint", &c, "--format", "hf", "--out", &o];
    a.extend(extra);
    run_ok(&a)
}

/// Tensor name -> (dtype, shape, bytes) of an export directory, single or sharded.
fn tensors(dir: &Path) -> HashMap<String, (String, Vec<usize>, Vec<u8>)> {
    let mut files = vec![];
    for e in std::fs::read_dir(dir).expect("export dir") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "safetensors") {
            files.push(p);
        }
    }
    let mut all = HashMap::new();
    for f in files {
        let bytes = std::fs::read(&f).expect("read");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        for (name, v) in st.tensors() {
            let d = format!("{:?}", v.dtype());
            all.insert(name, (d, v.shape().to_vec(), v.data().to_vec()));
        }
    }
    all
}

/// Trains 1 step at lr 0 (the parameters stay as loaded: AdamW moves them by lr times a
/// finite update) from `init` at `np` ranks and `stage`, and returns the checkpoint.
fn train_from(init: &Path, np: usize, stage: u8, dir: &Path) -> PathBuf {
    let ck = dir.join(format!("from-{np}-{stage}"));
    train_ok(
        np,
        &dir.join(format!("m-{np}-{stage}.jsonl")),
        &sets(&[
            &format!("model.init=hf:{}", init.display()),
            &format!("zero.stage={stage}"),
            "train.steps=1",
            "train.lr=0",
            "train.min_lr=0",
            &format!("checkpoint.dir={}", ck.display()),
        ]),
    );
    ck
}

#[test]
fn round_trip_through_model_init_is_bit_identical_at_another_world_and_stage() {
    let tmp = common::tempdir();
    let a = tmp.path().join("a");
    export(trained(), &a, &[]);
    let ck = train_from(&a, 3, 2, tmp.path());
    let b = tmp.path().join("b");
    export(&ck, &b, &[]);
    let (fa, fb) = (a.join("model.safetensors"), b.join("model.safetensors"));
    assert_eq!(std::fs::read(&fa).unwrap(), std::fs::read(&fb).unwrap());
    // The sharded fp32 export imports to the same parameters (at 1 rank, stage 0).
    let s = tmp.path().join("sharded");
    export(trained(), &s, &["--max-shard-size", "20KB"]);
    assert!(s.join("model.safetensors.index.json").is_file());
    let ck = train_from(&s, 1, 0, tmp.path());
    let c = tmp.path().join("c");
    export(&ck, &c, &[]);
    assert_eq!(
        std::fs::read(&fa).unwrap(),
        std::fs::read(c.join("model.safetensors")).unwrap()
    );
    // As GPT-2's own hub files: names without the prefix, the causal-mask buffers, and
    // an lm_head.weight equal to wte.weight.
    let bytes = std::fs::read(&fa).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mask = vec![0u8; 16 * 16 * 4];
    let mut views: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n.trim_start_matches("transformer.").to_string(), v))
        .collect();
    let wte = st.tensor("transformer.wte.weight").unwrap();
    views.push(("lm_head.weight".into(), wte));
    for l in 0..2 {
        let buf = safetensors::tensor::TensorView::new(
            safetensors::Dtype::F32,
            vec![1, 1, 16, 16],
            &mask,
        );
        views.push((format!("h.{l}.attn.bias"), buf.unwrap()));
    }
    let hub = tmp.path().join("hub");
    std::fs::create_dir(&hub).unwrap();
    safetensors::serialize_to_file(views, None, &hub.join("model.safetensors")).unwrap();
    let ck = train_from(&hub, 1, 1, tmp.path());
    let d = tmp.path().join("d");
    export(&ck, &d, &[]);
    assert_eq!(
        std::fs::read(&fa).unwrap(),
        std::fs::read(d.join("model.safetensors")).unwrap()
    );
    // bf16 and fp16 stored tensors widen to f32 exactly, so a half export of a run
    // started from a half export holds the same values (bf16: 2 ranks, stage 3; fp16: 2
    // ranks, stage 1). Equal as numbers, not always as bits: fp16 rounds a tiny
    // negative bias to -0, and the lr-0 step's `p - 0 * u` with u < 0 is -0 + 0 = +0
    // (IEEE), so the sign of a zero may change; every other value must be bit-identical.
    for (dtype, stage) in [("bf16", 3), ("fp16", 1)] {
        let h = tmp.path().join(dtype);
        export(trained(), &h, &["--dtype", dtype]);
        let ck = train_from(&h, 2, stage, tmp.path());
        let h2 = tmp.path().join(format!("{dtype}-again"));
        export(&ck, &h2, &["--dtype", dtype]);
        let (a, b) = (tensors(&h), tensors(&h2));
        assert_eq!(a.len(), b.len(), "{dtype}: tensor count");
        // A half value's bits with the sign of zero cleared.
        let bits = |t: &[u8]| -> Vec<u16> {
            t.chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .map(|v| if v == 0x8000 { 0 } else { v })
                .collect()
        };
        for (name, (d, shape, data)) in &a {
            let (d2, shape2, data2) = &b[name];
            assert_eq!((d, shape), (d2, shape2), "{dtype}: {name}");
            assert!(bits(data) == bits(data2), "{dtype}: {name} differs");
        }
    }
}

#[test]
fn sharded_export_holds_the_single_files_tensors() {
    let tmp = common::tempdir();
    let (one, many) = (tmp.path().join("one"), tmp.path().join("many"));
    export(trained(), &one, &[]);
    let said = export(trained(), &many, &["--max-shard-size", "20KB"]);
    // 28 fp32 tensors of 28032 parameters (112 kB) in files of at most 20 kB.
    let n = said.matches("-of-").count();
    assert!(n >= 6, "{said}");
    let shards: Vec<_> = (1..=n)
        .map(|i| many.join(format!("model-{i:05}-of-{n:05}.safetensors")))
        .collect();
    assert!(shards.iter().all(|p| p.is_file()), "{said}");
    assert!(!many.join("model.safetensors").exists());
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(many.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let (t1, tm) = (tensors(&one), tensors(&many));
    assert_eq!(t1, tm);
    let total: usize = t1.values().map(|t| t.2.len()).sum();
    assert_eq!(index["metadata"]["total_size"], total);
    let map = index["weight_map"].as_object().unwrap();
    assert_eq!(map.len(), t1.len());
    for (name, file) in map {
        let bytes = std::fs::read(many.join(file.as_str().unwrap())).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert!(st.tensor(name).is_ok(), "{name} not in {file}");
    }
    // Every file under the limit but those holding one tensor only.
    for p in &shards {
        let bytes = std::fs::read(p).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let data: usize = st.tensors().iter().map(|t| t.1.data().len()).sum();
        assert!(data <= 20_000 || st.len() == 1, "{}", p.display());
    }
}

#[test]
fn transformers_loads_the_exports_with_zerotrains_logits() {
    let Some(mut py) = common::python_or_skip(
        "transformers_loads_the_exports_with_zerotrains_logits",
        &["torch", "transformers", "safetensors"],
    ) else {
        return;
    };
    let tmp = common::tempdir();
    let (fp32, bf16, many) = (
        tmp.path().join("fp32"),
        tmp.path().join("bf16"),
        tmp.path().join("many"),
    );
    export(trained(), &fp32, &[]);
    export(trained(), &bf16, &["--dtype", "bf16"]);
    export(trained(), &many, &["--max-shard-size", "20KB"]);
    // Two rows of 16 tokens (ctx) below the vocabulary of 64.
    let rows: Vec<String> = [(1u32, 7u32), (5, 11)]
        .iter()
        .map(|&(a, b)| {
            (0..16)
                .map(|i| ((a + b * i * i) % 64).to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    let c = trained().display().to_string();
    let logits = run_ok(&[
        "logits",
        "--checkpoint",
        &c,
        "--tokens",
        &rows[0],
        "--tokens",
        &rows[1],
    ]);
    let logits_file = tmp.path().join("zerotrain_logits.json");
    std::fs::write(&logits_file, logits).unwrap();
    let script = r#"
import json, sys, torch
from transformers import GPT2LMHeadModel, GPT2Config
fp32, bf16, many, logits_file = sys.argv[1:5]
def load(d, **kw):
    m, info = GPT2LMHeadModel.from_pretrained(d, output_loading_info=True, **kw)
    for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        assert not info[k], (d, k, info[k])
    return m.eval()
m = load(fp32)
cfg = m.config
assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_positions, cfg.vocab_size) == (2, 2, 32, 16, 64), cfg
assert cfg.activation_function == "gelu_new" and cfg.layer_norm_epsilon == 1e-5
assert cfg.bos_token_id is None and cfg.eos_token_id is None
assert m.lm_head.weight.data_ptr() == m.transformer.wte.weight.data_ptr(), "head not tied"
z = torch.tensor(json.load(open(logits_file))["logits"])
rows = torch.tensor([[int(t) for t in r.split(",")] for r in sys.argv[5:]])
with torch.no_grad():
    hf = m(rows).logits
assert hf.shape == z.shape, (hf.shape, z.shape)
# Both fp32 over the same weights; only the summation order of the GEMMs, softmax and
# LayerNorm differs (and tanh's implementation): each of a few hundred O(1)-sized
# terms rounds at 2^-24 relative, so a few 1e-7 is expected and 1e-5 leaves ample room
# while any real difference (a wrong epsilon, GELU, scale or layout) is far above it.
err = (hf - z).abs().max().item()
assert err <= 1e-5, err
sd32 = {k: v for k, v in m.state_dict().items()}
b = load(bf16, torch_dtype=torch.bfloat16)
assert b.config.torch_dtype == torch.bfloat16 or str(b.config.torch_dtype).endswith("bfloat16")
for k, v in b.state_dict().items():
    assert v.dtype == torch.bfloat16, (k, v.dtype)
    assert torch.equal(v, sd32[k].to(torch.bfloat16)), k
s = load(many)
for k, v in s.state_dict().items():
    assert torch.equal(v, sd32[k]), k
with torch.no_grad():
    assert torch.equal(s(rows).logits, hf)
print("ok", err)
"#;
    let out = common::run_with_timeout(
        {
            py.arg("-c")
                .arg(script)
                .args([&fp32, &bf16, &many, &logits_file]);
            py.args(&rows);
            py
        },
        std::time::Duration::from_secs(300),
    );
    assert!(
        out.status.success(),
        "python: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn a_gpt2_datasets_tokenizer_is_exported_for_transformers() {
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("manifest.json"), r#"{"tokenizer": "gpt2"}"#).unwrap();
    let d = data.display().to_string();
    // The manifest names gpt2 but the files are missing: an error naming the file, and
    // no weights written.
    let out = tmp.path().join("missing");
    let o = common::single(&[
        "export",
        "--checkpoint",
        &trained().display().to_string(),
        "--format",
        "hf",
        "--out",
        &out.display().to_string(),
        "--data",
        &d,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("vocab.json is missing"), "{err}");
    assert!(!out.join("model.safetensors").exists());
    // A tiny byte-level BPE: "a" + "b" merge into "ab".
    let vocab = r#"{"<|endoftext|>": 0, "a": 1, "b": 2, "ab": 3, "Ġ": 4}"#;
    std::fs::write(data.join("vocab.json"), vocab).unwrap();
    std::fs::write(data.join("merges.txt"), "#version: 0.2\na b\n").unwrap();
    let out = tmp.path().join("tok");
    export(trained(), &out, &["--data", &d]);
    for f in [
        "vocab.json",
        "merges.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let Some(mut py) = common::python_or_skip(
        "a_gpt2_datasets_tokenizer_is_exported_for_transformers",
        &["transformers"],
    ) else {
        return;
    };
    let script = r#"
import sys
from transformers import GPT2TokenizerFast
t = GPT2TokenizerFast.from_pretrained(sys.argv[1])
assert t("ab").input_ids == [3], t("ab").input_ids
assert t.eos_token == "<|endoftext|>" and t.eos_token_id == 0
assert t.model_max_length == 16
"#;
    py.arg("-c").arg(script).arg(&out);
    let o = common::run_with_timeout(py, std::time::Duration::from_secs(120));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A character vocabulary has no tokenizer files to export: a note, no error.
    std::fs::write(data.join("manifest.json"), r#"{"vocab": ["a"]}"#).unwrap();
    let said = export(trained(), &tmp.path().join("chars"), &["--data", &d]);
    assert!(said.contains("no tokenizer files exported"), "{said}");
}

/// `train` from `init` at 2 ranks must fail on every rank, saying `needle`, in time.
fn fails_on_every_rank(init: &str, needle: &str) {
    let tmp = common::tempdir();
    let o = train_run(
        2,
        &tmp.path().join("m.jsonl"),
        &sets(&[
            &format!("model.init={init}"),
            "train.steps=1",
            "zero.stage=3",
        ]),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(!err.contains("panic"), "{err}");
    for r in 0..2 {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("rank {r}:")) && l.contains(needle)),
            "rank {r} did not say {needle:?}:\n{err}"
        );
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let tmp = common::tempdir();
    let missing = tmp.path().join("nowhere");
    fails_on_every_rank(&format!("hf:{}", missing.display()), "no such directory");
    // A directory without weights.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails_on_every_rank(
        &format!("hf:{}", empty.display()),
        "holds neither model.safetensors nor model.safetensors.index.json",
    );
    // One tensor of the wrong shape (no config.json, so the shapes are what is checked).
    let good = tmp.path().join("good");
    export(trained(), &good, &[]);
    let bytes = std::fs::read(good.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let wrong = vec![0u8; 32 * 64 * 4];
    let mut views: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != "transformer.h.0.attn.c_attn.weight")
        .collect();
    views.push((
        "transformer.h.0.attn.c_attn.weight".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![32, 64], &wrong)
            .unwrap(),
    ));
    let bad = tmp.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    safetensors::serialize_to_file(views, None, &bad.join("model.safetensors")).unwrap();
    fails_on_every_rank(
        &format!("hf:{}", bad.display()),
        "h.0.attn.c_attn.weight has shape [32, 64], the config's model (n_layer 2, d_model 32, ctx 16, vocab 64) needs [32, 96]",
    );
    // A file cut short (a copy that did not finish): its header promises more data.
    let cut = tmp.path().join("cut");
    std::fs::create_dir(&cut).unwrap();
    std::fs::write(cut.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    fails_on_every_rank(
        &format!("hf:{}", cut.display()),
        "model.safetensors: not a safetensors file: incomplete metadata, file not fully covered",
    );
    // An LM head that is not the token embedding (zerotrain ties them).
    let head = vec![0u8; 64 * 32 * 4];
    let mut views = st.tensors();
    views.push((
        "lm_head.weight".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![64, 32], &head).unwrap(),
    ));
    let untied = tmp.path().join("untied");
    std::fs::create_dir(&untied).unwrap();
    safetensors::serialize_to_file(views, None, &untied.join("model.safetensors")).unwrap();
    fails_on_every_rank(
        &format!("hf:{}", untied.display()),
        "lm_head.weight differs from wte.weight",
    );
    // config.json describing another model.
    std::fs::copy(good.join("config.json"), bad.join("config.json")).unwrap();
    let text = std::fs::read_to_string(bad.join("config.json")).unwrap();
    std::fs::write(
        bad.join("config.json"),
        text.replace("\"n_layer\": 2", "\"n_layer\": 12"),
    )
    .unwrap();
    fails_on_every_rank(
        &format!("hf:{}", bad.display()),
        "config.json: n_layer is 12, the config's model.n_layer is 2",
    );
    // A bad key value is the config's error.
    fails_on_every_rank("seeded", "model.init");
    // An MLP checkpoint does not export.
    let ck = tmp.path().join("mlp");
    train_ok(
        1,
        &tmp.path().join("mlp.jsonl"),
        &sets(&[
            "model.kind=mlp",
            "train.steps=1",
            &format!("checkpoint.dir={}", ck.display()),
        ]),
    );
    let o = common::single(&[
        "export",
        "--checkpoint",
        &ck.display().to_string(),
        "--format",
        "hf",
        "--out",
        &tmp.path().join("x").display().to_string(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("holds an MLP; only GPT checkpoints export"),
        "{err}"
    );
    // Flags.
    let c = trained().display().to_string();
    for (flag, value, needle) in [
        ("--format", "onnx", "--format \"onnx\""),
        ("--dtype", "fp8", "--dtype \"fp8\""),
        ("--max-shard-size", "2TB", "--max-shard-size \"2TB\""),
    ] {
        let out = tmp.path().join(format!("flag{}", flag.len()));
        let mut a = vec!["export", "--checkpoint", &c, "--out"];
        let o_s = out.display().to_string();
        a.push(&o_s);
        if flag != "--format" {
            a.extend(["--format", "hf"]);
        }
        a.extend([flag, value]);
        let o = common::single(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(needle), "{a:?}: {err}");
        assert!(!err.contains("panic"), "{err}");
    }
    // A non-empty output directory.
    let o = common::single(&[
        "export",
        "--checkpoint",
        &c,
        "--format",
        "hf",
        "--out",
        &good.display().to_string(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is not empty"), "{err}");
}
