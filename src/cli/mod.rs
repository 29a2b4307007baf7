//! Command-line interface: one file per subcommand. `run` maps every error to a
//! non-zero exit status; errors after MPI is up abort the whole job (see `dist`).
use clap::{Parser, Subcommand};

pub mod bench;
pub mod ckpt;
pub mod config_show;
pub mod data;
mod divergence;
pub mod estimate;
pub mod export;
pub mod logits;
pub mod report;
pub mod sample;
pub mod stop;
pub mod train;

/// Data-parallel training with DDP and ZeRO stages 1-3 over MPI.
#[derive(Parser, Debug)]
#[command(name = "zerotrain", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a model (run under mpirun for several ranks).
    Train(train::TrainArgs),
    /// Per-rank memory of params, grads and optimizer states for stages 0-3.
    Estimate(estimate::EstimateArgs),
    /// Generate text from a checkpoint, or score held-out sums of the addition task.
    Sample(sample::SampleArgs),
    /// PNG plots of a metrics file: loss, throughput, memory, communication.
    Report(report::ReportArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        cmd: config_show::ConfigCommand,
    },
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
    /// A checkpoint in another framework's format: --format hf (Hugging Face GPT-2).
    Export(export::ExportArgs),
    /// Logits of given token ids from a GPT checkpoint, as JSON (for comparing with
    /// other implementations).
    Logits(logits::LogitsArgs),
    /// Checkpoints: inspect, verify, consolidate into one HDF5 file.
    Ckpt {
        #[command(subcommand)]
        cmd: ckpt::CkptCommand,
    },
}

/// The run configuration on the command line: a TOML file and `--set` overrides.
#[derive(clap::Args, Debug, Clone)]
pub struct ConfigArgs {
    /// Run configuration (TOML); every key has a default.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Override a key: section.key=value (repeatable), e.g. --set zero.stage=2.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ConfigArgs {
    pub fn load(&self) -> Result<crate::config::Config, crate::config::ConfigError> {
        crate::config::Config::load(self.config.as_deref(), &self.set)
    }
}

/// Runs a parsed command line and returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Train(a) => train::run(a),
        Command::Estimate(a) => estimate::run(a),
        Command::Report(a) => report::run(a),
        Command::Sample(a) => sample::run(a),
        Command::Config { cmd } => config_show::run(cmd),
        Command::Bench { what } => bench::run(what),
        Command::Data { cmd } => data::run(cmd),
        Command::Ckpt { cmd } => ckpt::run(cmd),
        Command::Export(a) => export::run(a),
        Command::Logits(a) => logits::run(a),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            crate::dist::eprint_line(&format!("error: {e:#}"));
            1
        }
    }
}
