//! Batches read from an HDF5 dataset directory: each rank reads only its windows (rows)
//! by hyperslab and checks every id against the vocabulary as it reads. With
//! `data.verify`, the first time this rank reads a shard it reads it in full and checks
//! the checksum manifest.json records (`Shard::verify`), so a rank verifies only the
//! shards it reads, each once. This runs where `produce` runs: the prefetch thread.
use super::error::DataError;
use super::manifest::{Kind, Manifest};
use super::sampler::{LoaderState, Sampler};
use super::shard::Shard;
use super::source::{start_state, LoaderSpec, Producer};
use super::Batch;
use super::Feed;
use crate::config::Sampling;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Instant;

/// The sampler for `spec` over the dataset in `dir` (manifest read and checked; shard
/// files are not opened). Units: windows of ctx + 1 tokens, or rows.
pub fn open_sampler(
    dir: &Path,
    spec: &LoaderSpec,
    resume: Option<LoaderState>,
) -> Result<(Manifest, Sampler)> {
    let m = Manifest::load(dir)?;
    let state = start_state(spec, resume)?;
    let shards = m.split(spec.split);
    let split_err = |msg: String| DataError::Split {
        dir: dir.to_path_buf(),
        msg,
    };
    if shards.is_empty() {
        return Err(split_err(format!("split {:?} has no shards", spec.split.name())).into());
    }
    let (units, stride): (Vec<(usize, u64)>, u64) = match m.kind {
        Kind::Classify => (shards.iter().map(|(i, s)| (*i, s.count)).collect(), 1),
        Kind::Tokens => {
            let ctx = spec.ctx as u64;
            if ctx == 0 {
                bail!("loader: ctx must be at least 1");
            }
            let mut units = Vec::new();
            for (i, s) in &shards {
                if s.count < ctx + 1 {
                    return Err(DataError::shard(
                        Manifest::shard_path(dir, s),
                        format!(
                            "holds {} tokens, fewer than one window of ctx + 1 = {}: \
                             lower model.ctx or write larger shards",
                            s.count,
                            ctx + 1
                        ),
                    )
                    .into());
                }
                let n = match spec.sampling {
                    Sampling::Random => s.count - ctx,
                    Sampling::Epoch => (s.count - 1) / ctx,
                };
                units.push((*i, n));
            }
            let stride = match spec.sampling {
                Sampling::Random => 1,
                Sampling::Epoch => ctx,
            };
            (units, stride)
        }
    };
    let sampler = Sampler::new(&units, stride, spec, state);
    let gb = (spec.micro_batch * spec.world) as u64;
    if sampler.total() == 0 {
        return Err(split_err(format!("split {:?} is empty", spec.split.name())).into());
    }
    if spec.sampling == Sampling::Epoch {
        if sampler.total() < gb {
            return Err(split_err(format!(
                "split {:?} has {} samples, fewer than one global batch \
                 (micro_batch {} x world {} = {gb})",
                spec.split.name(),
                sampler.total(),
                spec.micro_batch,
                spec.world
            ))
            .into());
        }
        if sampler.total() > u32::MAX as u64 {
            bail!("{}: more than 2^32 windows per epoch", dir.display());
        }
    }
    Ok((m, sampler))
}

/// Reads this rank's samples of each global batch from the split's shards.
pub struct Hdf5Producer {
    sampler: Sampler,
    kind: Kind,
    /// Open shards by manifest index (None: other split).
    shards: Vec<Option<Shard>>,
    /// Tokens per sequence, or features per row.
    width: usize,
    limit: usize,
    /// By manifest index: the checksum is still to be checked before the first read.
    unverified: Vec<bool>,
}

