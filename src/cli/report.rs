//! `zerotrain report METRICS.jsonl --out DIR`: PNG plots of a run's metrics.
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The metrics JSONL file a training run wrote (log.metrics).
    pub metrics: PathBuf,
    /// Directory for the PNG files.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    for path in crate::metrics::write_report(&args.metrics, &args.out)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}
