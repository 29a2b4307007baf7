//! `zerotrain train`: the training loop, readable top to bottom (as nanoGPT's train.py).
//!
//! 1. Every rank loads and checks the config; all ranks agree it is good before any
//!    other collective, so a bad config gives one clear error and no hang.
//! 2. Build the backend, the model, the engine (this rank's states) and the data.
//! 3. Loop: one optimizer step, metrics, evaluation, checkpoint.
//!    Any error from here on aborts the whole job (`dist::abort_on_error`). A signal or
//!    the time limit stops it early, agreed in the step's all-reduce (`stop.rs`): every
//!    rank saves and exits with `EXIT_STOPPED`. The watchdog (`dist::watchdog`) ends a
//!    job that makes no progress.
use super::divergence::DivergenceGuard;
use super::stop::{StopWatch, EXIT_STOPPED};
use crate::checkpoint;
use crate::config::{Config, DataSource, ModelKind, ShardGroup};
use crate::data::batch::Batch;
use crate::data::{open_source, BatchSource, Feed, LoaderSpec, LoaderState, Split};
use crate::device::dispatch::{run_on, OnBackend};
use crate::device::select::DeviceChoice;
use crate::device::Backend;
use crate::dist::watchdog::{self, Watchdog};
use crate::dist::{abort_on_error, eprint_line, Dist, Mesh, ScalarOp};
use crate::metrics::{
    summary_table, MemCounter, MetricsWriter, NodeBytes, PhaseTimes, Progress, StepRecord,
};
use crate::model::build_model;
use crate::zero::{Engine, Groups, StepOutcome};
use clap::Args;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    #[command(flatten)]
    pub cfg: super::ConfigArgs,
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let loaded = args.cfg.load();
    let cuda_aware = loaded
        .as_ref()
        .map(|c| c.system.cuda_aware.clone())
        .unwrap_or_else(|_| "auto".into());
    let dist = Dist::init(&cuda_aware)?;
    let code = match run_job(&dist, loaded.map_err(anyhow::Error::from), started) {
        Ok(Ended::Finished) => return Ok(()),
        Ok(Ended::Stopped) => EXIT_STOPPED,
        Err(Reported) => 1,
    };
    drop(dist); // MPI_Finalize on every rank: a clean, non-zero exit
    std::process::exit(code);
}

/// How a training run ended (every rank alike).
enum Ended {
    /// All `train.steps` done.
    Finished,
    /// Stopped early by a signal or the time limit, after saving a checkpoint.
    Stopped,
}

/// An error every rank has already printed (see [`agree`]).
struct Reported;

/// Set-up errors (config, data, model, checkpoint) are agreed on before training, so every
/// rank reports them and exits cleanly; errors inside the loop abort the job.
fn run_job(
    dist: &Dist,
    loaded: anyhow::Result<Config>,
    started: Instant,
) -> Result<Ended, Reported> {
    let cfg = agree(
        dist,
        loaded.and_then(|c| Ok(c.validate(dist.size()).map(|_| c)?)),
    )?;
    // One job per checkpoint directory, held until the job ends.
    let _lock = agree(dist, checkpoint::lock_dir(dist, &cfg.checkpoint))?;
    let choice = agree(dist, choose_device(dist, &cfg))?;
    let stop = agree(dist, StopWatch::install(&cfg.train, started))?;
    if cfg.system.collective_timeout > 0.0 {
        let timeout = Duration::from_secs_f64(cfg.system.collective_timeout);
        // Bound everywhere before the collective exchange, so a rank that cannot bind
        // fails with the others instead of leaving them in the exchange.
        let listening = agree(dist, Watchdog::bind(dist))?;
        agree(dist, listening.start(dist, timeout))?;
    }
    let threads = usable_threads(dist, cfg.system.threads);
    agree(dist, crate::device::check_blas_room(threads))?;
    let job = TrainOn {
        dist,
        cfg: &cfg,
        stop,
    };
    match run_on(choice, threads, job) {
        Ok(done) => done,
        // This rank could not build its backend; the others report it at their next
        // agreement.
        Err(e) => agree(dist, Err(e)),
    }
}

