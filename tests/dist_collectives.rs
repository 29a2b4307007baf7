//! The collectives under real mpirun at world sizes 1-4: the binary's hidden self-test
//! (`bench comm --self-test`) compares every collective with a computed expectation (odd
//! lengths, lengths not divisible by the world size, zero length; blocking, non-blocking
//! while computing, the raw collectives of the direct transport; half sums against an f32 reference within
//! gamma_{n-1} * sum|x|), and exits non-zero through MPI_Abort on the first mismatch.
mod common;

use std::time::Duration;

fn self_test(np: usize, extra: &[&str]) -> String {
    let mut args = vec!["bench", "comm", "--self-test"];
    args.extend_from_slice(extra);
    let out = common::mpi_ok(np, &args);
    assert!(
        out.contains("self-test ok:") && out.contains(&format!("on {np} ranks")),
        "np {np}: unexpected output:\n{out}"
    );
    out
}

#[test]
fn collectives_np1() {
    self_test(1, &[]);
}

#[test]
fn collectives_np2() {
    self_test(2, &[]);
}

#[test]
fn collectives_np3() {
    self_test(3, &[]);
}

#[test]
fn collectives_np4() {
    self_test(4, &[]);
}

/// With CUDA-aware forced on (the start-up path a GPU job takes), the whole sweep,
/// the raw collectives of the direct transport included, still agrees.
#[test]
fn collectives_direct_device_path_np3() {
    self_test(3, &["--cuda-aware", "on"]);
}

/// Without mpirun: MPI starts as a singleton.
#[test]
fn collectives_singleton_without_mpirun() {
    let out = common::single(&["bench", "comm", "--self-test"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("on 1 ranks"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Start-up log: rank-prefixed, rank 0 at info (layout, node-local ranks, CUDA-aware decision),
/// other ranks quiet at info.
#[test]
fn startup_log_names_layout_and_cuda_awareness() {
    let mut c = common::mpirun(2);
    c.env_remove("RUST_LOG")
        .env_remove("ZEROTRAIN_CUDA_AWARE")
        .args(["bench", "comm", "--self-test"]);
    let out = common::run_with_timeout(c, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("[rank 0] INFO MPI: ") && err.contains("world size 2"),
        "{err}"
    );
    assert!(err.contains("): 0:local 0, 1:local 1"), "{err}");
    // This machine's OpenMPI is built without CUDA: detection must say no.
    assert!(
        err.contains("CUDA-aware MPI: no (device buffers will be staged through host memory"),
        "{err}"
    );
    assert!(!err.contains("[rank 1] INFO"), "{err}");
}

/// The environment override, and a bad value refused before MPI starts on every rank.
#[test]
fn cuda_aware_environment_override() {
    let mut c = common::mpirun(2);
    c.env("ZEROTRAIN_CUDA_AWARE", "1")
        .args(["bench", "comm", "--self-test"]);
    let out = common::run_with_timeout(c, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("CUDA-aware MPI: yes") && err.contains("ZEROTRAIN_CUDA_AWARE=1"),
        "{err}"
    );

    let mut c = common::mpirun(2);
    c.env("ZEROTRAIN_CUDA_AWARE", "maybe")
        .args(["bench", "comm", "--self-test"]);
    let out = common::run_with_timeout(c, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("(before MPI init): ZEROTRAIN_CUDA_AWARE='maybe'"),
        "{err}"
    );
}
