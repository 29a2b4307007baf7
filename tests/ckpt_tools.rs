//! The single-process tools on a 3-rank stage 3 checkpoint (uneven padding): inspect,
//! verify, consolidate (read back with h5py and checked against the rank files split
//! into tensors by docs/checkpoint-format.md's h5py code, from meta.json's `tensors`),
//! and `load_full_params`.
mod ckpt_common;
mod common;

use ckpt_common::*;
use std::path::Path;
use zerotrain::model::unit_specs;

fn tool(args: &[&str]) -> String {
    let o = common::single(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The ```python block of docs/checkpoint-format.md that splits units into tensors.
fn doc_split_block() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/checkpoint-format.md");
    let doc = std::fs::read_to_string(path).unwrap();
    doc.split("```python\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_string())
        .find(|b| b.contains("def checkpoint_tensors"))
        .expect("docs/checkpoint-format.md's checkpoint_tensors block")
}

/// Python, after the doc's block: its tensors (from meta.json's `tensors`) equal the
/// consolidated datasets, and cover them all.
const CHECK_PY: &str = r#"
import sys
step_dir, out = sys.argv[1], sys.argv[2]
got = checkpoint_tensors(step_dir)
cons = h5py.File(out, "r")
for name, v in got.items():
    d = cons[name]
    assert d.dtype == np.float32 and v.dtype == np.float32, (name, d.dtype, v.dtype)
    assert d.shape == v.shape, (name, d.shape, v.shape)
    assert np.array_equal(d[()], v), name
assert set(got) == set(cons.keys()), set(cons.keys()) ^ set(got)
states = checkpoint_tensors(step_dir, "exp_avg_sq")
assert set(states) == set(got) and all(states[k].shape == got[k].shape for k in got)
print("h5py ok", len(got))
"#;

#[test]
fn inspect_verify_consolidate() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let dir = t.join("ck");
    train_ok(
        3,
        &t.join("m.jsonl"),
        &[
            "zero.stage=3".into(),
            "precision.dtype=bf16".into(),
            "train.micro_batch=2".into(),
            "train.steps=2".into(),
            format!("checkpoint.dir={}", dir.display()),
        ],
    );
    let d = dir.to_str().unwrap();
    let info = tool(&["ckpt", "inspect", d]);
    for s in [
        "step        2",
        "3 ranks, zero stage 3",
        "bf16",
        "h.1",
        "rank-00002.h5",
        "exp_avg_sq",
    ] {
        assert!(info.contains(s), "inspect lacks {s:?}:\n{info}");
    }
    // The tensor list from meta.json: c_attn's weight after ln_1's 2 x 32 values.
    assert!(
        info.lines().any(|l| l.contains("h.1.attn.c_attn.weight")
            && l.contains(" 3072 at         64  shape [32, 96]")),
        "inspect lacks h.1's c_attn weight:\n{info}"
    );
    assert!(tool(&["ckpt", "verify", d]).contains("3 rank files"));

    let out = t.join("model.h5");
    let said = tool(&["ckpt", "consolidate", d, "--out", out.to_str().unwrap()]);
    assert!(said.contains("28032 parameters"), "{said}");

    // The library's full parameters equal the consolidated tensors.
    let (model, units) = zerotrain::checkpoint::load_full_params(&dir).unwrap();
    let specs = unit_specs(&model);
    let f = hdf5::File::open(&out).unwrap();
    for (spec, params) in specs.iter().zip(&units) {
        assert_eq!(params.len(), spec.numel);
        for ts in &spec.tensors {
            let ds = f.dataset(&ts.name).unwrap();
            assert_eq!(ds.shape(), ts.shape, "{}", ts.name);
            let v = ds.read_raw::<f32>().unwrap();
            assert_eq!(
                bits(&v),
                bits(&params[ts.offset..ts.offset + ts.numel()]),
                "{}",
                ts.name
            );
        }
    }

    // h5py reads it, and it equals the rank files reassembled independently.
    let Some(mut python) = common::python_or_skip("the consolidate h5py check", &["h5py", "numpy"])
    else {
        return;
    };
    let step = Path::new(d).join("step-00000002");
    let script = format!("{}\n{CHECK_PY}", doc_split_block());
    let o = python
        .args(["-c", &script, step.to_str().unwrap(), out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "h5py check failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