/// `system.threads`, at most the cores this rank may run on (its affinity mask and
/// cgroup quota): more threads than cores only contend.
fn usable_threads(dist: &Dist, asked: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(asked, |n| n.get());
    if asked > cores {
        log::warn!(
            "rank {}: system.threads = {asked} but this rank may use {cores} core(s); using {cores}",
            dist.rank()
        );
    }
    asked.min(cores)
}

/// The rest of the job, on the backend `system.device` chose.
struct TrainOn<'a> {
    dist: &'a Dist,
    cfg: &'a Config,
    stop: StopWatch,
}

impl OnBackend for TrainOn<'_> {
    type Out = Result<Ended, Reported>;
    fn run<B: Backend + 'static>(self, backend: Arc<B>) -> Result<Ended, Reported> {
        let (dist, cfg, mut stop) = (self.dist, self.cfg, self.stop);
        let mesh = agree(dist, shard_mesh(dist, cfg))?;
        let mut engine = agree(dist, build_engine(dist, &mesh, cfg, backend))?;
        // Collective (NCCL where it loads on every rank, if system.collectives allows). A
        // failure may leave other ranks inside NCCL's join, so it aborts the job.
        if let Err(e) = engine.connect_collectives() {
            abort_on_error(dist, &e);
        }
        if dist.is_root() {
            log::info!("{}", engine.collectives_summary());
        }
        // Collective, but every rank checks the checkpoint before its first collective and
        // all agree on the outcome, so a bad checkpoint fails alike on every rank.
        let t = Instant::now();
        let resumed = agree(dist, checkpoint::resume(dist, &mut engine, cfg))?;
        if resumed.is_some() {
            stop.save_took(t.elapsed()); // a save writes what the load read
        }
        let io = agree(dist, open_io(dist, cfg, resumed))?;
        // The engine outlives the abort: dropping it first would wait on collectives in
        // flight that the other ranks may never finish.
        match train(dist, cfg, &mut engine, io, &mut stop) {
            Ok(ended) => Ok(ended),
            // Agreed on every rank at a step boundary, where no collective is in flight:
            // every rank says it and the job ends cleanly, non-zero.
            Err(e) if e.is::<checkpoint::WriteFailed>() => {
                eprint_line(&format!("error: rank {}: {e:#}", dist.rank()));
                let _ = dist.world().barrier();
                Err(Reported)
            }
            Err(e) => abort_on_error(dist, &e),
        }
    }
}

/// Every rank reports whether its part succeeded; if any failed, every rank prints its
/// error (or that another rank failed) and waits for the others at a barrier (so mpirun
/// does not kill a rank before it has printed). Nobody proceeds to a collective that a
/// failed rank would never join.
fn agree<T>(dist: &Dist, local: anyhow::Result<T>) -> Result<T, Reported> {
    let failed = dist
        .world()
        .all_reduce_f64(if local.is_err() { 1.0 } else { 0.0 }, ScalarOp::Sum);
    let prefix = format!("rank {}: ", dist.rank());
    let message = match local {
        Err(e) => {
            let m = format!("{e:#}");
            m.strip_prefix(&prefix).map(str::to_string).unwrap_or(m)
        }
        Ok(v) if failed == 0.0 => return Ok(v),
        Ok(_) => "another rank failed during set-up".to_string(),
    };
    eprint_line(&format!("error: {prefix}{message}"));
    let _ = dist.world().barrier();
    Err(Reported)
}

/// The shard and replica groups `zero.shard_group` asks for (collective; the same
/// outcome on every rank), or `None` where the states are sharded over the whole world
/// (a shard group as large as the world has no replicas).
pub(crate) fn shard_mesh(dist: &Dist, cfg: &Config) -> anyhow::Result<Option<Mesh>> {
    let mesh = match cfg.zero.shard_group().map_err(anyhow::Error::msg)? {
        ShardGroup::World => return Ok(None),
        ShardGroup::Node if dist.local_size() == dist.size() => return Ok(None),
        ShardGroup::Ranks(k) if k == dist.size() => return Ok(None),
        ShardGroup::Node => dist.mesh_by_node()?,
        ShardGroup::Ranks(k) => dist.mesh_by_blocks(k)?,
    };
    Ok(Some(mesh))
}

