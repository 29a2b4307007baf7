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
    // The run's outcome: last training loss, last validation loss and accuracy.
    let records = crate::metrics::read_records(&args.metrics)?;
    if let Some(last) = records.last() {
        println!("last step {}: training loss {:.4}", last.step, last.loss);
    }
    if let Some((step, val)) = records
        .iter()
        .rev()
        .find_map(|r| Some((r.step, r.val_loss?)))
    {
        println!("validation loss {val:.4} (step {step})");
    }
    if let Some((step, acc)) = records
        .iter()
        .rev()
        .find_map(|r| Some((r.step, r.val_acc?)))
    {
        println!("validation accuracy {acc:.4} (step {step})");
    }
    Ok(())
}
