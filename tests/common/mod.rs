//! Helpers shared by the integration tests: launch the real binary under the real mpirun.
#![allow(dead_code)]
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The zerotrain binary cargo built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zerotrain"))
}

/// `mpirun` with what this environment needs: root allowed, oversubscription for more
/// ranks than cores, no core binding (two ranks on one core otherwise), and yielding when
/// idle so oversubscribed ranks do not starve each other.
pub fn mpirun(np: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_mpi_yield_when_idle", "1")
        .args([
            "--oversubscribe",
            "--bind-to",
            "none",
            "-np",
            &np.to_string(),
        ])
        .arg(bin());
    c
}

/// Runs `cmd` with a wall-clock limit; kills it (and fails the test) when exceeded.
pub fn run_with_timeout(mut cmd: Command, limit: Duration) -> Output {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "command timed out after {:?}: {:?}\nstdout:\n{}\nstderr:\n{}",
                limit,
                cmd,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
