//! The engine: holds this rank's model states as the stage dictates and runs one
//! optimizer step (micro-batches, gradient reduction, the sharded update).
//!
//! Where each unit's states live (P = `precision.dtype`, full = padded unit):
//!
//! | stage | params                      | grads                       | optimizer domain |
//! |-------|-----------------------------|-----------------------------|------------------|
//! | 0     | full (device f32, or host P)| full                        | full             |
//! | 1     | full                        | full, reduce-scatter at end | shard            |
//! | 2     | full                        | shard (reduce-scatter/unit) | shard            |
//! | 3     | shard (host P)              | shard                       | shard            |
//!
//! fp32 parameters are their own master weights; half parameters get an fp32 master copy
//! over the optimizer domain. Compute always sees f32 device buffers: fp32 full
//! parameters directly, anything else through a working buffer from a pool (gathered
//! and/or converted, released after use), so transient memory stays bounded by units.
use super::comm::{self, CommStats, InFlight, Link, MemPair, StagingPool, Transport};
use super::grads::grads_f32;
use super::{buckets, optimizer_states, Layout, StagePlan};
use crate::config::{Config, DType};
use crate::data::Batch;
use crate::device::{Backend, Store, Transfers};
use crate::dist::Group;
use crate::metrics::MemCounter;
use crate::model::{Model, UnitSpec};
use crate::optim::{clip_coef, LossScaler, StepHyper, UpdateRule};
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

/// Where one unit's parameters or gradients live (always backend memory).
pub(super) enum Home<B: Backend> {
    /// fp32: the full unit, which kernels use directly, or a stage-3 parameter shard.
    F32(B::Buf),
    /// Typed memory in the run's dtype (full or this rank's shard).
    Typed(B::Mem),
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
}

pub struct Engine<'d, B: Backend> {
    /// The data-parallel group: gradients and losses are averaged over it.
    pub(super) dp: &'d Group,
    /// The group states are sharded over (the layout's world); today always `dp`.
    pub(super) shard: &'d Group,
    /// The two groups with the transport their collectives use.
    pub(super) dp_link: Link<'d>,
    pub(super) shard_link: Link<'d>,
    /// Host buffers of the staged transport (unused when direct).
    pub(super) staging: StagingPool,
    /// The transport and why it was chosen, for the start-up summary.
    transport_why: String,
    pub(super) backend: Arc<B>,
    pub(super) model: Box<dyn Model<B>>,
    pub(super) specs: Vec<UnitSpec>,
    pub layout: Layout,
    pub plan: StagePlan,
    pub(super) rank: usize,
    pub(super) reduce: DType,
    pub(super) root: Option<usize>,
    pub(super) reshard_after_forward: bool,
    pub(super) prefetch: bool,
    pub(super) params: Vec<Home<B>>,
    pub(super) grads: Vec<Home<B>>,
    /// fp32 master weights over each unit's optimizer domain (none when params are fp32).
    pub(super) master: Vec<Option<B::Buf>>,
    /// The optimizer's update rule and its state vectors (one per state name), each the
    /// concatenation of this rank's domains of all units.
    pub(super) rule: UpdateRule,
    pub(super) states: Vec<B::Buf>,
    /// Offset of each unit's optimizer domain in the optimizer's flat state.
    pub(super) opt_offsets: Vec<usize>,
    pub(super) scaler: LossScaler,
    // Working buffers (f32, device) for parameters and gradients, per unit while in use.
    pub(super) pwork: Vec<Option<B::Buf>>,
    pub(super) pfree: Vec<B::Buf>,
    pub(super) gwork: Vec<Option<B::Buf>>,
    pub(super) gfree: Vec<B::Buf>,
    /// Stage 3: (send, receive) buffers for all-gathers, and the one in flight.
    pub(super) gather_bufs: Vec<MemPair<B>>,
    pub(super) prefetched: Option<(usize, InFlight<B>)>,
    /// f32 scratch the size of the largest unit: typed gradients converted for the
    /// optimizer and the norm.
    pub(super) gtmp: B::Buf,
    pub(super) buckets: Vec<Vec<usize>>,
    pub(super) bucket_of: Vec<usize>,
    pub(super) bucket_ready: Vec<usize>,
    /// Gradient buckets' (send, receive) buffers, sized once for the largest bucket.
    pub(super) bucket_bufs: Vec<MemPair<B>>,
    pub(super) in_flight: VecDeque<(usize, InFlight<B>)>,
    /// Transient buffers (gathered parameters, gradient buckets): bytes now and peaks.
    pub(super) transient: MemCounter,
    pub(super) stats: CommStats,
    /// Clip the global gradient norm to this.
    pub(super) clip_max: Option<f64>,
    /// Optimizer steps taken (1-based after the first).
    pub step: u64,
    /// Steps attempted, skipped ones included.
    pub(super) attempts: u64,
    /// Test hook `ZEROTRAIN_TEST_OVERFLOW=STEP:RANK`: that rank's gradient shard gets an
    /// infinity at that (1-based) step, as an fp16 overflow would.
    pub(super) inject_overflow: Option<(u64, usize)>,
}

