//! Helpers shared by the integration tests: launch the real binary under the real mpirun.
#![allow(dead_code)]
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The zerotrain binary cargo built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zerotrain"))
}

/// A test-only program from `examples/`, which `cargo test` builds beside the test
/// binaries (`target/<profile>/examples/NAME`, the test itself being in `.../deps/`).
pub fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} not built (cargo test builds examples)",
        path.display()
    );
    path
}

/// `mpirun` with what this environment needs: root allowed, oversubscription for more
/// ranks than cores, no core binding (two ranks on one core otherwise), yielding when
/// idle so oversubscribed ranks do not starve each other, and a session directory of its
/// own (below).
pub fn mpirun(np: usize) -> Command {
    mpirun_program(np, &bin())
}

/// [`mpirun`] for another program than zerotrain.
pub fn mpirun_program(np: usize, program: &std::path::Path) -> Command {
    let mut c = Command::new("mpirun");
    c.env("OMPI_MCA_orte_tmpdir_base", own_session_base())
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_mpi_yield_when_idle", "1")
        .args([
            "--oversubscribe",
            "--bind-to",
            "none",
            "-np",
            &np.to_string(),
        ])
        .arg(program);
    c
}

/// A new, empty folder for one mpirun's session directory. OpenMPI 4.1's mpirun creates
/// and removes a shared `/tmp/ompi.<host>.<uid>`; two started at the same moment by
/// parallel tests race on it and one fails with "mkdir ... File exists".
fn own_session_base() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("ompi-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mpirun session base directory");
    dir
}

/// A command in progress, its output read while it runs (by two threads): a child that
/// fills a pipe nobody reads would block.
pub struct Running {
    pub child: std::process::Child,
    /// The command line, for a failure message.
    what: String,
    stdout: std::sync::mpsc::Receiver<Vec<u8>>,
    stderr: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl Running {
    /// Starts `cmd` with its stdout and stderr piped.
    pub fn spawn(cmd: &mut Command) -> Running {
        use std::io::Read;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // Each thread sends what it read once its pipe closes.
        let drain = |r: Option<Box<dyn Read + Send>>| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut bytes);
                }
                let _ = tx.send(bytes);
            });
            rx
        };
        let stdout = drain(
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        );
        let stderr = drain(
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        );
        let what = format!("{cmd:?}");
        Running {
            child,
            what,
            stdout,
            stderr,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits at most `limit` for the end; returns the output and the time waited. Past
    /// `limit` it kills the command and fails the test with what it printed.
    pub fn finish(mut self, limit: Duration) -> (Output, Duration) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                // Children of the killed process may hold the pipes open: wait briefly.
                let grace = Duration::from_secs(2);
                panic!(
                    "command timed out after {limit:?}: {}\nstdout:\n{}\nstderr:\n{}",
                    self.what,
                    String::from_utf8_lossy(&self.stdout.recv_timeout(grace).unwrap_or_default()),
                    String::from_utf8_lossy(&self.stderr.recv_timeout(grace).unwrap_or_default())
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let took = start.elapsed();
        let output = Output {
            status,
            stdout: self.stdout.recv().unwrap_or_default(),
            stderr: self.stderr.recv().unwrap_or_default(),
        };
        (output, took)
    }
}

/// Runs `cmd` with a wall-clock limit; kills it (and fails the test) when exceeded.
pub fn run_with_timeout(mut cmd: Command, limit: Duration) -> Output {
    Running::spawn(&mut cmd).finish(limit).0
}

/// Runs the binary under `mpirun -np N` with `args`; returns the output (no status check).
pub fn mpi_run(np: usize, args: &[&str]) -> Output {
    let mut c = mpirun(np);
    c.args(args);
    run_with_timeout(c, Duration::from_secs(300))
}

