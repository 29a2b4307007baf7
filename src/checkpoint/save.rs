//! Saving: every rank writes its own shard file into `step-N.tmp/`, then rank 0 commits
//! (meta.json, rename into place, `latest`, pruning). A crash at any moment leaves
//! `latest` naming the previous complete checkpoint.
//!
//! The phases are separate so a save can run them in the foreground ([`save`]) or write
//! the rank file on a background thread between [`begin`] and [`commit`]
//! (`checkpoint.async`, `saver.rs`): [`begin`] and [`commit`] are collective and run on
//! the main thread, [`write_rank_file`] calls no MPI.
use super::fsio::{file_crc32, replace_atomic, sync_path};
use super::meta::{config_digest, FileEntry, Meta, TensorEntry, UnitEntry, FORMAT};
use super::paths::{prune, rank_file_name, step_dir_name, LATEST};
use super::{rank_file, CkptError};
use crate::config::Config;
use crate::data::LoaderState;
use crate::device::Backend;
use crate::dist::Dist;
use crate::zero::{Engine, UnitPiece};
use anyhow::Context;
use std::path::PathBuf;
use std::time::Instant;

/// Whether to save after `step` optimizer steps (`checkpoint.every`, and the last step
/// of the run) when `checkpoint.dir` is set.
pub fn should_save(cfg: &Config, step: u64, is_last: bool) -> bool {
    let c = &cfg.checkpoint;
    !c.dir.is_empty() && (is_last || (c.every > 0 && step.is_multiple_of(c.every as u64)))
}

/// Saves the engine's state after `step` training steps (fp16 steps skipped on
/// overflow included; `engine.step` counts only the optimizer updates) with the train
/// loader at `loader`, all in the foreground. Collective: every rank must call it.
/// Returns the committed step directory.
pub fn save<B: Backend>(
    dist: &Dist,
    engine: &Engine<'_, B>,
    cfg: &Config,
    step: u64,
    loader: LoaderState,
) -> anyhow::Result<PathBuf> {
    let t0 = Instant::now();
    let draft = draft_meta(engine, cfg, step, loader);
    let target = begin(dist, cfg, step)?;
    let job = RankJob::new(dist, engine, &target);
    let written = job.write(|u| engine.export_unit(u));
    let dir = commit(dist, &target, draft, written, cfg.checkpoint.keep)?;
    if dist.is_root() {
        log::info!(
            "checkpoint: saved step {step} to {} in {:.0} ms",
            dir.display(),
            t0.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(dir)
}

/// Where one save writes: `root/name.tmp`, renamed to `root/name` at the commit.
#[derive(Debug, Clone)]
pub struct Target {
    pub step: u64,
    pub root: PathBuf,
    pub name: String,
    pub tmp: PathBuf,
}

/// Collective: rank 0 creates `step-N.tmp/` (removing a stale one); a barrier.
pub fn begin(dist: &Dist, cfg: &Config, step: u64) -> anyhow::Result<Target> {
    let root = PathBuf::from(&cfg.checkpoint.dir);
    let name = step_dir_name(step);
    let tmp = root.join(format!("{name}.tmp"));
    if dist.is_root() {
        std::fs::create_dir_all(&root).map_err(|e| CkptError::io(&root, e))?;
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| CkptError::io(&tmp, e))?;
        }
        std::fs::create_dir(&tmp).map_err(|e| CkptError::io(&tmp, e))?;
    }
    dist.world().barrier()?;
    Ok(Target {
        step,
        root,
        name,
        tmp,
    })
}

/// What this rank writes: its file in the target, its header, the unit and state names;
/// no file where another rank writes the same states (hybrid sharding's replicas:
/// `Engine::checkpoint_file`). Holds no reference to the engine or MPI, so it can move to
/// a background thread.
pub struct RankJob {
    rank: usize,
    file: Option<PathBuf>,
    header: rank_file::Header,
    units: Vec<String>,
    state_names: &'static [&'static str],
}

impl RankJob {
    pub fn new<B: Backend>(dist: &Dist, engine: &Engine<'_, B>, target: &Target) -> RankJob {
        let (file_rank, files) = engine.checkpoint_file().unwrap_or((0, 0));
        RankJob {
            rank: dist.rank(),
            file: engine
                .checkpoint_file()
                .map(|(r, _)| target.tmp.join(rank_file_name(r))),
            header: rank_file::Header {
                step: target.step,
                rank: file_rank,
                world: files,
            },
            units: engine
                .layout()
                .units
                .iter()
                .map(|u| u.name.clone())
                .collect(),
            state_names: engine.state_names(),
        }
    }