/// At most this many gradient buckets are in flight; a further one waits for the oldest.
pub(super) const MAX_BUCKETS_IN_FLIGHT: usize = 2;

impl<'d, B: Backend> Engine<'d, B> {
    /// Builds the states of `model` for this rank, initialised from `cfg.train.seed`,
    /// training data-parallel over `dp` with states sharded over `shard`.
    pub fn new(
        dp: &'d Group,
        shard: &'d Group,
        backend: Arc<B>,
        model: Box<dyn Model<B>>,
        cfg: &Config,
    ) -> anyhow::Result<Self> {
        if shard.size() != dp.size() {
            anyhow::bail!(
                "sharding over group {} ({} ranks) within data-parallel group {} ({} ranks) is not built yet: the shard group must be the data-parallel group",
                shard.name(),
                shard.size(),
                dp.name(),
                dp.size()
            );
        }
        let world = shard.size();
        let rank = shard.rank();
        let specs: Vec<UnitSpec> = model.units().to_vec();
        let layout = Layout::new(&specs, world);
        let plan = StagePlan::new(
            cfg.zero.stage,
            cfg.precision.dtype,
            optimizer_states(cfg.train.optimizer),
            cfg.train.grad_accum,
        );
        let root = model.tied_root();
        if root.is_some_and(|r| r != 0) {
            anyhow::bail!("internal error: the tied root unit must be unit 0");
        }
        let reduce = cfg.precision.reduce();
        let bucket_elems_bytes = reduce.bytes();
        let bucket_bytes = (cfg.zero.bucket_mb * 1024.0 * 1024.0) as usize;
        let buckets = buckets(&layout, bucket_bytes, bucket_elems_bytes);
        let mut bucket_of = vec![0; specs.len()];
        for (b, units) in buckets.iter().enumerate() {
            for &u in units {
                bucket_of[u] = b;
            }
        }
        let n_units = specs.len();
        let (transport, transport_why) = Transport::choose(backend.as_ref(), shard);
        let rule = UpdateRule::from_config(&cfg.train);
        let mut engine = Engine {
            dp,
            shard,
            dp_link: Link {
                group: dp,
                transport,
            },
            shard_link: Link {
                group: shard,
                transport,
            },
            staging: StagingPool::default(),
            transport_why,
            gtmp: backend.alloc(layout.max_padded())?,
            backend,
            model,
            specs,
            plan,
            rank,
            reduce,
            root,
            reshard_after_forward: cfg.zero.reshard_after_forward,
            prefetch: cfg.zero.prefetch,
            params: Vec::with_capacity(n_units),
            grads: Vec::with_capacity(n_units),
            master: Vec::with_capacity(n_units),
            rule,
            states: Vec::new(),
            opt_offsets: Vec::with_capacity(n_units),
            scaler: LossScaler::disabled(),
            pwork: (0..n_units).map(|_| None).collect(),
            pfree: Vec::new(),
            gwork: (0..n_units).map(|_| None).collect(),
            gfree: Vec::new(),
            gather_bufs: Vec::new(),
            prefetched: None,
            bucket_ready: vec![0; buckets.len()],
            buckets,
            bucket_of,
            bucket_bufs: Vec::new(),
            in_flight: VecDeque::new(),
            transient: MemCounter::default(),
            stats: CommStats::default(),
            layout,
            clip_max: (cfg.train.clip_grad > 0.0).then_some(cfg.train.clip_grad),
            step: 0,
            attempts: 0,
            inject_overflow: std::env::var("ZEROTRAIN_TEST_OVERFLOW").ok().and_then(|v| {
                let (s, r) = v.split_once(':')?;
                Some((s.trim().parse().ok()?, r.trim().parse().ok()?))
            }),
        };
        if engine.plan.dtype == DType::Fp16 {
            engine.scaler = LossScaler::from_config(&cfg.precision)?;
        }
        engine.allocate_states(cfg.train.seed)?;
        Ok(engine)
    }

