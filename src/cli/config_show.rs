//! `zerotrain config show`: prints the resolved configuration (file + overrides + defaults).
use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the resolved configuration as TOML.
    Show(ShowArgs),
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    pub cfg: super::ConfigArgs,
}

pub fn run(cmd: ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Show(a) => {
            let cfg = a.cfg.load()?;
            print!("{}", cfg.to_toml());
            Ok(())
        }
    }
}
