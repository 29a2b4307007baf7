//! The rank-prefixed logger: `[rank 1] WARN message` on stderr.
use std::io::Write;

/// Installs the process logger. Rank 0 logs at info, other ranks at warn, unless `RUST_LOG`
/// is set (then it decides for every rank). Calling it again is harmless (first one wins).
pub fn init_logging(rank: usize) {
    let mut b = env_logger::Builder::new();
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            b.parse_filters(&spec);
        }
        _ => {
            let level = if rank == 0 {
                log::LevelFilter::Info
            } else {
                log::LevelFilter::Warn
            };
            b.filter_level(level);
        }
    }
    b.format(move |buf, rec| writeln!(buf, "[rank {rank}] {} {}", rec.level(), rec.args()));
    let _ = b.try_init();
}
