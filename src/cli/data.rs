//! `zerotrain data ...`: prepare, synth, inspect.
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum DataCommand {}

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {}
}