/// The model and this rank's states on `backend` (no collectives), sharded over `mesh`
/// (or the world); `bench step` builds its engine here too, so it measures what `train`
/// runs.
pub(crate) fn build_engine<'d, B: Backend + 'static>(
    dist: &'d Dist,
    mesh: &'d Option<Mesh>,
    cfg: &Config,
    backend: Arc<B>,
) -> anyhow::Result<Engine<'d, B>> {
    let groups = match mesh {
        Some(m) => Groups::hybrid(dist.world(), m),
        None => Groups::flat(dist.world()),
    };
    let model = build_model(&cfg.model, cfg.train.micro_batch, backend.clone())?;
    // Not read when checkpoint.resume will load a checkpoint (checkpoint::resumes).
    let hf_dir =
        checkpoint::hf::init_dir(&cfg.model.init).filter(|_| !checkpoint::resumes(&cfg.checkpoint));
    match hf_dir {
        // Every rank opens and checks the directory (no collective; the caller agrees
        // on the outcome), then reads each unit as the engine builds it.
        Some(dir) => {
            let hf = checkpoint::hf::HfInit::open(dir, &cfg.model)?;
            let mut init = |u: usize| hf.unit(u);
            Engine::with_init(groups, backend, model, cfg, Some(&mut init))
        }
        None => Engine::new(groups, backend, model, cfg),
    }
}

/// The backend `system.device` asks for on this rank (logged by rank 0).
fn choose_device(dist: &Dist, cfg: &Config) -> anyhow::Result<DeviceChoice> {
    let (choice, why) =
        crate::device::select::select(&cfg.system.device, dist.local_rank(), dist.local_size())?;
    if dist.is_root() {
        log::info!("device: {why}");
    }
    Ok(choice)
}

/// What the loop reads and writes, opened (and so checked) before training.
struct Io {
    /// The first step to run (> 0 when resuming).
    start: usize,
    train_data: Box<dyn BatchSource>,
    /// The batches every evaluation runs on: the first `eval_batches` of the val split
    /// (empty when not evaluating), read once so evaluations compare.
    val_batches: Vec<Batch>,
    /// Rank 0's metrics file (appended to when resuming).
    metrics: Option<MetricsWriter>,
}

/// Opens the training data at the resumed position, reads the val batches, creates the
/// checkpoint directory and opens the metrics file.
fn open_io(dist: &Dist, cfg: &Config, resumed: Option<checkpoint::Resumed>) -> anyhow::Result<Io> {
    let start = resumed.as_ref().map_or(0, |r| r.step as usize);
    let train_data = open_split(dist, cfg, Split::Train, resumed.map(|r| r.loader))?;
    let val_batches = if evaluating(cfg) {
        let mut val = open_split(dist, cfg, Split::Val, None)?;
        (0..cfg.train.eval_batches)
            .map(|_| val.next_batch())
            .collect::<anyhow::Result<_>>()?
    } else {
        Vec::new()
    };
    if !cfg.checkpoint.dir.is_empty() {
        std::fs::create_dir_all(&cfg.checkpoint.dir)
            .map_err(|e| anyhow::anyhow!("checkpoint.dir {}: {e}", cfg.checkpoint.dir))?;
    }
    let metrics = match (dist.is_root(), cfg.log.metrics.as_str()) {
        (true, path) if !path.is_empty() => Some(MetricsWriter::create(path.as_ref(), start > 0)?),
        _ => None,
    };
    Ok(Io {
        start,
        train_data,
        val_batches,
        metrics,
    })
}

fn evaluating(cfg: &Config) -> bool {
    cfg.train.eval_every > 0 && cfg.train.eval_batches > 0
}

