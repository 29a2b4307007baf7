//! `zerotrain data bench`: loader throughput as the consumer sees it.
use super::source::{open_source, LoaderSpec};
use super::Feed;
use crate::config::DataConfig;
use anyhow::Result;
use std::time::Instant;

/// Throughput of one rank's loader over `batches` batches.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// Opening the source, its first batch included (with `data.verify`, the checksum
    /// of each shard that batch reads).
    pub open_seconds: f64,
    pub batches: usize,
    /// Target tokens (or rows) delivered.
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
    /// Time `next_batch` waited on the prefetch thread.
    pub wait_ms: f64,
}

/// Pulls `batches` batches through the full loader (prefetch thread included) with no
/// work between them, so the rate is the loader's own.
pub fn bench(
    cfg: &DataConfig,
    feed: Feed,
    spec: LoaderSpec,
    batches: usize,
) -> Result<BenchResult> {
    let t = Instant::now();
    let mut src = open_source(cfg, feed, spec, None)?;
    // The first batch includes thread start-up and file opening warm-up.
    src.next_batch()?;
    let open_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut tokens = 0;
    for _ in 0..batches {
        tokens += src.next_batch()?.targets();
    }
    let seconds = t.elapsed().as_secs_f64().max(1e-9);
    Ok(BenchResult {
        open_seconds,
        batches,
        tokens,
        seconds,
        tokens_per_s: tokens as f64 / seconds,
        wait_ms: src.wait_ms(),
    })
}
