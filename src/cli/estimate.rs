//! `zerotrain estimate`: per-rank bytes of params, grads and optimizer states for stages
//! 0 to 3 at a given world size: the sizes the engine allocates (and reports in `mem`),
//! and the bytes a step sends within and between nodes (the record's `comm_bytes`).
use crate::config::ShardGroup;
use crate::zero::{optimizer_states, Layout, StagePlan, Topology};
use clap::Args;

#[derive(Args, Debug)]
pub struct EstimateArgs {
    #[command(flatten)]
    pub cfg: super::ConfigArgs,
    /// World size (ranks).
    #[arg(long, default_value_t = 1)]
    pub world: usize,
    /// Nodes the ranks run on (world / nodes ranks each, in rank order).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// One JSON object per stage instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn mib(bytes: usize) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub fn run(args: EstimateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.world >= 1, "--world must be at least 1");
    anyhow::ensure!(
        args.nodes >= 1 && args.world.is_multiple_of(args.nodes),
        "--nodes {} must divide --world {}",
        args.nodes,
        args.world
    );
    let cfg = args.cfg.load()?;
    cfg.validate(args.world)?;
    let topo = Topology {
        world: args.world,
        per_node: args.world / args.nodes,
    };
    // The shard group's size: the layout's world (validate checked that a number divides).
    let shard = match cfg.zero.shard_group().map_err(anyhow::Error::msg)? {
        ShardGroup::World => args.world,
        ShardGroup::Node => topo.per_node,
        ShardGroup::Ranks(k) => k,
    };
    let layout = Layout::new(&crate::model::unit_specs(&cfg.model), shard);
    let root = crate::model::tied_root(&cfg.model);
    let bucket_bytes = (cfg.zero.bucket_mb * 1024.0 * 1024.0) as usize;
    if !args.json {
        println!(
            "model: {} parameters ({} padded), world {} on {} node(s), shard group {} x {} replica(s), dtype {}, optimizer {:?}",
            layout.numel(),
            layout.padded(),
            args.world,
            args.nodes,
            shard,
            args.world / shard,
            cfg.precision.dtype.name(),
            cfg.train.optimizer
        );
        println!(
            "{:<6} {:>14} {:>14} {:>14} {:>14} {:>16} {:>16}",
            "stage", "params", "grads", "optimizer", "total", "intra-node/step", "inter-node/step"
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
        let comm = plan.comm_volume(&layout, cfg.zero.reshard_after_forward, root);
        let bytes = plan.ring_traffic(
            &layout,
            topo,
            cfg.precision.reduce(),
            bucket_bytes,
            cfg.zero.reshard_after_forward,
            root,
        );
        if args.json {
            println!(
                "{}",
                serde_json::json!({"stage": stage, "world": args.world, "nodes": args.nodes, "shard_group": shard,
                    "params": m.params, "grads": m.grads, "optimizer": m.optimizer, "total": total,
                    "comm_volume": comm, "comm_bytes": bytes, "psi": layout.numel(), "padded": layout.padded()})
            );
        } else {
            println!(
                "{:<6} {:>14} {:>14} {:>14} {:>14} {:>16} {:>16}",
                stage,
                mib(m.params),
                mib(m.grads),
                mib(m.optimizer),
                mib(total),
                mib(bytes.intra_node as usize),
                mib(bytes.inter_node as usize)
            );
        }
    }
    Ok(())
}
