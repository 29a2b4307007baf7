//! `zerotrain bench step`: single-process training-step throughput (forward, backward and
//! an AdamW update over the flat parameters) of a GPT on the CPU backend.
use crate::config::{ModelConfig, ModelKind, OptimizerKind, TrainConfig};
use crate::data::batch::Batch;
use crate::device::{Backend, Cpu};
use crate::model::{build_model, LocalState, UnitSpec};
use crate::optim::{build_optimizer, Optimizer, StepHyper};
use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct StepArgs {
    /// Write one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Threads for the matrix products.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[arg(long, default_value_t = 4)]
    pub n_layer: usize,
    #[arg(long, default_value_t = 4)]
    pub n_head: usize,
    #[arg(long, default_value_t = 128)]
    pub d_model: usize,
    #[arg(long, default_value_t = 64)]
    pub ctx: usize,
    #[arg(long, default_value_t = 65)]
    pub vocab: usize,
    /// Sequences per step.
    #[arg(long, default_value_t = 12)]
    pub batch: usize,
    /// Timed steps (after 3 warm-up steps).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
}

/// AdamW from `crate::optim` over every unit's whole parameter buffer, one optimizer
/// whose state is the units laid end to end (unit u's state starts at `offsets[u]`),
/// weight decay per tensor as the model's specs say.
struct Updater {
    opt: Box<dyn Optimizer>,
    offsets: Vec<usize>,
    specs: Vec<UnitSpec>,
    step: u64,
    lr: f32,
}

impl Updater {
    fn new(cfg: &TrainConfig, specs: &[UnitSpec]) -> Updater {
        let mut offsets = Vec::with_capacity(specs.len());
        let mut total = 0;
        for s in specs {
            offsets.push(total);
            total += s.numel;
        }
        Updater {
            opt: build_optimizer(cfg, total),
            offsets,
            specs: specs.to_vec(),
            step: 0,
            lr: cfg.lr as f32,
        }
    }

    fn step(&mut self, be: &Cpu, st: &mut LocalState<Cpu>) {
        self.step += 1;
        let hp = StepHyper {
            lr: self.lr,
            step: self.step,
        };
        for (u, (p, g)) in st.params.iter_mut().zip(&st.grads).enumerate() {
            let (Some(p), Some(g)) = (be.host_mut(p), be.host(g)) else {
                continue;
            };
            for t in &self.specs[u].tensors {
                let r = t.offset..t.offset + t.numel();
                let off = self.offsets[u] + t.offset;
                self.opt.update(off, &mut p[r.clone()], &g[r], t.decay, &hp);
            }
        }
    }
}

/// CPU time of this process so far, in seconds (all threads).
fn process_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

pub fn run(a: StepArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.threads >= 1 && a.batch >= 1 && a.steps >= 1,
        "--threads, --batch, --steps must be >= 1"
    );
    let cfg = ModelConfig {
        kind: ModelKind::Gpt,
        n_layer: a.n_layer,
        n_head: a.n_head,
        d_model: a.d_model,
        ctx: a.ctx,
        vocab: a.vocab,
        ..ModelConfig::default()
    };
    let be = Arc::new(Cpu::new(a.threads));
    let mut model = build_model(&cfg, a.batch, be.clone())?;
    let mut st = LocalState::new(&*be, &*model, 1337)?;
    // AdamW as nanoGPT trains (lr 1e-3, betas 0.9/0.95, weight decay 0.1).
    let tcfg = TrainConfig {
        optimizer: OptimizerKind::Adamw,
        lr: 1e-3,
        betas: [0.9, 0.95],
        weight_decay: 0.1,
        ..TrainConfig::default()
    };
    let mut opt = Updater::new(&tcfg, model.units());
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let n = a.batch * a.ctx;
    let tokens: Vec<u32> = (0..n + 1)
        .map(|_| rng.gen_range(0..a.vocab as u32))
        .collect();
    let batch = Batch::Tokens {
        b: a.batch,
        t: a.ctx,
        inputs: tokens[..n].to_vec(),
        targets: tokens[1..].to_vec(),
    };
    let mut step = |model: &mut dyn crate::model::Model<Cpu>| -> anyhow::Result<f32> {
        model.set_batch(&batch)?;
        let loss = st.forward(model)?;
        st.backward(&*be, model)?;
        opt.step(&be, &mut st);
        Ok(loss)
    };
    for _ in 0..3 {
        step(&mut *model)?;
    }
    let (t0, c0) = (Instant::now(), process_cpu_s());
    let mut loss = 0.0;
    for _ in 0..a.steps {
        loss = step(&mut *model)?;
    }
    be.sync()?;
    let step_s = t0.elapsed().as_secs_f64() / a.steps as f64;
    // CPU time per step: on a shared machine it is steadier than wall time.
    let cpu_s = (process_cpu_s() - c0) / a.steps as f64;
    let name = format!(
        "gpt-L{}-H{}-C{}-T{}-V{}-B{}",
        a.n_layer, a.n_head, a.d_model, a.ctx, a.vocab, a.batch
    );
    let tps = n as f64 / step_s;
    if a.json {
        let o = serde_json::json!({
            "model": name, "params": crate::model::param_count(&cfg), "threads": a.threads,
            "batch": a.batch, "ctx": a.ctx, "tokens_per_s": tps.round(), "step_ms": step_s * 1e3,
            "cpu_ms": cpu_s * 1e3,
            "loss": loss,
        });
        println!("{o}");
    } else {
        println!(
            "{name}: {:.1} ms/step, {tps:.0} tokens/s ({} threads, loss {loss:.3})",
            step_s * 1e3,
            a.threads
        );
    }
    Ok(())
}