    /// Writes the rank file from `piece(u)` (asked for unit by unit), fsyncs it, and
    /// returns it (none for a rank that writes no file). No MPI.
    pub fn write(
        &self,
        piece: impl FnMut(usize) -> anyhow::Result<UnitPiece>,
    ) -> anyhow::Result<Option<WrittenFile>> {
        let Some(file) = &self.file else {
            return Ok(None);
        };
        let run = || -> anyhow::Result<Option<WrittenFile>> {
            rank_file::write(
                file,
                self.header,
                &self.units,
                self.state_names,
                piece,
            )?;
            sync_path(file)?;
            let (bytes, crc32) = file_crc32(file)?;
            Ok(Some(WrittenFile {
                number: self.header.rank,
                bytes,
                crc32,
            }))
        };
        run().with_context(|| format!("rank {}: writing checkpoint", self.rank))
    }
}

/// A rank file on disk: its number (`rank-NNNNN.h5`), size and CRC-32.
#[derive(Debug, Clone, Copy)]
pub struct WrittenFile {
    pub number: usize,
    pub bytes: u64,
    pub crc32: u32,
}

/// meta.json of a save after `step`, its `files` left to the commit. Captured at the
/// step boundary: a background write must not record a later state.
pub fn draft_meta<B: Backend>(
    engine: &Engine<'_, B>,
    cfg: &Config,
    step: u64,
    loader: LoaderState,
) -> Meta {
    Meta {
        format: FORMAT,
        step,
        optimizer_steps: engine.step,
        // The rank files: one per shard (every rank, unless replicas hold copies).
        world: engine.layout().world,
        stage: engine.plan().stage,
        dtype: engine.plan().dtype,
        reduce_dtype: cfg.precision.reduce(),
        optimizer: cfg.train.optimizer,
        state_names: engine.state_names().iter().map(|s| s.to_string()).collect(),
        model: cfg.model.clone(),
        units: engine
            .layout()
            .units
            .iter()
            .zip(crate::model::unit_specs(&cfg.model))
            .map(|(u, spec)| UnitEntry {
                name: u.name.clone(),
                numel: u.numel,
                padded: u.padded,
                tensors: Some(TensorEntry::of(&spec)),
            })
            .collect(),
        loader,
        scaler: engine.scaler().clone(),
        config_crc32: config_digest(cfg),
        files: Vec::new(),
    }
}

/// Collective, after every rank wrote its file (`written`: this rank's file, none where
/// it writes no file, or its error): an all-gather brings
/// them to every rank (it doubles as the barrier: every file is on disk once it returns),
/// then rank 0 writes meta.json, renames the directory into place, points `latest` at it
/// and prunes; a barrier.
pub fn commit(
    dist: &Dist,
    target: &Target,
    mut meta: Meta,
    written: anyhow::Result<Option<WrittenFile>>,
    keep: usize,
) -> anyhow::Result<PathBuf> {
    // (file number + 1, 0 for none; bytes; CRC-32), a u32 widened for the gather.
    let mine = match written? {
        Some(f) => [f.number as u64 + 1, f.bytes, f.crc32 as u64],
        None => [0, 0, 0],
    };
    let all = dist.world().all_gather_u64s(&mine)?;
    if dist.is_root() {
        let mut files: Vec<&[u64]> = all.chunks(3).filter(|c| c[0] > 0).collect();
        files.sort_unstable_by_key(|c| c[0]);
        meta.files = files
            .iter()
            .map(|c| FileEntry {
                name: rank_file_name(c[0] as usize - 1),
                bytes: c[1],
                crc32: crate::checksum::hex(c[2] as u32),
            })
            .collect();
        commit_root(target, &meta, keep)?;
    }
    dist.world().barrier()?;
    Ok(target.root.join(&target.name))
}

/// Rank 0, after every rank file is on disk: meta.json, rename `tmp` to `name`, point
/// `latest` at it, prune.
fn commit_root(target: &Target, meta: &Meta, keep: usize) -> anyhow::Result<()> {
    let Target {
        root, name, tmp, ..
    } = target;
    meta.write(tmp)?;
    sync_path(tmp)?;
    let dst = root.join(name);
    if dst.exists() {
        // Saving a step again (a resume from an older checkpoint): move the old one aside.
        let old = root.join(format!("{name}.old"));
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| CkptError::io(&old, e))?;
        }
        std::fs::rename(&dst, &old).map_err(|e| CkptError::io(&dst, e))?;
    }
    std::fs::rename(tmp, &dst).map_err(|e| CkptError::io(&dst, e))?;
    sync_path(root)?;
    replace_atomic(root, LATEST, format!("{name}\n").as_bytes())?;
    prune(root, keep, meta.step)?;
    Ok(())
}
