//! The engine: this rank's model states in three parts that own them (parameters,
//! gradients, the sharded optimizer), and one optimizer step (micro-batches, gradient
//! reduction, the sharded update) driving them.
//!
//! Where each unit's states live, as the placements of `zero.stage` say (P =
//! `precision.dtype`, full = padded unit, all in backend memory):
//!
//! | stage | params         | grads                       | optimizer domain |
//! |-------|----------------|-----------------------------|------------------|
//! | 0     | full (f32 or P)| full                        | full             |
//! | 1     | full           | full, reduce-scatter at end | shard            |
//! | 2     | full           | shard (reduce-scatter/unit) | shard            |
//! | 3     | shard          | shard                       | shard            |
//!
//! fp32 parameters are their own master weights; half parameters get an fp32 master copy
//! over the optimizer domain. Compute always sees f32 buffers: fp32 full parameters
//! directly, anything else through a working buffer from a pool (gathered and/or
//! converted, released after use), so transient memory stays bounded by units.
use super::comm::{self, CommStats, Link, StagingPool, Transport};
use super::core::Core;
use super::grads::Grads;
use super::optimizer::ShardedOptimizer;
use super::params::Params;
use super::{optimizer_states, Layout, StagePlan};
use crate::config::{Config, DType};
use crate::data::Batch;
use crate::device::{Backend, Transfers};
use crate::dist::Group;
use crate::metrics::MemCounter;
use crate::model::{Model, UnitSpec};
use crate::optim::{clip_coef, LossScaler, StepHyper, UpdateRule};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

/// What one evaluation batch gave, the same on every rank.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalOutcome {
    /// Mean loss over the data-parallel ranks (each rank's the mean over its rows).
    pub loss: f64,
    /// Rows classified right and rows, summed over the ranks; `None` when the model
    /// reports no accuracy (GPT).
    pub correct: Option<(u64, u64)>,
    /// Some rank asked to stop.
    pub stop: bool,
}

/// What one optimizer step produced.
#[derive(Debug, Clone, Default)]
pub struct StepOutcome {
    /// Mean loss over micro-batches and ranks.
    pub loss: f64,
    pub grad_norm: f64,
    /// fp16 overflow: the update was skipped on every rank.
    pub skipped: bool,
    pub loss_scale: f64,
    pub compute_ms: f64,
    pub optimizer_ms: f64,
    pub comm: CommStats,
    /// Bytes the step copied between host and device (batch, logged scalars, and the
    /// staged transport's copies).
    pub transfers: Transfers,
    /// Some rank asked to stop (`ask_stop`), agreed by every rank in the step's
    /// all-reduce: the caller stops after this step.
    pub stop: bool,
}

/// The groups an engine trains over: data-parallel `dp` (loss and gradient averages),
/// `shard` (the layout's world: reduce-scatters and all-gathers) and, for hybrid sharding
/// (`zero.shard_group`, docs/architecture.md "Hybrid sharding"), `replicas`: the ranks
/// holding the same shard in the other shard groups, across which the reduced gradient
/// shards are summed. `dp` has `shard × replicas` ranks.
#[derive(Clone, Copy)]
pub struct Groups<'d> {
    pub dp: &'d Group,
    pub shard: &'d Group,
    pub replicas: Option<&'d Group>,
}

impl<'d> Groups<'d> {
    /// Every state sharded over all of `world` (plain ZeRO).
    pub fn flat(world: &'d Group) -> Groups<'d> {
        Groups {
            dp: world,
            shard: world,
            replicas: None,
        }
    }

    /// Sharded over `mesh.shard`, replicated across `mesh.replicas`.
    pub fn hybrid(world: &'d Group, mesh: &'d crate::dist::Mesh) -> Groups<'d> {
        Groups {
            dp: world,
            shard: &mesh.shard,
            replicas: Some(&mesh.replicas),
        }
    }
}

