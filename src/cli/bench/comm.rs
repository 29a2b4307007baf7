//! `zerotrain bench comm`.
use clap::Args;

#[derive(Args, Debug)]
pub struct CommArgs {
    /// Write one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: CommArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench comm is not built yet")
}
