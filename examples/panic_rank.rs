//! Test-only program (never part of `zerotrain`): starts MPI as the trainer does, then
//! rank `R` panics while every other rank waits in an all-reduce, as a rank that hits a
//! bug mid-step would. Used by `tests/panic_abort.rs` to show that a panic ends the whole
//! job (the panic hook `dist::install_panic_hook` calls `MPI_Abort`) instead of hanging.
//!
//!     mpirun -np 4 target/release/examples/panic_rank R
use zerotrain::dist::{Dist, ScalarOp};

fn main() -> anyhow::Result<()> {
    let panic_rank: usize = match std::env::args().nth(1).map(|s| s.parse()) {
        Some(Ok(r)) => r,
        _ => anyhow::bail!("usage: panic_rank RANK"),
    };
    let dist = Dist::init("off")?;
    dist.world().barrier()?;
    if dist.rank() == panic_rank {
        let owned: Vec<f32> = vec![0.0; 16];
        let start = std::hint::black_box(owned.len() + 1);
        // An out-of-range slice, like the owned-range underflow of issue 14.
        let _ = std::hint::black_box(&owned[start..]);
    }
    // The other ranks wait here for the rank that panicked.
    let sum = dist.world().all_reduce_f64(1.0, ScalarOp::Sum);
    println!("rank {} finished: sum {sum}", dist.rank());
    Ok(())
}