pub struct Engine<'d, B: Backend> {
    pub(super) core: Core<'d, B>,
    pub(super) model: Box<dyn Model<B>>,
    specs: Vec<UnitSpec>,
    /// The tied root unit, gathered for the whole step (unit 0 when there is one).
    root: Option<usize>,
    reshard_after_forward: bool,
    pub(super) params: Params<B>,
    grads: Grads<B>,
    pub(super) opt: ShardedOptimizer<B>,
    pub(super) scaler: LossScaler,
    /// Clip the global gradient norm to this.
    clip_max: Option<f64>,
    /// The transport and why it was chosen, for the start-up summary.
    transport_why: String,
    /// `system.collectives`: whether [`Engine::connect_collectives`] may or must use the
    /// backend's device collectives.
    collectives: String,
    /// Optimizer steps taken (1-based after the first).
    pub step: u64,
}

impl<'d, B: Backend> Engine<'d, B> {
    /// Builds the states of `model` for this rank, initialised from `cfg.train.seed`,
    /// training over `groups`.
    pub fn new(
        groups: Groups<'d>,
        backend: Arc<B>,
        model: Box<dyn Model<B>>,
        cfg: &Config,
    ) -> anyhow::Result<Self> {
        Self::with_init(groups, backend, model, cfg, None)
    }

    /// As [`Engine::new`], with unit u's initial values (`units()[u].numel`, canonical
    /// order, identical on every rank) from `init(u)` instead of the seeded
    /// `Model::init_unit` (e.g. `model.init = "hf:DIR"`). No collective.
    pub fn with_init(
        groups: Groups<'d>,
        backend: Arc<B>,
        model: Box<dyn Model<B>>,
        cfg: &Config,
        mut init: Option<&mut dyn FnMut(usize) -> anyhow::Result<Vec<f32>>>,
    ) -> anyhow::Result<Self> {
        let Groups {
            dp,
            shard,
            replicas,
        } = groups;
        let copies = replicas.map_or(1, |r| r.size());
        if shard.size() * copies != dp.size() {
            anyhow::bail!(
                "internal error: shard group {} ({} ranks) times {copies} replicas is not the data-parallel group {} ({} ranks)",
                shard.name(),
                shard.size(),
                dp.name(),
                dp.size()
            );
        }
        // The engine's collectives use MPI_IN_PLACE (the all-reduce and the publishing
        // all-gather, on every transport).
        anyhow::ensure!(
            shard.has_in_place() && dp.has_in_place(),
            "this MPI library's MPI_IN_PLACE is unknown (zerotrain knows Open MPI's and MPICH's), and the engine's collectives need it"
        );
        let specs: Vec<UnitSpec> = model.units().to_vec();
        let root = model.tied_root();
        if root.is_some_and(|r| r != 0) {
            anyhow::bail!("internal error: the tied root unit must be unit 0");
        }
        if cfg.system.collectives == "nccl" {
            if let Err(why) = backend.device_collectives() {
                anyhow::bail!("system.collectives = \"nccl\": {why}");
            }
        }
        let (transport, transport_why) = Transport::choose(backend.as_ref(), shard);
        let core = Core {
            layout: Layout::new(&specs, shard.size()),
            plan: StagePlan::new(
                cfg.zero.stage,
                cfg.precision.dtype,
                optimizer_states(cfg.train.optimizer),
                cfg.train.grad_accum,
            ),
            rank: shard.rank(),
            reduce: cfg.precision.reduce(),
            dp: Link {
                group: dp,
                transport,
            },
            shard: Link {
                group: shard,
                transport,
            },
            replicas: replicas.map(|group| Link { group, transport }),
            staging: StagingPool::default(),
            stats: CommStats::default(),
            backend,
        };
        // The units' initial values (padded), uploaded into the parts that hold them.
        let mut params = Params::new(specs.len(), cfg.zero.prefetch);
        let mut opt = ShardedOptimizer::new(&core, UpdateRule::from_config(&cfg.train))?;
        for (u, l) in core.layout.units.iter().enumerate() {
            let init = match init.as_mut() {
                Some(f) => f(u)?,
                None => model.init_unit(u, cfg.train.seed),
            };
            anyhow::ensure!(
                init.len() == l.numel,
                "internal error: unit {u}'s initial values have {} elements, the unit {}",
                init.len(),
                l.numel
            );
            let mut full = vec![0.0f32; l.padded];
            full[..l.numel].copy_from_slice(&init[..l.numel]);
            params.push_unit(&core, &full)?;
            opt.push_unit(&core, &full)?;
        }
        opt.allocate_states(&core)?;
        let bucket_bytes = (cfg.zero.bucket_mb * 1024.0 * 1024.0) as usize;
        let grads = Grads::new(&core, bucket_bytes)?;
        let scaler = if cfg.precision.dtype == DType::Fp16 {
            LossScaler::from_config(&cfg.precision)?
        } else {
            LossScaler::disabled()
        };
        Ok(Engine {
            core,
            model,
            specs,
            root,
            reshard_after_forward: cfg.zero.reshard_after_forward,
            params,
            grads,
            opt,
            scaler,
            clip_max: (cfg.train.clip_grad > 0.0).then_some(cfg.train.clip_grad),
            transport_why,
            collectives: cfg.system.collectives.clone(),
            step: 0,
        })
    }