/// Like [`mpi_run`], but panics with both streams when the status is not success.
pub fn mpi_ok(np: usize, args: &[&str]) -> String {
    let out = mpi_run(np, args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "mpirun -np {np} {args:?} failed: {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The binary without mpirun (a single process).
pub fn single(args: &[&str]) -> Output {
    let mut c = Command::new(bin());
    c.args(args);
    run_with_timeout(c, Duration::from_secs(300))
}

/// A scratch directory removed at the end of the test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Runs `zerotrain train` under `mpirun -np N` with `sets` (section.key=value) and
/// returns the metrics records (one per step: log.every = 1).
pub fn train_records(np: usize, sets: &[&str]) -> Vec<serde_json::Value> {
    let dir = tempdir();
    let metrics = dir.path().join("m.jsonl");
    let metrics_set = format!("log.metrics=\"{}\"", metrics.display());
    let mut args: Vec<String> = vec![
        "train".into(),
        "--set".into(),
        "log.every=1".into(),
        "--set".into(),
        metrics_set,
    ];
    for s in sets {
        args.push("--set".into());
        args.push(s.to_string());
    }
    let argv: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    mpi_ok(np, &argv);
    let text = std::fs::read_to_string(&metrics).expect("metrics file");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Per-step training losses from metrics records.
pub fn losses(records: &[serde_json::Value]) -> Vec<f64> {
    records
        .iter()
        .map(|r| r["loss"].as_f64().expect("loss"))
        .collect()
}

/// Asserts two loss curves agree within relative `tol` at every step.
pub fn assert_close(what: &str, a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "{what}: step counts differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let rel = (x - y).abs() / y.abs().max(1e-12);
        assert!(
            rel <= tol,
            "{what}: step {} differs: {x} vs {y} (relative {rel:.2e} > {tol:.0e})",
            i + 1
        );
    }
}

/// Generates an addition dataset (`data synth --task addition`) at `dir/add` with
/// `count` train and `val` held-out problems plus `extra` flags; returns its path.
pub fn addition_dataset(dir: &std::path::Path, count: usize, val: usize, extra: &[&str]) -> String {
    let out = dir.join("add").display().to_string();
    let (count, val) = (count.to_string(), val.to_string());
    let mut args = vec![
        "data",
        "synth",
        "--task",
        "addition",
        "--out",
        &out,
        "--count",
        &count,
        "--val-count",
        &val,
    ];
    args.extend_from_slice(extra);
    let r = single(&args);
    assert!(
        r.status.success(),
        "data synth failed: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    out
}

/// `data.path="..."` of a small learnable dataset (2000 addition problems, 100 held out),
/// generated once per test binary and shared by its tests.
pub fn shared_addition_data() -> &'static str {
    static DIR: std::sync::OnceLock<(tempfile::TempDir, String)> = std::sync::OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempdir();
        let out = addition_dataset(dir.path(), 2000, 100, &[]);
        (dir, format!("data.path=\"{out}\""))
    })
    .1
}

/// The directory of zerotrain's Python packages, as scripts/python-env.sh sets it
/// (`ensure-deps.sh --python` installs them there).
pub fn python_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ZEROTRAIN_PYTHON_DIR") {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("zerotrain/python")
}

/// `python3` with zerotrain's Python packages on its path, offline (no model hub), if it
/// can import every module of `modules` (e.g. `["h5py", "numpy"]`); else None, and the
/// test should skip, saying what is missing (`skip_without_python`).
pub fn python(modules: &[&str]) -> Option<Command> {
    let with_path = || {
        let mut c = Command::new("python3");
        let mut path = std::ffi::OsString::from(python_dir());
        if let Some(old) = std::env::var_os("PYTHONPATH") {
            path.push(":");
            path.push(old);
        }
        c.env("PYTHONPATH", path)
            .env("HF_HUB_OFFLINE", "1")
            .env("TRANSFORMERS_OFFLINE", "1")
            .env("TOKENIZERS_PARALLELISM", "false");
        c
    };
    let ok = with_path()
        .args(["-c", &format!("import {}", modules.join(", "))])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(with_path)
}

/// [`python`], or None after printing why the test named `test` skips.
pub fn python_or_skip(test: &str, modules: &[&str]) -> Option<Command> {
    let p = python(modules);
    if p.is_none() {
        println!(
            "SKIP {test}: python3 cannot import {} (scripts/ensure-deps.sh --python installs them into {})",
            modules.join(", "),
            python_dir().display()
        );
    }
    p
}
