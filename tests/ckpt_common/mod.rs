//! Helpers shared by the checkpoint tests: a small GPT run under mpirun, per-step
//! losses from the metrics JSONL, and checkpoint contents read through the library.
#![allow(dead_code)]
use crate::common::{mpi_ok, mpi_run};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};
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

/// Two checkpoints hold bit-identical master weights and optimizer states, unit by unit
/// (`tag` names the comparison in a failure).
pub fn assert_same_states(a: &Path, b: &Path, tag: &str) {
    let (ca, cb) = (contents(a), contents(b));
    assert_eq!(ca.len(), cb.len(), "{tag}: units");
    for (u, ((pa, sa), (pb, sb))) in ca.iter().zip(&cb).enumerate() {
        assert_eq!(bits(pa), bits(pb), "{tag}: master weights of unit {u}");
        assert_eq!(sa.len(), sb.len(), "{tag}: optimizer states of unit {u}");
        for (s, (xa, xb)) in sa.iter().zip(sb).enumerate() {
            assert_eq!(bits(xa), bits(xb), "{tag}: optimizer state {s} of unit {u}");
        }
    }
}

/// The pid of world rank `rank` among the direct children of mpirun `parent`.
pub fn rank_pid(parent: u32, rank: usize) -> Option<i32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // Field 4 (after "pid (comm) state") is the parent pid.
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let want = format!("OMPI_COMM_WORLD_RANK={rank}");
        if env.split(|&b| b == 0).any(|kv| kv == want.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

/// The pids of ranks 0..np of mpirun `parent`, waiting up to `limit` for them to start.
pub fn rank_pids(parent: u32, np: usize, limit: Duration) -> Vec<i32> {
    let t0 = Instant::now();
    loop {
        let pids: Vec<i32> = (0..np).filter_map(|r| rank_pid(parent, r)).collect();
        if pids.len() == np {
            return pids;
        }
        assert!(t0.elapsed() < limit, "ranks of mpirun {parent} not found");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `sig` to `pid` (a process this test started, directly or through mpirun).
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: plain kill(2).
    unsafe { libc::kill(pid, sig) };
}

/// Waits until `cond` holds, polling every millisecond; false after `limit`.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// Waits for `child` to end within `limit` (killing it and failing otherwise).
pub fn wait_child(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("process {} did not end within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