    /// Moves the engine's collectives onto the backend's device collectives (NCCL) where
    /// `system.collectives` asks for them or allows them and every rank has them; else
    /// they stay on MPI. Collective: every rank calls it once, after `new`, before
    /// training (one communicator per group: the shard group serves as the data-parallel
    /// one when they are the same).
    pub fn connect_collectives(&mut self) -> anyhow::Result<()> {
        let (be, setting) = (self.core.backend.clone(), self.collectives.clone());
        let Some((transport, why)) = comm::connect_device(be.as_ref(), self.core.shard.group, &setting)?
        else {
            return Ok(());
        };
        self.core.shard.transport = transport;
        self.transport_why = why;
        match self.core.replicas.as_mut() {
            None => self.core.dp.transport = transport,
            Some(replicas) => {
                for link in [&mut self.core.dp, replicas] {
                    if let Some((t, _)) = comm::connect_device(be.as_ref(), link.group, &setting)? {
                        link.transport = t;
                    }
                }
            }
        }
        Ok(())
    }

    /// The partition layout (the shard group's world).
    pub fn layout(&self) -> &Layout {
        &self.core.layout
    }

    /// The stage, its placements and dtypes.
    pub fn plan(&self) -> &StagePlan {
        &self.core.plan
    }

    /// For the start-up summary: which groups the engine uses, and how their collectives
    /// reach the backend's memory.
    pub fn collectives_summary(&self) -> String {
        let (dp, shard) = (self.core.dp.group, self.core.shard.group);
        let replicas = match self.core.replicas {
            Some(r) => format!(", {} replicas of it (group {})", r.group.size(), r.group.name()),
            None => String::new(),
        };
        format!(
            "collectives: data-parallel group {} ({} ranks), shard group {} ({} ranks){replicas} on {}: {}",
            dp.name(),
            dp.size(),
            shard.name(),
            shard.size(),
            self.core.be().name(),
            self.transport_why
        )
    }

    /// Which rank file this rank writes in a checkpoint, and of how many: its place in
    /// the shard group, for the first replica only (the others hold the same states).
    pub fn checkpoint_file(&self) -> Option<(usize, usize)> {
        self.core
            .is_first_replica()
            .then(|| (self.core.rank, self.core.shard.group.size()))
    }

    /// The unit-local range of unit `u` the optimizer owns on this rank.
    pub fn domain(&self, u: usize) -> Range<usize> {
        self.core.domain(u)
    }

    /// Bytes this rank holds: persistent states counted from the allocated buffers, and
    /// the peaks of the transient ones (each part counts its own).
    pub fn memory(&self) -> MemCounter {
        let be = self.core.be();
        let mut mem = self.params.memory(be);
        let grads = self.grads.memory(be);
        mem.grads = grads.grads;
        mem.bucket_peak = grads.bucket_peak + self.opt.scratch_bytes(be);
        mem.optimizer = self.opt.bytes(be);
        mem
    }

