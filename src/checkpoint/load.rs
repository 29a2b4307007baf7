//! Resuming: every rank checks the checkpoint against this run, then reads only the
//! hyperslabs of the old rank files that overlap its own optimizer domain (any old world
//! size and stage), imports them, and all ranks agree before the first collective.
use super::error::CkptError;
use super::meta::config_digest;
use super::plan::{shared_plan, Plan};
use super::reader::Checkpoint;
use crate::config::Config;
use crate::data::LoaderState;
use crate::device::Backend;
use crate::dist::{Dist, ScalarOp};
use crate::model::unit_specs;
use crate::zero::Engine;
use std::path::{Path, PathBuf};

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
/// checkpoint fails on every rank with an error and nobody hangs. With "auto", a damaged
/// checkpoint (see [`CkptError::is_damage`]) is skipped with one warning naming it and
/// why, and the next older one is tried; a named one that is damaged is an error.
pub fn resume<B: Backend>(
    dist: &Dist,
    engine: &mut Engine<'_, B>,
    cfg: &Config,
) -> anyhow::Result<Option<Resumed>> {
    let (candidates, fall_back) = match shared_plan(dist, &cfg.checkpoint)? {
        Plan::Fresh => return Ok(None),
        Plan::Named(p) => (vec![p], false),
        Plan::Auto { candidates, .. } => (candidates, true),
    };
    for (i, path) in candidates.iter().enumerate() {
        let local = load_local(engine, cfg, path);
        let damaged = matches!(&local, Err(f) if f.damage && fall_back);
        let failed = local.is_err() && !damaged;
        let first_damaged = if damaged { dist.rank() } else { dist.size() };
        let [any_failed, any_damaged, neg_first] = dist.world().all_reduce_f64s(
            [
                failed as u8 as f64,
                damaged as u8 as f64,
                -(first_damaged as f64),
            ],
            ScalarOp::Max,
        );
        if any_failed > 0.0 {
            return Err(match local {
                Err(f) => f
                    .err
                    .context(format!("rank {}: cannot resume", dist.rank())),
                Ok(_) => anyhow::anyhow!(
                    "rank {}: another rank could not load the checkpoint (see its error)",
                    dist.rank()
                ),
            });
        }
        if any_damaged > 0.0 {
            if let Err(f) = &local {
                if -neg_first == dist.rank() as f64 {
                    let next = candidates.get(i + 1).map_or_else(
                        || "no older checkpoint to fall back to".to_string(),
                        |p| format!("falling back to {}", p.display()),
                    );
                    log::warn!(
                        "checkpoint: {} is damaged, not resuming from it: {:#}; {next}",
                        path.display(),
                        f.err
                    );
                }
            }
            continue;
        }
        let Ok((r, scaler, optimizer_steps)) = local else {
            anyhow::bail!("internal error: a failed load was agreed as loaded");
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
        return Ok(Some(r));
    }
    anyhow::bail!(
        "rank {}: checkpoint.dir {}: every checkpoint is damaged (see the warnings); move them \
         away to start fresh, or name one in checkpoint.resume",
        dist.rank(),
        cfg.checkpoint.dir
    )
}

/// Why this rank could not load a checkpoint; `damage` when the checkpoint itself is at
/// fault (the next older one may do), not its fit to this run.
struct Failure {
    damage: bool,
    err: anyhow::Error,
}

impl From<CkptError> for Failure {
    fn from(e: CkptError) -> Failure {
        Failure {
            damage: e.is_damage(),
            err: e.into(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Failure {
        Failure { damage: false, err }
    }
}

/// This rank's part of loading the step directory `path`, with no collective.
fn load_local<B: Backend>(
    engine: &mut Engine<'_, B>,
    cfg: &Config,
    path: &Path,
) -> Result<(Resumed, crate::optim::LossScaler, u64), Failure> {
    let mut ck = Checkpoint::open(path, true)?;
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
    Ok((
        Resumed {
            path: dir,
            step: meta.step,
            loader: meta.loader,
            world: meta.world,
            stage: meta.stage,
        },
        meta.scaler,
        meta.optimizer_steps,
    ))
}