    /// For the start-up summary: which groups the engine uses, and how their collectives
    /// reach the backend's memory.
    pub fn collectives_summary(&self) -> String {
        format!(
            "collectives: data-parallel group {} ({} ranks), shard group {} ({} ranks) on {}: {}",
            self.dp.name(),
            self.dp.size(),
            self.shard.name(),
            self.shard.size(),
            self.backend.name(),
            self.transport_why
        )
    }

    /// The unit-local range of unit `u` the optimizer owns on this rank.
    pub fn domain(&self, u: usize) -> Range<usize> {
        let l = &self.layout.units[u];
        if self.plan.shards_optimizer() {
            l.shard_range(self.rank)
        } else {
            0..l.padded
        }
    }

    /// Allocates this rank's states in backend memory and uploads the initial values.
    fn allocate_states(&mut self, seed: u64) -> anyhow::Result<()> {
        let be = self.backend.clone();
        let mut opt_len = 0;
        for u in 0..self.specs.len() {
            let l = self.layout.units[u].clone();
            let init = self.model.init_unit(u, seed);
            let mut full = vec![0.0f32; l.padded];
            full[..l.numel].copy_from_slice(&init[..l.numel]);
            // Parameters: this rank's shard (stage 3) or the full unit, fp32 or typed.
            let held = if self.plan.shards_params() {
                &full[l.shard_range(self.rank)]
            } else {
                &full[..]
            };
            let params = if self.plan.dtype == DType::Fp32 {
                let mut buf = be.alloc(held.len())?;
                be.upload(&mut buf, held);
                Home::F32(buf)
            } else {
                let mut host = Store::zeros(self.plan.dtype, held.len());
                host.write_f32(0, held);
                let mut m = be.alloc_mem(self.plan.dtype, held.len())?;
                be.upload_mem(&mut m, 0, &host, 0, held.len());
                Home::Typed(m)
            };
            // Gradients: fp32 full ones are what backward accumulates into directly.
            let grad_dtype = self.plan.grad_dtype();
            let grads = if self.plan.shards_grads() {
                Home::Typed(be.alloc_mem(grad_dtype, l.shard)?)
            } else if grad_dtype == DType::Fp32 {
                Home::F32(be.alloc(l.padded)?)
            } else {
                Home::Typed(be.alloc_mem(grad_dtype, l.padded)?)
            };
            // Master weights over the optimizer domain.
            let domain = self.domain(u);
            let master = if self.plan.has_master() {
                let mut m = be.alloc(domain.len())?;
                be.upload(&mut m, &full[domain.clone()]);
                Some(m)
            } else {
                None
            };
            self.params.push(params);
            self.grads.push(grads);
            self.master.push(master);
            self.opt_offsets.push(opt_len);
            opt_len += domain.len();
        }
        // Optimizer states, zero as PyTorch's lazily created state is on the first step.
        self.states = (0..self.rule.state_names().len())
            .map(|_| be.alloc(opt_len))
            .collect::<anyhow::Result<_>>()?;
        Ok(())
    }

    /// Bytes this rank holds: persistent states counted from the allocated buffers, and
    /// the peaks of the transient ones.
    pub fn memory(&self) -> MemCounter {
        let be = self.backend.as_ref();
        let home_bytes = |h: &Home<B>| match h {
            Home::F32(b) => be.len(b) as u64 * 4,
            Home::Typed(m) => (be.mem_len(m) * be.mem_dtype(m).bytes()) as u64,
        };
        let f32_bytes = |b: &B::Buf| be.len(b) as u64 * 4;
        let mut mem = self.transient;
        mem.params = self.params.iter().map(home_bytes).sum();
        mem.grads = self.grads.iter().map(home_bytes).sum();
        mem.optimizer = self.master.iter().flatten().map(f32_bytes).sum::<u64>()
            + self.states.iter().map(f32_bytes).sum::<u64>();
        mem
    }

