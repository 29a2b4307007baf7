//! Test-only program (never part of `zerotrain`): starts MPI as the trainer does, then
//! rank `R` panics while every other rank waits in an all-reduce, as a rank that hits a
//! bug mid-step would. Used by `tests/panic_abort.rs` to show that a panic ends the whole
//! job (the panic hook `dist::install_panic_hook` calls `MPI_Abort`) instead of hanging.
//!
//!     mpirun -np 4 target/release/examples/panic_rank R [thread]
//!
//! With `thread`, the panic happens on a helper thread of rank R (as in the data
//! prefetcher) while R's main thread is busy for 30 s before it would join the
//! all-reduce: only an abort from the helper thread ends the job sooner.
use std::time::Duration;
use zerotrain::dist::{Dist, ScalarOp};

fn out_of_range() {
    let owned: Vec<f32> = vec![0.0; 16];
    let start = std::hint::black_box(owned.len() + 1);
    // An out-of-range slice, like the owned-range underflow of issue 14.
    let _ = std::hint::black_box(&owned[start..]);
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let panic_rank: usize = match args.next().map(|s| s.parse()) {
        Some(Ok(r)) => r,
        _ => anyhow::bail!("usage: panic_rank RANK [thread]"),
    };
    let on_thread = args.next().as_deref() == Some("thread");
    let dist = Dist::init("off")?;
    dist.world().barrier()?;
    if dist.rank() == panic_rank {
        if on_thread {
            std::thread::Builder::new()
                .name("helper".into())
                .spawn(out_of_range)?;
            std::thread::sleep(Duration::from_secs(30));
        } else {
            out_of_range();
        }
    }
    // The other ranks wait here for the rank that panicked.
    let sum = dist.world().all_reduce_f64(1.0, ScalarOp::Sum);
    println!("rank {} finished: sum {sum}", dist.rank());
    Ok(())
}