    /// Runs `grad_accum` micro-batches from `next_batch` and one optimizer step at `lr`.
    /// `ask_stop` (this rank wants to stop: a signal, the time limit) rides on the step's
    /// own all-reduce, so every rank learns in `StepOutcome::stop` whether any asked.
    pub fn train_step(
        &mut self,
        next_batch: &mut dyn FnMut() -> anyhow::Result<Batch>,
        lr: f64,
        ask_stop: bool,
    ) -> anyhow::Result<StepOutcome> {
        self.core.stats.reset();
        let transfers_before = self.core.be().transfers();
        let accum = self.core.plan.grad_accum;
        let world = self.core.dp.group.size();
        let scale = self.scaler.scale();
        let mut loss_sum = 0.0f64;
        let t0 = Instant::now();
        for micro in 0..accum {
            let batch = next_batch()?;
            self.model.set_batch(&batch)?;
            // Backward starts from scale/(accum·world): a plain sum over ranks and
            // micro-batches then gives the loss-scaled mean gradient.
            self.model.set_grad_scale(scale / (accum * world) as f32);
            self.forward_all()?;
            loss_sum += self.model.loss() as f64;
            self.backward_all(micro + 1 == accum)?;
        }
        self.grads.finish(&mut self.core)?;
        // Once a step, before the optimizer reads the gradients: a failed kernel or copy
        // surfaces here under its own name (the backend records it), not later as a
        // "diverged" loss.
        self.core
            .be()
            .sync()
            .map_err(|e| e.context(format!("device error in step {}", self.step + 1)))?;
        let compute_ms = t0.elapsed().as_secs_f64() * 1e3 - self.core.stats.exposed_ms;
        let t1 = Instant::now();
        let (loss, grad_norm, skipped, stop) =
            self.optimizer_step(lr, loss_sum / accum as f64, ask_stop)?;
        self.core.stats.finish();
        Ok(StepOutcome {
            loss,
            grad_norm,
            skipped,
            loss_scale: scale as f64,
            compute_ms,
            optimizer_ms: t1.elapsed().as_secs_f64() * 1e3,
            comm: self.core.stats.clone(),
            transfers: self.core.be().transfers().since(transfers_before),
            stop,
        })
    }

    /// Loss of `batch` across ranks without touching gradients, the rows classified right
    /// (a classifier), and whether any rank asked to stop (`ask_stop`): all agreed in one
    /// all-reduce.
    pub fn eval_batch(&mut self, batch: &Batch, ask_stop: bool) -> anyhow::Result<EvalOutcome> {
        self.model.set_batch(batch)?;
        self.forward_all()?;
        self.core
            .be()
            .sync()
            .map_err(|e| e.context("device error in evaluation"))?;
        let local = self.model.loss() as f64;
        let correct = match batch {
            Batch::Features { y, .. } => self.model.correct(y),
            _ => None,
        };
        self.params.release_all(&self.core);
        let mut scratch = CommStats::default();
        let dp = self.core.dp.group;
        // Counts below 2^53 add exactly in f64, in any order: the sum is the same at
        // every world size.
        let (right, rows) = correct.map_or((0.0, 0.0), |(c, n)| (c as f64, n as f64));
        let [sum, asked, right, rows] = comm::sum_scalars(
            dp,
            [local, ask_stop as u8 as f64, right, rows],
            &mut scratch,
        );
        Ok(EvalOutcome {
            loss: sum / dp.size() as f64,
            correct: correct.map(|_| (right as u64, rows as u64)),
            stop: asked > 0.0,
        })
    }

