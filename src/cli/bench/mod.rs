//! `zerotrain bench ...`: one file per benchmark.
use clap::Subcommand;

pub mod comm;
mod comm_sweep;
pub mod gemm;
mod selftest;
pub mod step;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// All-reduce, reduce-scatter and all-gather against the raw MPI calls (run under mpirun).
    Comm(comm::CommArgs),
    /// Single-process SGEMM throughput.
    Gemm(gemm::GemmArgs),
    /// Single-process training-step throughput (forward, backward, AdamW).
    Step(step::StepArgs),
}

pub fn run(what: BenchCommand) -> anyhow::Result<()> {
    match what {
        BenchCommand::Comm(a) => comm::run(a),
        BenchCommand::Gemm(a) => gemm::run(a),
        BenchCommand::Step(a) => step::run(a),
    }
}
