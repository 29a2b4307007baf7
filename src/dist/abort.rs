//! Ending the job on an error: after MPI is up, log and `MPI_Abort` so no rank hangs in a
//! collective; before MPI is up, name the rank from the launcher's environment.
use mpi::ffi;
use mpi::raw::AsRaw;

use super::Dist;

/// Logs `rank R: <error chain>` to stderr and calls `MPI_Abort(MPI_COMM_WORLD, 1)`, so
/// mpirun kills every rank and exits non-zero promptly. Use for any error after
/// [`Dist::init`] succeeded, since other ranks may already wait in a collective.
pub fn abort_on_error(dist: &Dist, err: &anyhow::Error) -> ! {
    // Straight to stderr, not through the logger: it must show whatever RUST_LOG says.
    let prefix = format!("rank {}: ", dist.rank());
    let chain = format!("{err:#}");
    // Errors from `dist` already name the rank; do not say it twice.
    let chain = chain.strip_prefix(&prefix).unwrap_or(&chain);
    eprint_line(&format!("{prefix}{chain}"));
    // SAFETY: MPI is initialised (a Dist exists) and the world communicator is valid.
    unsafe { ffi::MPI_Abort(dist.world().as_raw(), 1) };
    // MPI_Abort does not return on a conforming library; make sure the process ends anyway.
    std::process::exit(1)
}

/// This process's rank as the launcher announced it (Open MPI, MPICH/Hydra, PMIx, Slurm),
/// readable before MPI is initialised; `None` outside a launcher.
pub fn env_rank() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_RANK",
        "PMIX_RANK",
        "PMI_RANK",
        "SLURM_PROCID",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok()?.trim().parse().ok())
}

/// For errors raised before MPI is up (config checks that every rank runs alike): adds
/// `rank R (before MPI init)` to the error so each rank's report says which rank it is.
/// Each rank then exits non-zero on its own and mpirun ends the job.
pub fn with_rank_before_init<T>(r: anyhow::Result<T>) -> anyhow::Result<T> {
    r.map_err(|e| match env_rank() {
        Some(rank) => e.context(format!("rank {rank} (before MPI init)")),
        None => e,
    })
}

/// Writes one whole line to stderr in a single write, so the lines of several ranks
/// sharing mpirun's stderr never interleave mid-line.
pub fn eprint_line(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}