    /// Forward through every unit, gathering or converting parameters as the stage needs.
    fn forward_all(&mut self) -> anyhow::Result<()> {
        if let Some(r) = self.root {
            self.params.materialize(&mut self.core, r)?;
        }
        for u in 0..self.specs.len() {
            self.params.materialize(&mut self.core, u)?;
            self.params.start_prefetch(&mut self.core, u + 1)?;
            let p = self.params.compute(u)?;
            let rp = match self.root.filter(|&r| r != u) {
                Some(r) => Some(self.params.compute(r)?),
                None => None,
            };
            self.model.forward_unit(u, p, rp)?;
            let keep = Some(u) == self.root
                || (self.core.plan.shards_params() && !self.reshard_after_forward);
            if !keep {
                self.params.release(&self.core, u);
            }
        }
        Ok(())
    }

    /// Backward through every unit in reverse, handing each unit's gradients to the
    /// reduction schedule as soon as they are complete.
    fn backward_all(&mut self, last_micro: bool) -> anyhow::Result<()> {
        if let Some(r) = self.root {
            self.grads.acquire_work(&self.core, r)?;
        }
        for u in (0..self.specs.len()).rev() {
            self.params.materialize(&mut self.core, u)?;
            if u > 0 {
                self.params.start_prefetch(&mut self.core, u - 1)?;
            }
            self.grads.acquire_work(&self.core, u)?;
            let p = self.params.compute(u)?;
            match self.root.filter(|&r| r != u) {
                Some(r) => {
                    let rp = self.params.compute(r)?;
                    let (g, rg) = self.grads.compute_mut_with_root(u, r)?;
                    self.model.backward_unit(u, p, g, Some((rp, rg)))?;
                }
                None => {
                    let g = self.grads.compute_mut(u)?;
                    self.model.backward_unit(u, p, g, None)?;
                }
            }
            self.params.release(&self.core, u);
            self.grads.ready(&mut self.core, u, last_micro)?;
            // MPI progress for everything in flight (docs/architecture.md, "Overlap").
            self.grads.progress();
            self.params.progress();
        }
        Ok(())
    }

    /// The optimizer step, given this rank's mean micro-batch loss: returns the mean loss
    /// over ranks, the global gradient norm (NaN when skipped), whether the step was
    /// skipped for an fp16 overflow and whether any rank asked to stop.
    fn optimizer_step(
        &mut self,
        lr: f64,
        local_loss: f64,
        ask_stop: bool,
    ) -> anyhow::Result<(f64, f64, bool, bool)> {
        let scale = self.scaler.scale() as f64;
        // One all-reduce (with the loss and the stop request) of the partial sums of
        // squares gives the global norm, and a non-finite sum is the fp16 overflow flag.
        let partial = self.opt.grad_sum_squares(&self.core, &mut self.grads)?;
        let dp = self.core.dp.group;
        let [loss_sum, sumsq, asked] = comm::sum_scalars(
            dp,
            [local_loss, partial, ask_stop as u8 as f64],
            &mut self.core.stats,
        );
        let loss = loss_sum / dp.size() as f64;
        let stop = asked > 0.0;
        if !sumsq.is_finite() {
            if self.core.plan.dtype != DType::Fp16 {
                let clip = crate::optim::clip_hint(self.clip_max.is_some());
                anyhow::bail!(
                    "non-finite gradient at step {} (loss {loss:.4e}): training diverged; lower train.lr{clip}",
                    self.step + 1
                );
            }
            self.scaler.update(true)?;
            self.grads.zero(self.core.be());
            return Ok((loss, f64::NAN, true, stop));
        }
        self.scaler.update(false)?;
        let grad_norm = sumsq.sqrt() / scale;
        let clip = self
            .clip_max
            .map(|m| clip_coef(grad_norm, m))
            .unwrap_or(1.0);
        let mult = (clip as f64 / scale) as f32;
        self.step += 1;
        let hp = StepHyper {
            lr: lr as f32,
            step: self.step,
        };
        self.opt.update(
            &self.core,
            &self.specs,
            &mut self.grads,
            &mut self.params,
            mult,
            &hp,
        )?;
        self.params.publish(&mut self.core, self.opt.master())?;
        self.grads.zero(self.core.be());
        Ok((loss, grad_norm, false, stop))
    }
}
