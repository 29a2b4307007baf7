//! `zerotrain bench gemm`.
use clap::Args;

#[derive(Args, Debug)]
pub struct GemmArgs {
    /// Write one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: GemmArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench gemm is not built yet")
}