    /// Runs `grad_accum` micro-batches from `next_batch` and one optimizer step at `lr`.
    pub fn train_step(
        &mut self,
        next_batch: &mut dyn FnMut() -> anyhow::Result<Batch>,
        lr: f64,
    ) -> anyhow::Result<StepOutcome> {
        self.stats.reset();
        let transfers_before = self.backend.transfers();
        let accum = self.plan.grad_accum;
        let world = self.dp.size();
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
        self.finish_reductions()?;
        // Once a step, before the optimizer reads the gradients: a failed kernel or copy
        // surfaces here under its own name (the backend records it), not later as a
        // "diverged" loss.
        self.backend
            .sync()
            .map_err(|e| e.context(format!("device error in step {}", self.step + 1)))?;
        self.attempts += 1;
        if self.inject_overflow == Some((self.attempts, self.rank)) {
            self.poison_grads();
        }
        let compute_ms = t0.elapsed().as_secs_f64() * 1e3 - self.stats.exposed_ms;
        let t1 = Instant::now();
        let (loss, grad_norm, skipped) = self.optimizer_step(lr, loss_sum / accum as f64)?;
        self.stats.finish();
        Ok(StepOutcome {
            loss,
            grad_norm,
            skipped,
            loss_scale: scale as f64,
            compute_ms,
            optimizer_ms: t1.elapsed().as_secs_f64() * 1e3,
            comm: self.stats.clone(),
            transfers: self.backend.transfers().since(transfers_before),
        })
    }

    /// Mean loss of `batch` across ranks without touching gradients.
    pub fn eval_loss(&mut self, batch: &Batch) -> anyhow::Result<f64> {
        self.model.set_batch(batch)?;
        self.forward_all()?;
        self.backend
            .sync()
            .map_err(|e| e.context("device error in evaluation"))?;
        let local = self.model.loss() as f64;
        self.release_all_params();
        let mut scratch = CommStats::default();
        let [sum] = comm::sum_scalars(self.dp, [local], &mut scratch);
        Ok(sum / self.dp.size() as f64)
    }

    /// Forward through every unit, gathering or converting parameters as the stage needs.
    pub(super) fn forward_all(&mut self) -> anyhow::Result<()> {
        let n = self.specs.len();
        if let Some(r) = self.root {
            self.materialize(r)?;
        }
        for u in 0..n {
            self.materialize(u)?;
            self.start_prefetch(u + 1)?;
            let root = self.root.filter(|&r| r != u);
            let (model, params, pwork) = (&mut self.model, &self.params, &self.pwork);
            let p = param_ref(params, pwork, u)?;
            let rp = match root {
                Some(r) => Some(param_ref(params, pwork, r)?),
                None => None,
            };
            model.forward_unit(u, p, rp)?;
            if Some(u) != self.root && (self.reshard_after_forward || !self.plan.shards_params()) {
                self.release_params(u);
            }
        }
        Ok(())
    }

    /// Backward through every unit in reverse, handing each unit's gradients to the
    /// reduction schedule as soon as they are complete.
    fn backward_all(&mut self, last_micro: bool) -> anyhow::Result<()> {
        let n = self.specs.len();
        if let Some(r) = self.root {
            self.acquire_grad_work(r)?;
        }
        for u in (0..n).rev() {
            self.materialize(u)?;
            if u > 0 {
                self.start_prefetch(u - 1)?;
            }
            self.acquire_grad_work(u)?;
            let root = self.root.filter(|&r| r != u);
            {
                let (model, params, pwork) = (&mut self.model, &self.params, &self.pwork);
                let p = param_ref(params, pwork, u)?;
                let (grads, gwork) = (&mut self.grads, &mut self.gwork);
                match root {
                    Some(r) => {
                        let rp = param_ref(params, pwork, r)?;
                        let (g, rg) = two_grad_muts(grads, gwork, u, r)?;
                        model.backward_unit(u, p, g, Some((rp, rg)))?;
                    }
                    None => {
                        let g = grad_mut(grads, gwork, u)?;
                        model.backward_unit(u, p, g, None)?;
                    }
                }
            }
            self.release_params(u);
            self.grads_ready(u, last_micro)?;
            self.drive_progress();
        }
        Ok(())
    }

