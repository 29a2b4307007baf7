//! What `checkpoint.resume` asks for, as rank 0 sees the file system: nothing, one named
//! checkpoint (any failure to load it is an error), or with `"auto"` the checkpoints of
//! `checkpoint.dir` to try newest first (the one `latest` names, then the older complete
//! ones), so a damaged newest one falls back to the previous one. Rank 0 decides and every
//! rank follows the same list, so all ranks take the same steps through the collectives.
use super::error::{CkptError, Result};
use super::paths::{list_steps, parse_step_dir, resolve, LATEST};
use super::share::gather_messages;
use crate::config::CheckpointConfig;
use crate::dist::Dist;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The step directories to resume from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Plan {
    /// Start fresh ("" or "auto" before the first save).
    Fresh,
    /// A checkpoint the user named: loaded, or an error.
    Named(PathBuf),
    /// `"auto"`: the first of these that is intact is loaded, newest first.
    Auto {
        dir: PathBuf,
        candidates: Vec<PathBuf>,
    },
}

/// Collective: rank 0's plan, on every rank (its error too, as every rank's error).
pub fn shared_plan(dist: &Dist, cfg: &CheckpointConfig) -> anyhow::Result<Plan> {
    let mine = dist.is_root().then(|| match plan(cfg) {
        Ok(p) => serde_json::to_string(&p).map_err(|e| format!("cannot share the plan: {e}")),
        Err(e) => Err(e.to_string()),
    });
    let text = match &mine {
        Some(Ok(json)) => format!("ok {json}"),
        Some(Err(e)) => format!("err {e}"),
        None => String::new(),
    };
    let root = gather_messages(dist.world(), mine.is_some().then_some(text.as_str()))?
        .into_iter()
        .next()
        .flatten()
        .unwrap_or_default();
    match root.split_once(' ') {
        Some(("ok", json)) => Ok(serde_json::from_str(json)?),
        Some(("err", e)) => anyhow::bail!("{e}"),
        _ => anyhow::bail!("internal error: rank 0 shared no resume plan"),
    }
}

/// Whether [`plan`] may resume for `cfg` (no I/O beyond one `exists`, no log): a path
/// always, `auto` only with a `dir` holding `latest`. `auto` can still start fresh where
/// every checkpoint in `dir` is damaged.
pub fn resumes(cfg: &CheckpointConfig) -> bool {
    match cfg.resume.as_str() {
        "" => false,
        "auto" => !cfg.dir.is_empty() && Path::new(&cfg.dir).join(LATEST).exists(),
        _ => true,
    }
}

/// This process's plan for `cfg`.
pub fn plan(cfg: &CheckpointConfig) -> Result<Plan> {
    match cfg.resume.as_str() {
        "" => Ok(Plan::Fresh),
        "auto" if cfg.dir.is_empty() => {
            log::warn!("checkpoint.resume = \"auto\" without checkpoint.dir: starting fresh");
            Ok(Plan::Fresh)
        }
        "auto" => auto(Path::new(&cfg.dir)),
        p => resolve(Path::new(p)).map(Plan::Named),
    }
}

/// `auto` in `dir`: the checkpoint `latest` names, then every older complete one. A
/// `latest` naming nothing complete is a damaged newest checkpoint: one warning, and the
/// complete ones in `dir`, newest first.
fn auto(dir: &Path) -> Result<Plan> {
    let latest = dir.join(LATEST);
    if !latest.exists() {
        log::info!("checkpoint: no {} yet, starting fresh", latest.display());
        return Ok(Plan::Fresh);
    }
    let mut steps = list_steps(dir)?;
    steps.reverse();
    let candidates = match resolve(dir) {
        Ok(newest) => {
            let below = newest
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_step_dir);
            let older: Vec<PathBuf> = steps
                .into_iter()
                .filter(|(s, p)| *p != newest && below.is_none_or(|b| *s < b))
                .map(|(_, p)| p)
                .collect();
            std::iter::once(newest).chain(older).collect()
        }
        Err(e @ (CkptError::DanglingLatest { .. } | CkptError::Io { .. })) => {
            if steps.is_empty() {
                return Err(e);
            }
            log::warn!(
                "checkpoint: {e}; falling back to the newest complete checkpoint in {}",
                dir.display()
            );
            steps.into_iter().map(|(_, p)| p).collect()
        }
        Err(e) => return Err(e),
    };
    Ok(Plan::Auto {
        dir: dir.to_path_buf(),
        candidates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, resume: &str) -> CheckpointConfig {
        CheckpointConfig {
            dir: dir.display().to_string(),
            resume: resume.into(),
            ..CheckpointConfig::default()
        }
    }

    fn step(dir: &Path, s: u64) -> PathBuf {
        let p = dir.join(super::super::paths::step_dir_name(s));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join(super::super::META_FILE), "{}").unwrap();
        p
    }

    #[test]
    fn auto_tries_latest_then_older_ones_newest_first() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        assert_eq!(plan(&cfg(d, "auto")).unwrap(), Plan::Fresh);
        let (s2, s4, s6) = (step(d, 2), step(d, 4), step(d, 6));
        std::fs::write(d.join(LATEST), "step-00000004\n").unwrap();
        // Newer than `latest` (a save whose pointer never moved): not tried.
        let want = Plan::Auto {
            dir: d.to_path_buf(),
            candidates: vec![s4.clone(), s2.clone()],
        };
        assert_eq!(plan(&cfg(d, "auto")).unwrap(), want);
        // `latest` naming nothing: every complete one, newest first.
        std::fs::write(d.join(LATEST), "step-00000099\n").unwrap();
        let want = Plan::Auto {
            dir: d.to_path_buf(),
            candidates: vec![s6, s4.clone(), s2],
        };
        assert_eq!(plan(&cfg(d, "auto")).unwrap(), want);
        // A named one, even damaged, is the only one.
        assert_eq!(
            plan(&cfg(d, &s4.display().to_string())).unwrap(),
            Plan::Named(s4)
        );
        assert!(plan(&cfg(d, &d.display().to_string())).is_err());
    }
}
