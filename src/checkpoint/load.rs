//! Resuming: every rank checks the checkpoint against this run, then reads only the
//! hyperslabs of the old rank files that overlap its own optimizer domain (any old world
//! size and stage), imports them, and all ranks agree before the first collective.
use super::error::CkptError;
use super::meta::config_digest;
use super::paths::resume_target;
use super::reader::Checkpoint;
use crate::config::Config;
use crate::data::LoaderState;
use crate::device::Backend;
use crate::dist::{Dist, ScalarOp};
use crate::model::unit_specs;
use crate::zero::Engine;
use std::path::PathBuf;

/// Where a resumed run continues.
#[derive(Debug, Clone, PartialEq)]
pub struct Resumed {
    /// The step directory loaded.
    pub path: PathBuf,
    /// Training steps already done: the loop continues at this step.
    pub step: u64,
    /// Train loader position to reopen the data at.
    pub loader: LoaderState,
    /// World size and stage of the run that wrote it.
    pub world: usize,
    pub stage: u8,
}

/// Loads the checkpoint `checkpoint.resume` names into `engine` (nothing for "" or for
/// "auto" without a `latest`). Collective: every rank must call it. Every check and read
/// happens before the first collective, and all ranks agree on the outcome, so a bad
/// checkpoint fails on every rank with an error and nobody hangs.
pub fn resume<B: Backend>(
    dist: &Dist,
    engine: &mut Engine<'_, B>,
    cfg: &Config,
) -> anyhow::Result<Option<Resumed>> {
    let local = load_local(engine, cfg);
    let failed = dist
        .world()
        .all_reduce_f64(local.is_err() as u8 as f64, ScalarOp::Sum);
    let found = dist
        .world()
        .all_reduce_f64(matches!(local, Ok(Some(_))) as u8 as f64, ScalarOp::Sum);
    let resumed = match local {
        Err(e) => return Err(e.context(format!("rank {}: cannot resume", dist.rank()))),
        Ok(_) if failed > 0.0 => anyhow::bail!(
            "rank {}: another rank could not load the checkpoint (see its error)",
            dist.rank()
        ),
        Ok(r) => r,
    };
    if found != 0.0 && found != dist.size() as f64 {
        anyhow::bail!(
            "rank {}: only {found} of {} ranks found the checkpoint (is checkpoint.dir on a shared file system?)",
            dist.rank(),
            dist.size()
        );
    }
    let Some((r, scaler, optimizer_steps)) = resumed else {
        return Ok(None);
    };
    engine.finish_import(optimizer_steps)?;
    if engine.plan().dtype == crate::config::DType::Fp16 && scaler.is_enabled() {
        engine.set_scaler(scaler);
    }
    log::info!(
        "resumed from {} at step {} (written by {} ranks, stage {})",
        r.path.display(),
        r.step,
        r.world,
        r.stage
    );
    Ok(Some(r))
}

/// This rank's part of resuming, with no collective.
fn load_local<B: Backend>(
    engine: &mut Engine<'_, B>,
    cfg: &Config,
) -> anyhow::Result<Option<(Resumed, crate::optim::LossScaler, u64)>> {
    let Some(path) = resume_target(&cfg.checkpoint)? else {
        return Ok(None);
    };
    let mut ck = Checkpoint::open(&path, true)?;
    let dir = ck.dir.clone();
    let meta = ck.meta.clone();
    meta.check_model(&dir, &unit_specs(&cfg.model))?;
    let incompatible = |msg: String| CkptError::Incompatible {
        dir: dir.clone(),
        msg,
    };
    if meta.optimizer != cfg.train.optimizer {
        return Err(incompatible(format!(
            "written with optimizer {:?}, this run uses {:?} (train.optimizer)",
            meta.optimizer, cfg.train.optimizer
        ))
        .into());
    }
    let names: Vec<&str> = meta.state_names.iter().map(|s| s.as_str()).collect();
    if names != engine.state_names() {
        return Err(incompatible(format!(
            "optimizer states {:?}, this optimizer has {:?}",
            meta.state_names,
            engine.state_names()
        ))
        .into());
    }
    if meta.loader.sampling != cfg.data.sampling {
        return Err(incompatible(format!(
            "data position saved for data.sampling = {:?}, this run has {:?}",
            meta.loader.sampling, cfg.data.sampling
        ))
        .into());
    }
    let digest = config_digest(cfg);
    if meta.config_crc32 != digest {
        log::info!(
            "resuming with a configuration that differs from the checkpoint's (crc32 {digest}, checkpoint {})",
            meta.config_crc32
        );
    }
    for u in 0..meta.units.len() {
        let want = engine.import_range(u);
        if want.is_empty() {
            continue;
        }
        let piece = ck.read(u, want, true)?;
        engine.import_unit(u, &piece)?;
    }
    Ok(Some((
        Resumed {
            path: dir,
            step: meta.step,
            loader: meta.loader,
            world: meta.world,
            stage: meta.stage,
        },
        meta.scaler,
        meta.optimizer_steps,
    )))
}
