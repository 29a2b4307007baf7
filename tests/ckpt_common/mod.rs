//! Helpers shared by the checkpoint tests: a small GPT run under mpirun, per-step
//! losses from the metrics JSONL, and checkpoint contents read through the library.
#![allow(dead_code)]
use crate::common::{mpi_ok, mpi_run};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use zerotrain::checkpoint::Checkpoint;

/// The small model every checkpoint test trains (about 28k parameters, 4 units).
pub const MODEL: [&str; 4] = ["--set", "model.n_layer=2", "--set", "model.d_model=32"];

/// `train` arguments: the small model, per-step metrics to `metrics`, plus `extra`
/// `key=value` overrides.
pub fn train_args(metrics: &Path, extra: &[String]) -> Vec<String> {
    let mut a: Vec<String> = vec!["train".into()];
    a.extend(MODEL.iter().map(|s| s.to_string()));
    for kv in [
        "log.every=1".to_string(),
        format!("log.metrics={}", metrics.display()),
    ]
    .iter()
    .chain(extra)
    {
        a.push("--set".into());
        a.push(kv.clone());
    }
    a
}

/// Runs `train` under `mpirun -np np`, panicking on failure.
pub fn train_ok(np: usize, metrics: &Path, extra: &[String]) -> String {
    let a = train_args(metrics, extra);
    let r: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
    mpi_ok(np, &r)
}

/// Runs `train` under `mpirun -np np` and returns the output, whatever the status.
pub fn train_run(np: usize, metrics: &Path, extra: &[String]) -> Output {
    let a = train_args(metrics, extra);
    let r: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
    mpi_run(np, &r)
}

/// `--set` values from `key=value` strings.
pub fn sets(kv: &[&str]) -> Vec<String> {
    kv.iter().map(|s| s.to_string()).collect()
}

/// Step → loss from a metrics JSONL file.
pub fn losses(path: &Path) -> BTreeMap<u64, f64> {
    let text = std::fs::read_to_string(path).expect("metrics file");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            (
                v["step"].as_u64().expect("step"),
                v["loss"].as_f64().expect("loss"),
            )
        })
        .collect()
}

/// Every unit's master weights and optimizer states, in canonical order, as the
/// library reads them from the checkpoint at `dir` (any world size).
pub fn contents(dir: &Path) -> Vec<(Vec<f32>, Vec<Vec<f32>>)> {
    let mut ck = Checkpoint::open(dir, true).expect("open checkpoint");
    (0..ck.meta.units.len())
        .map(|u| {
            let n = ck.meta.units[u].numel;
            let p = ck.read(u, 0..n, true).expect("read unit");
            (p.master, p.states)
        })
        .collect()
}

/// Bitwise equality of f32 vectors (NaN-safe, -0.0 != 0.0).
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
