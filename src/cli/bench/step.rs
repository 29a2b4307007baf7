//! `zerotrain bench step`.
use clap::Args;

#[derive(Args, Debug)]
pub struct StepArgs {
    /// Write one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: StepArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench step is not built yet")
}
