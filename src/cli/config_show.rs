//! `zerotrain config show`: prints the resolved configuration (file + overrides + defaults).
use crate::config::Config;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the resolved configuration as TOML.
    Show(ShowArgs),
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Run configuration (TOML).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a key: section.key=value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

pub fn run(cmd: ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Show(a) => {
            let cfg = Config::load(a.config.as_deref(), &a.set)?;
            print!("{}", cfg.to_toml());
            Ok(())
        }
    }
}
