//! `zerotrain bench comm`: sweeps all-reduce, reduce-scatter and all-gather against the raw
//! MPI calls (run under mpirun). Hidden test hooks: `--self-test` runs the correctness sweep
//! of every collective; `--fail-rank R` makes rank R fail after MPI init and one collective,
//! to exercise abort-on-error.
use anyhow::Result;
use clap::Args;

use super::comm_sweep::{self, BenchOp, BenchOpts};
use crate::dist::{abort_on_error, with_rank_before_init, DType, Dist};

#[derive(Args, Debug)]
pub struct CommArgs {
    /// Write one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Smallest message, in bytes (whole buffer, as nccl-tests counts).
    #[arg(long, default_value_t = 1024)]
    pub min_bytes: usize,
    /// Largest message, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_bytes: usize,
    /// Size multiplier between steps.
    #[arg(long, default_value_t = 4)]
    pub factor: usize,
    /// Timed iterations per size (default: by size and a 1.5 s budget, 20 to 200).
    #[arg(long)]
    pub iters: Option<usize>,
    /// Element types, comma-separated: f32, bf16, f16.
    #[arg(long, default_value = "f32,bf16")]
    pub dtypes: String,
    /// Collectives, comma-separated: allreduce, reducescatter, allgather.
    #[arg(long, default_value = "allreduce,reducescatter,allgather")]
    pub ops: String,
    /// CUDA-aware MPI: auto, on or off (auto honours ZEROTRAIN_CUDA_AWARE=0/1).
    #[arg(long, default_value = "auto")]
    pub cuda_aware: String,
    /// Test hook: run the collective correctness sweep instead of the benchmark.
    #[arg(long, hide = true)]
    pub self_test: bool,
    /// Test hook: this rank returns an error after MPI init and one barrier.
    #[arg(long, hide = true)]
    pub fail_rank: Option<usize>,
}

fn parse_list<T>(s: &str, f: impl Fn(&str) -> Result<T>) -> Result<Vec<T>> {
    s.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(f)
        .collect()
}

pub fn run(args: CommArgs) -> Result<()> {
    // Argument errors are found before MPI starts, alike on every rank.
    let opts = with_rank_before_init((|| {
        let opts = BenchOpts {
            min_bytes: args.min_bytes,
            max_bytes: args.max_bytes,
            factor: args.factor,
            iters: args.iters,
            dtypes: parse_list(&args.dtypes, DType::parse)?,
            ops: parse_list(&args.ops, BenchOp::parse)?,
        };
        opts.sizes()?;
        Ok(opts)
    })())?;
    let dist = Dist::init(&args.cuda_aware)?;
    if let Err(e) = body(&dist, &args, &opts) {
        abort_on_error(&dist, &e);
    }
    Ok(())
}

fn body(dist: &Dist, args: &CommArgs, opts: &BenchOpts) -> Result<()> {
    if let Some(r) = args.fail_rank {
        dist.world().barrier()?;
        if dist.rank() == r {
            anyhow::bail!("injected failure (--fail-rank {r}) after MPI init and one collective");
        }
    }
    if args.self_test {
        let rep = super::selftest::run_on_groups(dist)?;
        let checks = dist
            .world()
            .all_reduce_f64(rep.checks as f64, crate::dist::ScalarOp::Sum);
        let elems = dist
            .world()
            .all_reduce_f64(rep.elements as f64, crate::dist::ScalarOp::Sum);
        if dist.is_root() {
            println!(
                "self-test ok: {checks} checks, {elems} elements compared on {} ranks (world, node, across-nodes and parity groups); {} test() calls during overlap; worst half-precision error {:.3} of bound",
                dist.size(),
                rep.test_calls,
                rep.worst_half_error_vs_bound
            );
        }
        return Ok(());
    }
    let rows = comm_sweep::bench_comm(dist.world(), opts)?;
    if dist.is_root() {
        if args.json {
            for r in &rows {
                println!("{}", serde_json::to_string(r)?);
            }
        } else {
            print!("{}", comm_sweep::table(&rows));
        }
    }
    Ok(())
}