    /// MPI progress for everything in flight (docs/architecture.md, "Overlap").
    pub(super) fn drive_progress(&mut self) {
        for (_, op) in self.in_flight.iter_mut() {
            op.test();
        }
        if let Some((_, op)) = self.prefetched.as_mut() {
            op.test();
        }
    }

    /// The optimizer step, given this rank's mean micro-batch loss: returns the mean loss
    /// over ranks, the global gradient norm (NaN when skipped) and whether the step was
    /// skipped for an fp16 overflow.
    fn optimizer_step(&mut self, lr: f64, local_loss: f64) -> anyhow::Result<(f64, f64, bool)> {
        let scale = self.scaler.scale() as f64;
        // Partial sum of squares over the real elements this rank owns; one all-reduce
        // (with the loss) gives the global norm, and a non-finite sum is the fp16 overflow
        // flag.
        let mut partial = 0.0f64;
        for u in 0..self.specs.len() {
            let owned = self.owned_in_domain(u);
            let range = self.home_range(u);
            let be = self.backend.as_ref();
            let (g, off) = grads_f32(be, &mut self.grads[u], range, &mut self.gtmp);
            partial += be.sum_squares(g, off + owned.start, owned.len())?;
        }
        let [loss_sum, sumsq] = comm::sum_scalars(self.dp, [local_loss, partial], &mut self.stats);
        let loss = loss_sum / self.dp.size() as f64;
        let overflow = !sumsq.is_finite();
        if overflow {
            if self.plan.dtype != DType::Fp16 {
                anyhow::bail!("non-finite gradient at step {} (loss diverged); lower train.lr or enable train.clip_grad", self.step + 1);
            }
            self.scaler.update(true)?;
            self.zero_grads();
            return Ok((loss, f64::NAN, true));
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
        for u in 0..self.specs.len() {
            self.update_unit(u, mult, &hp)?;
        }
        self.publish_params()?;
        self.zero_grads();
        Ok((loss, grad_norm, false))
    }
}

/// The f32 buffer holding unit `u`'s parameters for compute: a working buffer when one
/// is materialised, else the full fp32 home.
pub(super) fn param_ref<'a, B: Backend>(
    params: &'a [Home<B>],
    pwork: &'a [Option<B::Buf>],
    u: usize,
) -> anyhow::Result<&'a B::Buf> {
    match (&params[u], &pwork[u]) {
        (_, Some(b)) => Ok(b),
        (Home::F32(b), None) => Ok(b),
        _ => anyhow::bail!("internal error: parameters of unit {u} used before they were gathered"),
    }
}

/// The f32 device buffer backward accumulates unit `u`'s gradients into.
fn grad_mut<'a, B: Backend>(
    grads: &'a mut [Home<B>],
    gwork: &'a mut [Option<B::Buf>],
    u: usize,
) -> anyhow::Result<&'a mut B::Buf> {
    match (&mut grads[u], &mut gwork[u]) {
        (_, Some(b)) => Ok(b),
        (Home::F32(b), None) => Ok(b),
        _ => anyhow::bail!("internal error: no gradient buffer for unit {u}"),
    }
}

/// Gradient buffers of two different units at once (a unit and the tied root).
fn two_grad_muts<'a, B: Backend>(
    grads: &'a mut [Home<B>],
    gwork: &'a mut [Option<B::Buf>],
    u: usize,
    r: usize,
) -> anyhow::Result<(&'a mut B::Buf, &'a mut B::Buf)> {
    debug_assert!(r < u);
    let (g_lo, g_hi) = grads.split_at_mut(u);
    let (w_lo, w_hi) = gwork.split_at_mut(u);
    let a = grad_mut(g_hi, w_hi, 0)?;
    let b = grad_mut(g_lo, w_lo, r)?;
    Ok((a, b))
}
