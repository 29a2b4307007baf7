//! Saving: every rank writes its own shard file into `step-N.tmp/`, then rank 0 commits
//! (meta.json, rename into place, `latest`, pruning). A crash at any moment leaves
//! `latest` naming the previous complete checkpoint.
use super::fsio::{file_crc32, replace_atomic, sync_path};
use super::meta::{config_digest, FileEntry, Meta, UnitEntry, FORMAT};
use super::paths::{prune, rank_file_name, step_dir_name, LATEST};
use super::{rank_file, CkptError};
use crate::config::Config;
use crate::data::LoaderState;
use crate::device::Backend;
use crate::dist::Dist;
use crate::zero::Engine;
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Whether to save after `step` optimizer steps (`checkpoint.every`, and the last step
/// of the run) when `checkpoint.dir` is set.
pub fn should_save(cfg: &Config, step: u64, is_last: bool) -> bool {
    let c = &cfg.checkpoint;
    !c.dir.is_empty() && (is_last || (c.every > 0 && step.is_multiple_of(c.every as u64)))
}

/// Saves the engine's state after `step` training steps (fp16 steps skipped on
/// overflow included; `engine.step` counts only the optimizer updates) with the train
/// loader at `loader`. Collective: every rank must call it. Returns the committed step
/// directory.
pub fn save<B: Backend>(
    dist: &Dist,
    engine: &Engine<'_, B>,
    cfg: &Config,
    step: u64,
    loader: LoaderState,
) -> anyhow::Result<PathBuf> {
    let root = Path::new(&cfg.checkpoint.dir);
    let name = step_dir_name(step);
    let tmp = root.join(format!("{name}.tmp"));
    if dist.is_root() {
        std::fs::create_dir_all(root).map_err(|e| CkptError::io(root, e))?;
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| CkptError::io(&tmp, e))?;
        }
        std::fs::create_dir(&tmp).map_err(|e| CkptError::io(&tmp, e))?;
    }
    dist.world().barrier()?;

    // Every rank: its own file, fsynced, with its size and checksum.
    let file = tmp.join(rank_file_name(dist.rank()));
    let units: Vec<String> = engine
        .layout()
        .units
        .iter()
        .map(|u| u.name.clone())
        .collect();
    let header = rank_file::Header {
        step,
        rank: dist.rank(),
        world: dist.size(),
    };
    rank_file::write(&file, header, &units, engine.state_names(), |u| {
        engine.export_unit(u)
    })
    .with_context(|| format!("rank {}: writing checkpoint", dist.rank()))?;
    sync_path(&file)?;
    let (bytes, crc) = file_crc32(&file)?;
    // The gather doubles as the barrier: every file is on disk once it returns.
    let all = dist.world().all_gather_u64s(&[bytes, crc as u64])?;

    if dist.is_root() {
        let files = all
            .chunks(2)
            .enumerate()
            .map(|(r, c)| FileEntry {
                name: rank_file_name(r),
                bytes: c[0],
                crc32: format!("{:08x}", c[1]),
            })
            .collect();
        let meta = Meta {
            format: FORMAT,
            step,
            optimizer_steps: engine.step,
            world: dist.size(),
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
                .map(|u| UnitEntry {
                    name: u.name.clone(),
                    numel: u.numel,
                    padded: u.padded,
                })
                .collect(),
            loader,
            scaler: engine.scaler().clone(),
            config_crc32: config_digest(cfg),
            files,
        };
        commit(root, &tmp, &name, &meta, cfg.checkpoint.keep)?;
        log::info!(
            "checkpoint: saved step {step} to {}",
            root.join(&name).display()
        );
    }
    dist.world().barrier()?;
    Ok(root.join(name))
}

/// Rank 0, after every rank file is on disk: meta.json, rename `tmp` to `name`, point
/// `latest` at it, prune.
fn commit(root: &Path, tmp: &Path, name: &str, meta: &Meta, keep: usize) -> anyhow::Result<()> {
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
