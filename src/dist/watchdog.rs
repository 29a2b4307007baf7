//! The hang watchdog (docs/architecture.md, "Hangs"). The main thread notes what it is
//! doing ([`note`]: the step, and each wait on a collective with its unit); each note is
//! progress. A thread of its own checks that the last note is younger than
//! `system.collective_timeout`; when it is not, it logs one line saying what this rank
//! waits on, asks every other rank what it is doing over a side channel that needs no
//! MPI (`peer_status.rs`: a rank stopped with SIGSTOP, or hung outside MPI, does not
//! answer, and is named), and aborts the job.
//!
//! A note is a lock of an uncontended mutex and a few stores: no allocation, cheap
//! enough for every collective.
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::abort::abort_world;
use super::peer_status::{ask_all, Answer, Peer, StatusServer};
use super::{eprint_line, Dist};

/// The exit code of a job the watchdog ended (as `timeout(1)` uses).
pub const EXIT_HUNG: i32 = 124;

/// What the main thread is doing, as last noted.
#[derive(Debug, Clone, Copy)]
struct Activity {
    /// The optimizer step under way (1-based; 0 = set-up).
    step: u64,
    /// "forward/backward", "the step's all-reduce of scalars", "the gradient reduction
    /// of bucket", ... (ending in what `index` numbers, if any).
    what: &'static str,
    index: Option<usize>,
    /// When it began: the last progress.
    since: Option<Instant>,
}

static ACTIVITY: Mutex<Activity> = Mutex::new(Activity {
    step: 0,
    what: "set-up",
    index: None,
    since: None,
});

/// Notes that the main thread starts `what` (of the unit or bucket `index`, if it
/// concerns one, as in `note("waiting for the parameter gather of unit", Some(3))`):
/// progress.
pub fn note(what: &'static str, index: Option<usize>) {
    if let Ok(mut a) = ACTIVITY.lock() {
        a.what = what;
        a.index = index;
        a.since = Some(Instant::now());
    }
}

/// Notes the start of optimizer step `step` (1-based): progress.
pub fn note_step(step: u64) {
    if let Ok(mut a) = ACTIVITY.lock() {
        a.step = step;
    }
    note("forward/backward", None);
}

fn current() -> Activity {
    match ACTIVITY.lock() {
        Ok(a) => *a,
        Err(poisoned) => *poisoned.into_inner(),
    }
}

/// "step 12: waiting for the parameter gather of unit 3 for 31 s".
fn describe(a: &Activity) -> String {
    let index = a.index.map(|i| format!(" {i}")).unwrap_or_default();
    let secs = a.since.map_or(0, |s| s.elapsed().as_secs());
    format!("step {}: {}{index} for {secs} s", a.step, a.what)
}

/// The running watchdog; it stops with the process.
pub struct Watchdog;

/// This rank's status server, bound but not yet known to the others: the first half of
/// starting a watchdog, local, so that a failure here can be agreed on by every rank
/// before [`Listening::start`]'s collective exchange.
pub struct Listening(StatusServer);

impl Watchdog {
    /// Binds this rank's status server (local: no collective).
    pub fn bind(dist: &Dist) -> anyhow::Result<Listening> {
        StatusServer::bind(dist.rank()).map(Listening)
    }
}

impl Listening {
    /// Starts the watchdog with `timeout` (collective over the world: the ranks exchange
    /// where their status servers listen; every rank must have bound one). Progress is
    /// counted from now.
    pub fn start(self, dist: &Dist, timeout: Duration) -> anyhow::Result<Watchdog> {
        let server = self.0;
        let peers = server.exchange(dist.world())?;
        note("set-up", None);
        let rank = dist.rank();
        server.serve(|| describe(&current()))?;
        std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || watch(rank, peers, timeout))?;
        Ok(Watchdog)
    }
}

/// The watchdog thread: fires once the main thread has made no progress for `timeout`.
/// If this whole process did not run for a while (stopped by SIGSTOP, or starved), the
/// others name it; it says so once and counts its timeout afresh rather than blame them.
fn watch(rank: usize, peers: Vec<Peer>, timeout: Duration) {
    let tick = Duration::from_millis(100).min(timeout / 4);
    let mut last_tick = Instant::now();
    loop {
        std::thread::sleep(tick);
        let gap = last_tick.elapsed();
        last_tick = Instant::now();
        if gap > (20 * tick).max(Duration::from_secs(2)) {
            eprint_line(&format!(
                "rank {rank}: watchdog: this process did not run for {:.0} s (stopped, e.g. by SIGSTOP, or starved of CPU)",
                gap.as_secs_f64()
            ));
            if let Ok(mut a) = ACTIVITY.lock() {
                a.since = a.since.map(|_| Instant::now());
            }
            continue;
        }
        let a = current();
        if a.since.is_some_and(|s| s.elapsed() >= timeout) {
            fire(rank, &a, &peers, timeout);
        }
    }
}

/// Logs what this rank waits on and what every other rank says it does, then aborts
/// the job.
fn fire(rank: usize, a: &Activity, peers: &[Peer], timeout: Duration) -> ! {
    eprint_line(&format!(
        "rank {rank}: watchdog: no progress within system.collective_timeout = {} s: {}",
        timeout.as_secs_f64(),
        describe(a)
    ));
    // The status thread keeps answering the others meanwhile: they may be firing too.
    let answers = ask_all(peers, rank);
    let mut silent = Vec::new();
    for (peer, answer) in peers.iter().zip(answers) {
        match answer {
            Answer::Said(status) => eprint_line(&format!(
                "rank {rank}: watchdog: rank {} is at {status}",
                peer.rank
            )),
            Answer::Silent(why) => {
                eprint_line(&format!(
                    "rank {rank}: watchdog: rank {} (host {}, pid {}) did not answer ({why}): it is stopped, hung or dead",
                    peer.rank, peer.host, peer.pid
                ));
                silent.push(peer.rank.to_string());
            }
            Answer::Me => {}
        }
    }
    let verdict = if silent.is_empty() {
        "every rank answered: they wait on one another (a collective mismatch?)".to_string()
    } else {
        format!("waiting on rank(s) {}", silent.join(", "))
    };
    eprint_line(&format!(
        "rank {rank}: watchdog: {verdict}; aborting the job (exit code {EXIT_HUNG})"
    ));
    // MPI is initialised (the watchdog starts after Dist::init). Calling MPI_Abort off
    // the main thread is outside MPI_THREAD_FUNNELED's contract, as for the panic hook:
    // Open MPI and MPICH end the job from there, and the alternative is a hang.
    abort_world(EXIT_HUNG)
}
