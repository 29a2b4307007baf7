//! Command-line interface: one file per subcommand. `run` maps every error to a
//! non-zero exit status; errors after MPI is up abort the whole job (see `dist`).
use clap::{Parser, Subcommand};

pub mod bench;
pub mod data;

/// Data-parallel training with DDP and ZeRO stages 1-3 over MPI.
#[derive(Parser, Debug)]
#[command(name = "zerotrain", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Micro-benchmarks: collectives, GEMM, training step.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
    /// Datasets: prepare text, generate synthetic tasks, inspect and verify.
    Data {
        #[command(subcommand)]
        cmd: data::DataCommand,
    },
}

/// Runs a parsed command line and returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Bench { what } => bench::run(what),
        Command::Data { cmd } => data::run(cmd),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}