impl Hdf5Producer {
    /// Opens and checks every shard of the split, and the data against the model;
    /// `verify`: check each shard's checksum before its first read.
    pub fn open(
        dir: &Path,
        feed: Feed,
        spec: &LoaderSpec,
        resume: Option<LoaderState>,
        verify: bool,
    ) -> Result<Self> {
        let mpath = dir.join(super::manifest::MANIFEST);
        let (m, sampler) = open_sampler(dir, spec, resume)?;
        let width = match (feed, m.kind) {
            (Feed::Tokens { vocab }, Kind::Tokens) => {
                if m.vocab_size > vocab {
                    bail!(
                        "{}: the vocabulary has {} tokens but model.vocab is {vocab}",
                        mpath.display(),
                        m.vocab_size,
                    );
                }
                spec.ctx
            }
            (Feed::Rows { inputs, classes }, Kind::Classify) => {
                if m.features != inputs || m.classes > classes {
                    bail!(
                        "{}: the data has {} features and {} classes but the model has \
                         model.inputs = {inputs} and model.classes = {classes}",
                        mpath.display(),
                        m.features,
                        m.classes,
                    );
                }
                if spec.ctx != 0 && spec.ctx != m.features {
                    bail!(
                        "loader: ctx {} != feature dimension {}",
                        spec.ctx,
                        m.features
                    );
                }
                m.features
            }
            (feed, dk) => bail!(
                "{}: a {dk:?} dataset cannot feed model.kind = {}",
                mpath.display(),
                match feed {
                    Feed::Tokens { .. } => "gpt",
                    Feed::Rows { .. } => "mlp",
                }
            ),
        };
        let mut shards: Vec<Option<Shard>> = (0..m.shards.len()).map(|_| None).collect();
        for (i, e) in m.split(spec.split) {
            shards[i] = Some(Shard::open(dir, &m, e)?);
        }
        let unverified = shards.iter().map(|s| verify && s.is_some()).collect();
        Ok(Hdf5Producer {
            sampler,
            kind: m.kind,
            shards,
            width,
            limit: m.id_limit(),
            unverified,
        })
    }

    /// Verifies shard `i` if this is its first read (one full read: `Shard::verify`).
    fn verify_once(&mut self, i: usize) -> Result<(), DataError> {
        if !self.unverified.get(i).copied().unwrap_or(false) {
            return Ok(());
        }
        if let Some(shard) = self.shards.get(i).and_then(|s| s.as_ref()) {
            let t = Instant::now();
            shard.verify(self.limit)?;
            let s = t.elapsed().as_secs_f64();
            let mb = shard.data_bytes() as f64 / 1e6;
            log::debug!(
                "verified {} ({mb:.1} MB) in {:.1} ms, {:.0} MB/s",
                shard.path.display(),
                s * 1e3,
                mb / s.max(1e-9)
            );
        }
        self.unverified[i] = false;
        Ok(())
    }

    fn read(&mut self) -> Result<Batch, DataError> {
        let refs = self.sampler.next_refs();
        for r in &refs {
            self.verify_once(r.shard)?;
        }
        let b = refs.len();
        let w = self.width;
        let shard = |i: usize| {
            self.shards.get(i).and_then(|s| s.as_ref()).ok_or_else(|| {
                DataError::shard(format!("shard #{i}"), "sampler named an unopened shard")
            })
        };
        match self.kind {
            Kind::Tokens => {
                // inputs, targets: (b, w) row-major; window: w + 1 tokens
                let mut inputs = Vec::with_capacity(b * w);
                let mut targets = Vec::with_capacity(b * w);
                let mut window = vec![0u32; w + 1];
                for r in &refs {
                    shard(r.shard)?.read_tokens(r.offset, &mut window, self.limit)?;
                    inputs.extend_from_slice(&window[..w]);
                    targets.extend_from_slice(&window[1..]);
                }
                Ok(Batch::Tokens {
                    b,
                    t: w,
                    inputs,
                    targets,
                })
            }
            Kind::Classify => {
                // x: (b, w) row-major; one point-selection read per shard in the batch
                let mut x = vec![0f32; b * w];
                let mut y = vec![0u32; b];
                let mut ids: Vec<usize> = refs.iter().map(|r| r.shard).collect();
                ids.sort_unstable();
                ids.dedup();
                for id in ids {
                    let js: Vec<usize> = (0..b).filter(|&j| refs[j].shard == id).collect();
                    let rows: Vec<u64> = js.iter().map(|&j| refs[j].offset).collect();
                    let mut xs = vec![0f32; js.len() * w];
                    let ys = shard(id)?.read_rows(&rows, &mut xs, self.limit)?;
                    for (k, &j) in js.iter().enumerate() {
                        x[j * w..(j + 1) * w].copy_from_slice(&xs[k * w..(k + 1) * w]);
                        y[j] = ys[k];
                    }
                }
                Ok(Batch::Features { b, d: w, x, y })
            }
        }
    }
}

impl Producer for Hdf5Producer {
    fn produce(&mut self) -> Result<Batch> {
        let g = self.sampler.state().batches;
        // The rank is not named: `train` prefixes every rank's errors with it.
        self.read()
            .with_context(|| format!("loading global micro-batch {g}"))
    }
    fn state(&self) -> LoaderState {
        self.sampler.state()
    }
}
