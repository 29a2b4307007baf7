//! `zerotrain bench step`: single-process training-step throughput (forward, backward and
//! an AdamW update over the flat parameters) of a GPT on the CPU backend.
use crate::config::{ModelConfig, ModelKind};
use crate::data::batch::Batch;
use crate::device::{Backend, Cpu};
use crate::model::{build_model, LocalState};
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

/// AdamW moments over all units' parameters (host slices), for this benchmark only.
struct AdamW {
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: i32,
}

impl AdamW {
    const LR: f32 = 1e-3;
    const B1: f32 = 0.9;
    const B2: f32 = 0.95;
    const WD: f32 = 0.1;

    fn step(&mut self, be: &Cpu, st: &mut LocalState<Cpu>) {
        self.t += 1;
        let (c1, c2) = (1.0 - Self::B1.powi(self.t), 1.0 - Self::B2.powi(self.t));
        for (u, (p, g)) in st.params.iter_mut().zip(&st.grads).enumerate() {
            let (Some(p), Some(g)) = (be.host_mut(p), be.host(g)) else {
                continue;
            };
            let it = p
                .iter_mut()
                .zip(g)
                .zip(self.m[u].iter_mut().zip(self.v[u].iter_mut()));
            for ((p, g), (m, v)) in it {
                *m = Self::B1 * *m + (1.0 - Self::B1) * g;
                *v = Self::B2 * *v + (1.0 - Self::B2) * g * g;
                let upd = (*m / c1) / ((*v / c2).sqrt() + 1e-8);
                *p -= Self::LR * (upd + Self::WD * *p);
            }
        }
    }
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
    let mut opt = AdamW {
        m: model.units().iter().map(|u| vec![0.0; u.numel]).collect(),
        v: model.units().iter().map(|u| vec![0.0; u.numel]).collect(),
        t: 0,
    };
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
    let t0 = Instant::now();
    let mut loss = 0.0;
    for _ in 0..a.steps {
        loss = step(&mut *model)?;
    }
    be.sync()?;
    let step_s = t0.elapsed().as_secs_f64() / a.steps as f64;
    let name = format!(
        "gpt-L{}-H{}-C{}-T{}-V{}-B{}",
        a.n_layer, a.n_head, a.d_model, a.ctx, a.vocab, a.batch
    );
    let tps = n as f64 / step_s;
    if a.json {
        let o = serde_json::json!({
            "model": name, "params": crate::model::param_count(&cfg), "threads": a.threads,
            "batch": a.batch, "ctx": a.ctx, "tokens_per_s": tps.round(), "step_ms": step_s * 1e3,
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
