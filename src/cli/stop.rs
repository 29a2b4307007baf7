//! Stopping early and resumably (docs/architecture.md, "Stopping early"): SIGTERM, SIGINT
//! or SIGUSR1 on any rank, or the run's time limit, asks to stop; the training loop puts
//! the request into the step's all-reduce, so every rank learns at the same step
//! boundary, saves a checkpoint and exits with [`EXIT_STOPPED`]. A second signal exits at
//! once (128 + the signal, as a shell reports it).
use crate::config::TrainConfig;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The exit code of a run that stopped early and saved a checkpoint to resume from
/// (`EX_TEMPFAIL`, "try again"): job scripts requeue on it.
pub const EXIT_STOPPED: i32 = 75;

/// The signals that ask to stop.
const SIGNALS: [i32; 3] = [SIGTERM, SIGINT, SIGUSR1];

/// Why this rank asks to stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StopReason {
    Signal(i32),
    TimeLimit,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Signal(s) => write!(f, "{}", signal_name(*s)),
            StopReason::TimeLimit => write!(f, "the time limit"),
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        SIGUSR1 => "SIGUSR1",
        _ => "a signal",
    }
}

/// This rank's wish to stop: the signals it received and the time it has left.
pub struct StopWatch {
    /// The first signal received (0 = none); set by the handler.
    signal: Arc<AtomicI32>,
    /// When the run must be over: the earlier of `train.time_limit` from start-up and
    /// Slurm's job end time.
    deadline: Option<Instant>,
    /// The longest step so far and the last save's duration (or, until one is measured,
    /// the resume's load): the margin kept before the deadline is twice their sum.
    longest_step: Duration,
    save: Duration,
    /// Logged once, when this rank first asks.
    announced: bool,
}

impl StopWatch {
    /// Installs the signal handlers and reads the limits. `started` is when the process
    /// started (the time limit counts from it).
    pub fn install(train: &TrainConfig, started: Instant) -> anyhow::Result<StopWatch> {
        let signal = Arc::new(AtomicI32::new(0));
        let seen = Arc::new(AtomicBool::new(false));
        for sig in SIGNALS {
            // Registered first, so it runs first: when a signal was already seen, this
            // one exits at once.
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, seen.clone())?;
            let (signal, seen) = (signal.clone(), seen.clone());
            // SAFETY: the action only stores to atomics, which is async-signal-safe.
            unsafe {
                signal_hook::low_level::register(sig, move || {
                    let _ = signal.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
                    seen.store(true, Ordering::SeqCst);
                })?;
            }
        }
        let from_config = train.time_limit().map(|d| started + d);
        let deadline = match (from_config, slurm_end()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(StopWatch {
            signal,
            deadline,
            longest_step: Duration::ZERO,
            save: Duration::ZERO,
            announced: false,
        })
    }

    /// Measured times that size the margin before the deadline.
    pub fn step_took(&mut self, d: Duration) {
        self.longest_step = self.longest_step.max(d);
    }
    pub fn save_took(&mut self, d: Duration) {
        self.save = d;
    }

    /// Whether this rank asks to stop now (logged once per rank).
    pub fn asks(&mut self) -> Option<StopReason> {
        let reason = match self.signal.load(Ordering::SeqCst) {
            0 => self
                .deadline
                .filter(|&d| Instant::now() + 2 * (self.longest_step + self.save) >= d)
                .map(|_| StopReason::TimeLimit),
            sig => Some(StopReason::Signal(sig)),
        }?;
        if !self.announced {
            self.announced = true;
            log::warn!("{reason}: saving a checkpoint and stopping at the next step boundary (a second signal stops at once)");
        }
        Some(reason)
    }
}

/// Slurm's projected end of this job, from `SLURM_JOB_END_TIME` (Unix seconds), as an
/// `Instant`.
fn slurm_end() -> Option<Instant> {
    let end: u64 = std::env::var("SLURM_JOB_END_TIME")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Instant::now() + Duration::from_secs(end.saturating_sub(now)))
}
