//! `zerotrain estimate`: per-rank bytes of params, grads and optimizer states for stages
//! 0 to 3 at a given world size: the sizes the engine allocates (and reports in `mem`).
use crate::zero::{optimizer_states, Layout, StagePlan};
use clap::Args;

#[derive(Args, Debug)]
pub struct EstimateArgs {
    #[command(flatten)]
    pub cfg: super::ConfigArgs,
    /// World size (ranks).
    #[arg(long, default_value_t = 1)]
    pub world: usize,
    /// One JSON object per stage instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn mib(bytes: usize) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub fn run(args: EstimateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.world >= 1, "--world must be at least 1");
    let cfg = args.cfg.load()?;
    cfg.validate(args.world)?;
    let layout = Layout::new(&crate::model::unit_specs(&cfg.model), args.world);
    if !args.json {
        println!(
            "model: {} parameters ({} padded), world {}, dtype {}, optimizer {:?}",
            layout.numel(),
            layout.padded(),
            args.world,
            cfg.precision.dtype.name(),
            cfg.train.optimizer
        );
        println!(
            "{:<6} {:>14} {:>14} {:>14} {:>14}",
            "stage", "params", "grads", "optimizer", "total"
        );
    }
    for stage in 0..=3u8 {
        let plan = StagePlan::new(
            stage,
            cfg.precision.dtype,
            optimizer_states(cfg.train.optimizer),
            cfg.train.grad_accum,
        );
        let m = plan.memory(&layout);
        let total = m.params + m.grads + m.optimizer;
        let comm = plan.comm_volume(
            &layout,
            cfg.zero.reshard_after_forward,
            crate::model::tied_root(&cfg.model),
        );
        if args.json {
            println!(
                "{}",
                serde_json::json!({"stage": stage, "world": args.world, "params": m.params, "grads": m.grads,
                    "optimizer": m.optimizer, "total": total, "comm_volume": comm, "psi": layout.numel(), "padded": layout.padded()})
            );
        } else {
            println!(
                "{:<6} {:>14} {:>14} {:>14} {:>14}",
                stage,
                mib(m.params),
                mib(m.grads),
                mib(m.optimizer),
                mib(total)
            );
        }
    }
    Ok(())
}
