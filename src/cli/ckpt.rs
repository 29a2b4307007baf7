//! `zerotrain ckpt ...`: inspect, verify and consolidate a checkpoint (single process,
//! no mpirun; any world size and stage).
use crate::checkpoint::{consolidate, inspect, verify};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum CkptCommand {
    /// Step, world size, stage, dtypes, units with sizes, rank files.
    Inspect {
        /// A step directory, or a checkpoint directory with `latest`.
        dir: PathBuf,
    },
    /// Every rank file present, checksums and sizes, ranges and shapes per unit.
    Verify {
        /// A step directory, or a checkpoint directory with `latest`.
        dir: PathBuf,
    },
    /// One fp32 dataset per named parameter (readable by h5py), streamed tensor by tensor.
    Consolidate {
        /// A step directory, or a checkpoint directory with `latest`.
        dir: PathBuf,
        /// Output HDF5 file.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cmd: CkptCommand) -> anyhow::Result<()> {
    match cmd {
        CkptCommand::Inspect { dir } => print!("{}", inspect(&dir)?),
        CkptCommand::Verify { dir } => {
            let n = verify(&dir)?;
            println!("ok: {} ({n} rank files)", dir.display());
        }
        CkptCommand::Consolidate { dir, out } => {
            let c = consolidate(&dir, &out)?;
            println!(
                "wrote {} ({} tensors, {} parameters)",
                out.display(),
                c.tensors,
                c.elements
            );
        }
    }
    Ok(())
}
