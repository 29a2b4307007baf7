//! A rank that fails after MPI is up aborts the whole job promptly and non-zero.
mod common;

use std::time::{Duration, Instant};

#[test]
fn one_failing_rank_ends_the_job_within_10_seconds() {
    let mut c = common::mpirun(3);
    c.args(["bench", "comm", "--fail-rank", "1"]);
    let start = Instant::now();
    // The limit only guards the test run; the claim is checked on the measured time.
    let out = common::run_with_timeout(c, Duration::from_secs(60));
    let elapsed = start.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "job succeeded although rank 1 failed:\n{err}"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "job took {elapsed:?} to end"
    );
    assert!(
        err.contains("rank 1: injected failure (--fail-rank 1)"),
        "{err}"
    );
    // Ranks 0 and 2 were inside collectives (the benchmark) and must not report success.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("worst ratio"));
}

#[test]
fn bad_arguments_fail_before_mpi_on_every_rank() {
    let out = common::mpi_run(2, &["bench", "comm", "--dtypes", "f64"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("unknown dtype 'f64'"), "{err}");
}
