//! Saving at step boundaries, in the foreground or (`checkpoint.async = true`) with each
//! rank's file written by a background thread while training goes on
//! (docs/architecture.md, "Asynchronous saves").
//!
//! An asynchronous save copies this rank's shard to host memory at the step boundary (the
//! engine's checkpoint pieces, and meta.json's draft: step, loader position, scaler), has
//! rank 0 create `step-N.tmp/` (collective), and hands the pieces to a thread that
//! writes, fsyncs and checksums the rank file: no MPI there (MPI runs at
//! THREAD_FUNNELED), and HDF5 calls from it, from the data loader's prefetch thread and
//! from the main thread are serialised by hdf5-metno's global lock. At every later step
//! boundary the ranks agree (one all-reduce of two scalars) on whether every write has
//! ended; once all have, the commit runs as in a foreground save (meta.json, rename,
//! `latest`), so `latest` moves only after every rank wrote. A failed write fails the job
//! on every rank ([`WriteFailed`], the failed rank's message) at the first boundary that
//! sees it, after each rank's own writer ended; the previous checkpoint stays `latest`.
//! A save due while one is in flight waits for it; a stop and the last step wait for it
//! too and then save in the foreground.
use super::save::{begin, commit, draft_meta, save, RankJob, Target, WrittenFile};
use super::share::gather_messages;
use super::Meta;
use crate::config::Config;
use crate::data::LoaderState;
use crate::device::Backend;
use crate::dist::watchdog;
use crate::dist::{Dist, ScalarOp};
use crate::zero::{Engine, UnitPiece};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

type Written = anyhow::Result<Option<WrittenFile>>;

/// A background write failed on some rank; every rank returns this alike (agreed in a
/// collective at a step boundary, with no collective in flight), so the job can end
/// cleanly with this one line on every rank.
#[derive(Debug)]
pub struct WriteFailed {
    pub step: u64,
    /// The first failed rank's error, naming its rank and file.
    pub msg: String,
}

impl std::fmt::Display for WriteFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "checkpoint step {} written in the background failed: {}",
            self.step, self.msg
        )
    }
}

impl std::error::Error for WriteFailed {}

/// What a step boundary asks of the [`Saver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// No save (an in-flight one only progresses).
    Nothing,
    /// `checkpoint.every`: in the background with `checkpoint.async`.
    Periodic,
    /// A stop or the last step: in the foreground, after the in-flight one is committed,
    /// so the job never exits with a write unfinished.
    Final,
}

/// The saves of one training run.
#[derive(Default)]
pub struct Saver {
    in_flight: Option<InFlight>,
}

/// An asynchronous save whose rank file is being (or has been) written.
struct InFlight {
    target: Target,
    meta: Meta,
    keep: usize,
    writer: Writer,
    started: Instant,
    /// Time the step boundary spent starting the save (the copy to host memory, the
    /// `.tmp` directory).
    stall: Duration,
}

enum Writer {
    Running(JoinHandle<Written>),
    Done(Written),
}

impl Writer {
    /// Collects the thread's result once it has ended (with `block`, waits for it).
    fn settle(&mut self, block: bool) {
        let ended = match self {
            Writer::Running(h) => block || h.is_finished(),
            Writer::Done(_) => false,
        };
        if !ended {
            return;
        }
        let placeholder = Writer::Done(Err(anyhow::anyhow!("checkpoint writer settling")));
        if let Writer::Running(h) = std::mem::replace(self, placeholder) {
            // A panic on the thread has already aborted the job (dist's panic hook).
            let r = h
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the checkpoint writer panicked")));
            *self = Writer::Done(r);
        }
    }
}

impl Saver {
    /// Whether an asynchronous save is being written or waits for its commit.
    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// At the boundary after `step` training steps: the in-flight save's progress
    /// (committed if every rank has written), then the save `due` asks for: a periodic
    /// one in the background with `checkpoint.async`, a final one (a stop, the last step)
    /// in the foreground once the in-flight one is committed. Returns how long a save
    /// committed here took from its start to its commit. Collective: every rank calls it
    /// at the same boundaries (whenever a save is due or [`Saver::in_flight`]).
    pub fn after_step<B: Backend>(
        &mut self,
        dist: &Dist,
        engine: &Engine<'_, B>,
        cfg: &Config,
        step: u64,
        due: Due,
        loader: LoaderState,
    ) -> anyhow::Result<Option<Duration>> {
        let mut took = self.settle(dist, due != Due::Nothing)?;
        match due {
            Due::Nothing => {}
            Due::Periodic if cfg.checkpoint.async_write => {
                self.in_flight = Some(start(dist, engine, cfg, step, loader)?);
            }
            Due::Periodic | Due::Final => {
                let t = Instant::now();
                save(dist, engine, cfg, step, loader)?;
                took = Some(t.elapsed());
            }
        }
        Ok(took)
    }