fn open_split(
    dist: &Dist,
    cfg: &Config,
    split: Split,
    resume: Option<LoaderState>,
) -> anyhow::Result<Box<dyn BatchSource>> {
    let spec = LoaderSpec {
        rank: dist.rank(),
        world: dist.size(),
        micro_batch: cfg.train.micro_batch,
        ctx: match cfg.model.kind {
            ModelKind::Gpt => cfg.model.ctx,
            ModelKind::Mlp => cfg.model.inputs,
        },
        seed: cfg.train.seed,
        sampling: cfg.data.sampling,
        split,
        prefetch: cfg.data.prefetch,
    };
    open_source(&cfg.data, Feed::from(&cfg.model), spec, resume)
}

fn train<B: Backend>(
    dist: &Dist,
    cfg: &Config,
    engine: &mut Engine<'_, B>,
    io: Io,
    stop: &mut StopWatch,
) -> anyhow::Result<Ended> {
    let Io {
        start,
        mut train_data,
        val_batches,
        mut metrics,
    } = io;
    if dist.is_root() {
        print_summary(dist, cfg, engine);
    }
    let per_step = cfg.global_batch(dist.size());
    let tokens_per_sample = if cfg.model.kind == ModelKind::Gpt {
        cfg.model.ctx
    } else {
        1
    };
    let progress = Progress::new(
        dist.is_root(),
        start as u64,
        cfg.train.steps as u64,
        cfg.log.every,
    );
    let mut last = None;
    let mut divergence = DivergenceGuard::new(match cfg.model.kind {
        ModelKind::Gpt => cfg.model.vocab,
        ModelKind::Mlp => cfg.model.classes,
    });
    let mut saver = checkpoint::Saver::default();
    for step in start..cfg.train.steps {
        let lr = crate::optim::lr_at(&cfg.train, step);
        watchdog::note_step(step as u64 + 1);
        let t0 = Instant::now();
        let wait0 = train_data.wait_ms();
        let ask = stop.asks().is_some();
        let out = engine.train_step(&mut || train_data.next_batch(), lr, ask)?;
        stop.step_took(t0.elapsed());
        let step_ms = t0.elapsed().as_secs_f64() * 1e3;
        let data_wait_ms = train_data.wait_ms() - wait0;
        let is_last = step + 1 == cfg.train.steps;
        if !out.skipped {
            divergence.check(step + 1, out.loss, || diverged_hint(cfg, lr))?;
        }
        let mut stopping = out.stop;
        let val = if !stopping
            && evaluating(cfg)
            && ((step + 1) % cfg.train.eval_every == 0 || is_last)
        {
            watchdog::note("evaluation", None);
            let (val, stopped) = evaluate(engine, &val_batches, stop)?;
            stopping = stopped;
            val
        } else {
            None
        };
        let mut pending = None;
        if progress.logs(step as u64 + 1, val.is_some(), out.skipped) {
            let rec = record(
                dist,
                engine,
                step,
                lr,
                &out,
                step_ms,
                data_wait_ms,
                val,
                per_step,
                tokens_per_sample,
            );
            pending = Some(rec);
        }
        // A save is due every `checkpoint.every` steps, at the last step and when
        // stopping; a stop or the end waits for a background save in flight and saves in
        // the foreground, so nothing is left unwritten when the job exits.
        let due = match (
            checkpoint::should_save(cfg, step as u64 + 1, is_last)
                || (stopping && !cfg.checkpoint.dir.is_empty()),
            stopping || is_last,
        ) {
            (false, _) => checkpoint::Due::Nothing,
            (true, false) => checkpoint::Due::Periodic,
            (true, true) => checkpoint::Due::Final,
        };
        if due != checkpoint::Due::Nothing || saver.in_flight() {
            watchdog::note("saving a checkpoint", None);
            let t = Instant::now();
            let committed =
                saver.after_step(dist, engine, cfg, step as u64 + 1, due, train_data.state())?;
            if let Some(took) = committed {
                stop.save_took(took);
            }
            if let Some(rec) = pending.as_mut() {
                rec.save_ms = Some(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        if let Some(rec) = pending.take() {
            if let Some(w) = metrics.as_mut() {
                w.write(&rec)?;
            }
            progress.update(&rec);
            last = Some(rec);
        }
        if stopping && !is_last {
            progress.finish();
            if dist.is_root() {
                stopped_message(cfg, step + 1);
            }
            return Ok(Ended::Stopped);
        }
    }
    saver.finish(dist)?;
    progress.finish();
    if let (true, Some(rec)) = (dist.is_root(), last) {
        let val = rec
            .val_loss
            .map(|v| format!(" val_loss {v:.4}"))
            .unwrap_or_default();
        let acc = rec
            .val_acc
            .map(|a| format!(" val_acc {a:.4}"))
            .unwrap_or_default();
        println!("final: step {} loss {:.4}{val}{acc}", rec.step, rec.loss);
    }
    Ok(Ended::Finished)
}

/// Rank 0's line when the run stopped early.
fn stopped_message(cfg: &Config, step: usize) {
    let how = if cfg.checkpoint.dir.is_empty() {
        "no checkpoint.dir is set, so nothing was saved to resume from".to_string()
    } else {
        format!(
            "saved step {step} in {}; run again with checkpoint.resume = \"auto\" to go on",
            cfg.checkpoint.dir
        )
    };
    println!(
        "stopped early at step {step} of {}: {how} (exit code {EXIT_STOPPED})",
        cfg.train.steps
    );
}

/// What to change when the loss diverges: the learning rate, and clipping when it is off.
fn diverged_hint(cfg: &Config, lr: f64) -> String {
    let clip = crate::optim::clip_hint(cfg.train.clip_grad > 0.0);
    format!("lower train.lr (the step ran at {lr:.3e}){clip}")
}

/// One evaluation over the val batches, the same on every rank.
#[derive(Debug, Clone, Copy)]
struct Validation {
    /// Mean loss over the batches (each the mean over ranks).
    loss: f64,
    /// Classifiers: the fraction of all val rows (every batch, every rank) whose argmax
    /// class is their label.
    acc: Option<f64>,
}

/// Validation over `batches` (not empty); `None` (and true) when a rank asked to stop,
/// which every rank learns at the same batch. Each batch's correct-row count rides in the
/// all-reduce its loss takes (`Engine::eval_batch`): no collective of its own.
fn evaluate<B: crate::device::Backend>(
    engine: &mut Engine<'_, B>,
    batches: &[Batch],
    stop: &mut StopWatch,
) -> anyhow::Result<(Option<Validation>, bool)> {
    let mut sum = 0.0;
    let mut counts: Option<(u64, u64)> = None;
    for batch in batches {
        let out = engine.eval_batch(batch, stop.asks().is_some())?;
        if out.stop {
            return Ok((None, true));
        }
        sum += out.loss;
        if let Some((right, rows)) = out.correct {
            let (r, n) = counts.unwrap_or((0, 0));
            counts = Some((r + right, n + rows));
        }
    }
    let val = Validation {
        loss: sum / batches.len() as f64,
        acc: counts.map(|(right, rows)| right as f64 / rows.max(1) as f64),
    };
    Ok((Some(val), false))
}

#[allow(clippy::too_many_arguments)]
fn record<B: crate::device::Backend>(
    dist: &Dist,
    engine: &Engine<'_, B>,
    step: usize,
    lr: f64,
    out: &StepOutcome,
    step_ms: f64,
    data_wait_ms: f64,
    val: Option<Validation>,
    per_step: usize,
    tokens_per_sample: usize,
) -> StepRecord {
    let mut mem = engine.memory();
    mem.refresh_rss();
    // Every rank's memory (one all-gather), and its maximum over ranks.
    let mem_ranks = gather_memory(dist, &mem);
    let mem_arr = (0..6).fold([0u64; 6], |mut acc, i| {
        acc[i] = mem_ranks.iter().map(|m| m.to_array()[i]).max().unwrap_or(0);
        acc
    });
    // Times: maximum over ranks.
    let times = PhaseTimes {
        compute_ms: out.compute_ms,
        optimizer_ms: out.optimizer_ms,
        comm_ms: out.comm.comm_ms,
        comm_exposed_ms: out.comm.exposed_ms,
        data_wait_ms,
    };
    let times = PhaseTimes::from_array(
        dist.world()
            .all_reduce_f64s(times.to_array(), ScalarOp::Max),
    );
    let rate = per_step as f64 / (step_ms / 1e3);
    let [h2d, d2h] = dist.world().all_reduce_f64s(
        [out.transfers.h2d as f64, out.transfers.d2h as f64],
        ScalarOp::Max,
    );
    // Counts below 2^53 add exactly in f64.
    let [intra_node, inter_node] = dist.world().all_reduce_f64s(
        [out.comm.bytes.intra_node as f64, out.comm.bytes.inter_node as f64],
        ScalarOp::Sum,
    );
    StepRecord {
        step: step as u64 + 1,
        loss: out.loss,
        lr,
        grad_norm: out.grad_norm,
        tokens_per_s: (tokens_per_sample > 1).then_some(rate * tokens_per_sample as f64),
        samples_per_s: (tokens_per_sample == 1).then_some(rate),
        step_ms,
        val_loss: val.map(|v| v.loss),
        val_acc: val.and_then(|v| v.acc),
        loss_scale: out.loss_scale,
        times,
        mem: MemCounter::from_array(mem_arr),
        mem_ranks,
        comm: out.comm.counter,
        comm_bytes: NodeBytes {
            intra_node: intra_node as u64,
            inter_node: inter_node as u64,
        },
        skipped: out.skipped,
        h2d_bytes: h2d as u64,
        d2h_bytes: d2h as u64,
        save_ms: None,
    }
}

/// Each rank's memory counters, index = rank.
fn gather_memory(dist: &Dist, mem: &MemCounter) -> Vec<MemCounter> {
    let mine = mem.to_array();
    // MPI_ERRORS_ARE_FATAL is the world's handler: a failed gather aborts the job.
    let all = dist.world().all_gather_u64s(&mine).unwrap_or_default();
    all.chunks_exact(6)
        .map(|c| MemCounter::from_array([c[0], c[1], c[2], c[3], c[4], c[5]]))
        .collect()
}

fn print_summary<B: crate::device::Backend>(dist: &Dist, cfg: &Config, engine: &Engine<'_, B>) {
    let m = engine.memory();
    let mib = |b: u64| format!("{:.2} MiB", b as f64 / 1048576.0);
    let data = match cfg.data.source {
        DataSource::Synthetic => "synthetic".to_string(),
        DataSource::Hdf5 => format!("{} ({:?})", cfg.data.path, cfg.data.sampling),
    };
    let rows = [
        (
            "world",
            format!("{} ranks ({} on this node)", dist.size(), dist.local_size()),
        ),
        ("zero stage", cfg.zero.stage.to_string()),
        (
            "dtype",
            format!(
                "{} (reduce {})",
                cfg.precision.dtype.name(),
                cfg.precision.reduce().name()
            ),
        ),
        (
            "model",
            format!(
                "{:?}, {} parameters",
                cfg.model.kind,
                engine.layout().numel()
            ),
        ),
        (
            "per-rank memory",
            format!(
                "params {} + grads {} + optimizer {}",
                mib(m.params),
                mib(m.grads),
                mib(m.optimizer)
            ),
        ),
        (
            "batch",
            format!(
                "{} per rank x {} accum x {} ranks = {}",
                cfg.train.micro_batch,
                cfg.train.grad_accum,
                dist.size(),
                cfg.global_batch(dist.size())
            ),
        ),
        ("data", data),
        (
            "checkpoint",
            if cfg.checkpoint.dir.is_empty() {
                "off".into()
            } else {
                cfg.checkpoint.dir.clone()
            },
        ),
    ];
    println!("{}", summary_table(&rows));
}
