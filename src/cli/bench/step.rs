//! `zerotrain bench step`: single-process training-step throughput of a GPT on the CPU
//! backend, measured through the ZeRO engine exactly as `train` runs a step at one rank
//! (stage 0, fp32: forward, backward, gradient reduction and the AdamW update).
use crate::config::{Config, ModelConfig, ModelKind, OptimizerKind, SystemConfig, TrainConfig};
use crate::data::batch::Batch;
use crate::dist::Dist;
use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
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
    // AdamW as nanoGPT trains (lr 1e-3, betas 0.9/0.95, weight decay 0.1).
    let run_cfg = Config {
        model: cfg.clone(),
        train: TrainConfig {
            optimizer: OptimizerKind::Adamw,
            lr: 1e-3,
            betas: [0.9, 0.95],
            weight_decay: 0.1,
            micro_batch: a.batch,
            seed: 1337,
            ..TrainConfig::default()
        },
        system: SystemConfig {
            threads: a.threads,
            ..SystemConfig::default()
        },
        ..Config::default()
    };
    // One rank (a singleton MPI process without mpirun), so the step is the engine's own.
    let dist = Dist::init("off")?;
    anyhow::ensure!(
        dist.size() == 1,
        "bench step measures one process: run it without mpirun"
    );
    // The CPU backend: this benchmark measures one CPU process.
    let backend = std::sync::Arc::new(crate::device::Cpu::new(run_cfg.system.threads));
    let mesh = crate::cli::train::shard_mesh(&dist, &run_cfg)?;
    let mut engine = crate::cli::train::build_engine(&dist, &mesh, &run_cfg, backend)?;
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
    let lr = run_cfg.train.lr;
    let mut step = || -> anyhow::Result<f64> {
        let out = engine.train_step(&mut || Ok(batch.clone()), lr, false)?;
        Ok(out.loss)
    };
    for _ in 0..3 {
        step()?;
    }
    let (t0, c0) = (Instant::now(), process_cpu_s());
    let mut loss = 0.0;
    for _ in 0..a.steps {
        loss = step()?;
    }
    // (The engine syncs the backend inside every step, so the time is complete.)
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
