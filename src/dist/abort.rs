//! Ending the job on an error: after MPI is up, log and `MPI_Abort` so no rank hangs in a
//! collective; before MPI is up, name the rank from the launcher's environment. A panic
//! after MPI is up ends the job the same way (`install_panic_hook`): unwinding would drop
//! the `Universe` and finalize MPI on the panicking rank while the others wait in a
//! collective forever.
use std::os::raw::c_int;

use mpi::ffi;

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
    // MPI is initialised: a Dist exists.
    abort_world(1)
}

/// `MPI_Abort(MPI_COMM_WORLD, code)`, then the process exits with `code` whatever the
/// library did. Only once MPI is initialised and not finalized.
pub(super) fn abort_world(code: i32) -> ! {
    // SAFETY: the caller has MPI initialised and not finalized; MPI_COMM_WORLD is always
    // valid then.
    unsafe { ffi::MPI_Abort(ffi::RSMPI_COMM_WORLD, code) };
    // MPI_Abort does not return on a conforming library; make sure the process ends anyway.
    std::process::exit(code)
}

/// Makes any panic on this process, on any thread, log `rank R: panic at FILE:LINE: MSG`
/// as one line and call `MPI_Abort(MPI_COMM_WORLD, 101)` before unwinding starts, so mpirun
/// ends every rank within moments instead of leaving them in a collective. Called by
/// [`Dist::init`] once MPI is up. Outside an active MPI session (before init, after
/// finalize) a panic is only logged and then unwinds as usual.
///
/// A panic on a helper thread (the data prefetcher) aborts too: the main thread might be
/// inside a collective and never look at the helper's result. `MPI_Abort` from a thread
/// other than the main one is outside `MPI_THREAD_FUNNELED`'s contract; Open MPI and MPICH
/// both end the job from there, and the alternative is a hang.
pub fn install_panic_hook(rank: usize) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let thread = std::thread::current();
        let on = match thread.name() {
            Some("main") | None => String::new(),
            Some(name) => format!(" (thread {name})"),
        };
        eprint_line(&format!("rank {rank}: panic{on}{at}: {msg}"));
        if std::env::var_os("RUST_BACKTRACE").is_some() {
            default(info);
        }
        if mpi_active() {
            eprint_line(&format!(
                "rank {rank}: aborting the job (MPI_Abort) after the panic"
            ));
            abort_world(101)
        }
    }));
}

/// MPI is initialised and not yet finalized (both queries may be called at any time).
fn mpi_active() -> bool {
    let (mut init, mut fin): (c_int, c_int) = (0, 0);
    // SAFETY: MPI_Initialized and MPI_Finalized are valid before init and after finalize.
    unsafe {
        ffi::MPI_Initialized(&mut init);
        ffi::MPI_Finalized(&mut fin);
    }
    init != 0 && fin == 0
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
