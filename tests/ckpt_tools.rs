//! The single-process tools on a 3-rank stage 3 checkpoint (uneven padding): inspect,
//! verify, consolidate (read back with h5py and checked against the rank files
//! reassembled in Python), and `load_full_params`.
mod ckpt_common;
mod common;

use ckpt_common::*;
use std::path::Path;
use zerotrain::model::unit_specs;

/// (name, shape) of one tensor, as the Python check receives it.
type Tensor = (String, Vec<usize>);

fn tool(args: &[&str]) -> String {
    let o = common::single(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Python: reassemble each unit's master weights from every rank file (by `start`),
/// cut them into tensors in unit order and compare with the consolidated datasets.
const CHECK_PY: &str = r#"
import json, sys, glob
import numpy as np, h5py
step_dir, out, layout = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
ranks = [h5py.File(p, "r") for p in sorted(glob.glob(step_dir + "/rank-*.h5"))]
cons = h5py.File(out, "r")
seen = set()
for unit, tensors in layout:
    pieces = sorted((int(f[unit].attrs["start"]), f[unit]["master"][()]) for f in ranks)
    master = np.concatenate([p for _, p in pieces])
    off = 0
    for name, shape in tensors:
        n = int(np.prod(shape))
        d = cons[name]
        assert d.dtype == np.float32, (name, d.dtype)
        assert list(d.shape) == shape, (name, d.shape, shape)
        assert np.array_equal(d[()], master[off:off + n].reshape(shape)), name
        off += n
        seen.add(name)
    assert off == len(master), (unit, off, len(master))
assert seen == set(cons.keys()), set(cons.keys()) ^ seen
print("h5py ok", len(seen))
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
    // [[unit, [[tensor, shape], ...]], ...]
    let layout: Vec<(String, Vec<Tensor>)> = specs
        .iter()
        .map(|u| {
            (
                u.name.clone(),
                u.tensors
                    .iter()
                    .map(|t| (t.name.clone(), t.shape.clone()))
                    .collect(),
            )
        })
        .collect();
    let step = Path::new(d).join("step-00000002");
    let o = python
        .args([
            "-c",
            CHECK_PY,
            step.to_str().unwrap(),
            out.to_str().unwrap(),
        ])
        .arg(serde_json::to_string(&layout).unwrap())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "h5py check failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