    /// At the end of training: waits for the in-flight write and commits it. Collective.
    pub fn finish(&mut self, dist: &Dist) -> anyhow::Result<Option<Duration>> {
        self.settle(dist, true)
    }

    /// With a save in flight: agree whether every rank's write has ended (with `block`,
    /// wait for this rank's first); if one failed, every rank fails with its message; if
    /// all are done, commit. Collective whenever a save is in flight (on every rank alike).
    fn settle(&mut self, dist: &Dist, block: bool) -> anyhow::Result<Option<Duration>> {
        let Some(f) = self.in_flight.as_mut() else {
            return Ok(None);
        };
        if block {
            watchdog::note("waiting for the background checkpoint write", None);
        }
        f.writer.settle(block);
        let (running, failed) = match &f.writer {
            Writer::Running(_) => (true, false),
            Writer::Done(r) => (false, r.is_err()),
        };
        watchdog::note("the agreement that every rank wrote its checkpoint", None);
        let [any_running, any_failed] = dist
            .world()
            .all_reduce_f64s([running as u8 as f64, failed as u8 as f64], ScalarOp::Max);
        if any_failed > 0.0 {
            // Every rank's own writer ends first: its error joins the report, and no
            // write is left running while the job ends.
            f.writer.settle(true);
            let mine = match &f.writer {
                Writer::Done(Err(e)) => Some(format!("{e:#}")),
                _ => None,
            };
            let all = gather_messages(dist.world(), mine.as_deref())?;
            let msg = all
                .into_iter()
                .flatten()
                .next()
                .unwrap_or_else(|| "a rank's write failed".to_string());
            return Err(WriteFailed {
                step: f.target.step,
                msg,
            }
            .into());
        }
        if any_running > 0.0 {
            return Ok(None);
        }
        let Some(f) = self.in_flight.take() else {
            return Ok(None);
        };
        let Writer::Done(written) = f.writer else {
            anyhow::bail!("internal error: a running checkpoint write was agreed done");
        };
        let dir = commit(dist, &f.target, f.meta, written, f.keep)?;
        let took = f.started.elapsed();
        if dist.is_root() {
            log::info!(
                "checkpoint: saved step {} to {} in the background: committed {:.0} ms \
                 after its step boundary, which it held for {:.0} ms",
                f.target.step,
                dir.display(),
                took.as_secs_f64() * 1e3,
                f.stall.as_secs_f64() * 1e3
            );
        }
        Ok(Some(took))
    }
}

/// Starts an asynchronous save after `step`: this rank's pieces copied to host memory,
/// `step-N.tmp/` created (collective), the rank file written by a new thread.
fn start<B: Backend>(
    dist: &Dist,
    engine: &Engine<'_, B>,
    cfg: &Config,
    step: u64,
    loader: LoaderState,
) -> anyhow::Result<InFlight> {
    let started = Instant::now();
    let meta = draft_meta(engine, cfg, step, loader);
    let pieces: Vec<UnitPiece> = (0..engine.layout().units.len())
        .map(|u| engine.export_unit(u))
        .collect::<anyhow::Result<_>>()?;
    let target = begin(dist, cfg, step)?;
    let job = RankJob::new(dist, engine, &target);
    let thread = std::thread::Builder::new()
        .name("zerotrain-ckpt".into())
        .spawn(move || {
            let mut pieces = pieces.into_iter();
            job.write(|u| {
                pieces
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("no checkpoint piece for unit {u}"))
            })
        })
        .map_err(|e| anyhow::anyhow!("cannot start the checkpoint writer thread: {e}"))?;
    Ok(InFlight {
        target,
        meta,
        keep: cfg.checkpoint.keep,
        writer: Writer::Running(thread),
        started,
        stall: started.elapsed(),
    })
}
