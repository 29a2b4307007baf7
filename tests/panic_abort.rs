//! A panic on one rank ends the whole job promptly (issue 14): the panic hook logs the rank
//! and the message as one line and calls `MPI_Abort`, where unwinding would finalize MPI on
//! that rank and leave the others in a collective forever.
mod common;
use common::*;
use std::time::{Duration, Instant};

/// Runs `panic_rank 2 [thread]` on 4 ranks and checks the job failed promptly with rank
/// 2's panic line; returns that line.
fn panic_job(thread: bool) -> String {
    let mut cmd = mpirun_program(4, &example_bin("panic_rank"));
    cmd.arg("2").env_remove("RUST_BACKTRACE");
    if thread {
        cmd.arg("thread");
    }
    let start = Instant::now();
    // A hang is what this guards against: without the hook the job never ends, and this
    // limit turns that into a failure rather than a stuck suite.
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "the job must fail: {stdout}\n{stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("rank 2: panic"))
        .unwrap_or_else(|| panic!("no panic line from rank 2:\n{stderr}"));
    assert!(
        line.contains("examples/panic_rank.rs:")
            && line.ends_with("range start index 17 out of range for slice of length 16"),
        "the line names the place and the message: {line}"
    );
    // (mpirun's own "MPI_ABORT was invoked" notice is not checked: Open MPI 4.1 sometimes
    // loses it, "ORTE_ERROR_LOG: Data unpack had inadequate space ... show_help.c".)
    assert!(
        stderr.contains("rank 2: aborting the job (MPI_Abort)"),
        "{stderr}"
    );
    assert!(
        !stdout.contains("finished"),
        "no rank may get past the all-reduce: {stdout}"
    );
    // Rank 2's main thread would reach the all-reduce after 30 s in the thread case:
    // ending sooner shows the abort came from the panic (the guard above is 60 s).
    assert!(took < Duration::from_secs(30), "the job took {took:?}");
    eprintln!("the job ended {took:?} after launch");
    line.to_string()
}

#[test]
fn a_rank_that_panics_ends_the_job_with_its_rank_and_message() {
    let line = panic_job(false);
    assert!(line.starts_with("rank 2: panic at "), "{line}");
}

#[test]
fn a_panic_on_a_helper_thread_ends_the_job_too() {
    let line = panic_job(true);
    assert!(
        line.starts_with("rank 2: panic (thread helper) at "),
        "{line}"
    );
}
