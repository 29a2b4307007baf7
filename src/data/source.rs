//! The loader API the engine calls: a `BatchSource` per rank, opened from the config.
use super::hdf5_source::Hdf5Producer;
use super::prefetch::Prefetcher;
use super::sampler::LoaderState;
use super::synthetic::SyntheticProducer;
use super::Feed;
use super::{Batch, Split};
use crate::config::{DataConfig, DataSource, Sampling};
use anyhow::{bail, Result};

/// What one rank asks of the loader.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderSpec {
    /// This rank and the world size: rank r takes samples `[r*mb, (r+1)*mb)` of every
    /// global micro-batch of `micro_batch * world` samples.
    pub rank: usize,
    pub world: usize,
    /// Samples per rank per `next_batch`.
    pub micro_batch: usize,
    /// Tokens per sequence (windows hold ctx + 1). For classification: the feature
    /// dimension, or 0 to take it from the data.
    pub ctx: usize,
    pub seed: u64,
    pub sampling: Sampling,
    pub split: Split,
    /// Batches the prefetch thread keeps ready (at least 1).
    pub prefetch: usize,
}

/// A stream of this rank's micro-batches.
pub trait BatchSource: Send {
    /// This rank's next micro-batch. After an error the source stays failed.
    fn next_batch(&mut self) -> Result<Batch>;
    /// Position after the batches returned so far; pass it back to `open_source` to resume.
    fn state(&self) -> LoaderState;
    /// Cumulative milliseconds `next_batch` waited for the prefetch thread.
    fn wait_ms(&self) -> f64;
}

/// Produces batches synchronously; the prefetch thread drives one.
pub trait Producer: Send {
    fn produce(&mut self) -> Result<Batch>;
    /// Position after the batches produced so far.
    fn state(&self) -> LoaderState;
}

/// Checks the spec and the resume state against each other.
pub(crate) fn start_state(spec: &LoaderSpec, resume: Option<LoaderState>) -> Result<LoaderState> {
    if spec.world == 0 || spec.rank >= spec.world {
        bail!(
            "loader: rank {} is not in a world of {}",
            spec.rank,
            spec.world
        );
    }
    if spec.micro_batch == 0 {
        bail!("loader: micro_batch must be at least 1");
    }
    if spec.prefetch == 0 {
        bail!("loader: prefetch must be at least 1 (data.prefetch)");
    }
    match resume {
        None => Ok(LoaderState::start(spec.sampling)),
        Some(s) if s.sampling != spec.sampling => bail!(
            "loader: the saved position is for data.sampling = {:?} but the config says {:?}",
            s.sampling,
            spec.sampling
        ),
        Some(s) => Ok(s),
    }
}

/// Opens the source `cfg` describes for samples shaped as `feed` says, starting at
/// `resume` (or the beginning), with a prefetch thread. Bad data is reported here where
/// it can be (missing or corrupt shard, wrong dtype or count, empty split, ctx too long,
/// and whatever the first batch finds: it is read before this returns, so `train`
/// agrees on it during set-up), else by the `next_batch` whose data is bad (token
/// outside the vocabulary: file and position; with `data.verify`, a shard whose
/// checksum disagrees with manifest.json, by the first batch that reads it).
pub fn open_source(
    cfg: &DataConfig,
    feed: impl Into<Feed>,
    spec: LoaderSpec,
    resume: Option<LoaderState>,
) -> Result<Box<dyn BatchSource>> {
    let feed = feed.into();
    let producer: Box<dyn Producer> = match cfg.source {
        DataSource::Synthetic => Box::new(SyntheticProducer::new(feed, &spec, resume)?),
        DataSource::Hdf5 => Box::new(Hdf5Producer::open(
            std::path::Path::new(&cfg.path),
            feed,
            &spec,
            resume,
            cfg.verify,
        )?),
    };
    let mut source = Prefetcher::spawn(producer, spec.prefetch)?;
    source.wait_first()?;
    Ok(Box::new(source))
}
