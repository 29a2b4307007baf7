//! Names inside a checkpoint directory and how a user's path resolves to one step
//! directory: `<dir>/step-00000020/{meta.json, rank-00000.h5, ...}`, `<dir>/latest`.
use super::error::{CkptError, Result};
use super::meta::META_FILE;
use crate::config::CheckpointConfig;
use std::path::{Path, PathBuf};

/// The pointer file naming the newest complete step directory.
pub const LATEST: &str = "latest";

/// `step-00000020`.
pub fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// The step of a complete step directory's name (`step-00000020` → 20).
pub fn parse_step_dir(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step-")?;
    if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `rank-00003.h5`.
pub fn rank_file_name(rank: usize) -> String {
    format!("rank-{rank:05}.h5")
}

/// The rank of a rank file's name (`rank-00003.h5` → 3).
pub fn parse_rank_file(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("rank-")?.strip_suffix(".h5")?;
    if digits.len() < 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The step directory `path` means: itself when it holds `meta.json`, else the one its
/// `latest` file names. A `latest` naming nothing (or an incomplete directory) is an error.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if path.join(META_FILE).is_file() {
        return Ok(path.to_path_buf());
    }
    let latest = path.join(LATEST);
    if !latest.is_file() {
        return Err(CkptError::NotACheckpoint {
            path: path.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(&latest).map_err(|e| CkptError::io(&latest, e))?;
    let target = text.trim().to_string();
    let dangling = |why: &str| CkptError::DanglingLatest {
        latest: latest.clone(),
        target: target.clone(),
        why: why.into(),
    };
    if target.is_empty() || target.contains('/') || target.contains("..") {
        return Err(dangling("not a step directory name"));
    }
    let dir = path.join(&target);
    if !dir.is_dir() {
        return Err(dangling("no such directory"));
    }
    if !dir.join(META_FILE).is_file() {
        return Err(dangling("it has no meta.json"));
    }
    Ok(dir)
}

/// The step directory `checkpoint.resume` asks for: `None` to start fresh ("" or "auto"
/// with no `latest` yet).
pub fn resume_target(cfg: &CheckpointConfig) -> Result<Option<PathBuf>> {
    match cfg.resume.as_str() {
        "" => Ok(None),
        "auto" => {
            let dir = Path::new(&cfg.dir);
            if cfg.dir.is_empty() {
                log::warn!("checkpoint.resume = \"auto\" without checkpoint.dir: starting fresh");
                Ok(None)
            } else if !dir.join(LATEST).exists() {
                log::info!(
                    "checkpoint: no {} yet, starting fresh",
                    dir.join(LATEST).display()
                );
                Ok(None)
            } else {
                resolve(dir).map(Some)
            }
        }
        p => resolve(Path::new(p)).map(Some),
    }
}

/// Complete step directories under `dir`, oldest step first.
pub fn list_steps(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| CkptError::io(dir, e))? {
        let e = e.map_err(|e| CkptError::io(dir, e))?;
        if let Some(step) = e.file_name().to_str().and_then(parse_step_dir) {
            out.push((step, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Removes step directories beyond the newest `keep` (0 keeps all; `current` is always
/// kept) and leftovers of interrupted saves (`*.tmp`, `*.old` directories).
pub fn prune(dir: &Path, keep: usize, current: u64) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(|e| CkptError::io(dir, e))? {
        let e = e.map_err(|e| CkptError::io(dir, e))?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("step-") && (name.ends_with(".tmp") || name.ends_with(".old")) {
            log::info!("checkpoint: removing leftover {}", e.path().display());
            remove_dir(&e.path())?;
        }
    }
    if keep == 0 {
        return Ok(());
    }
    let others: Vec<_> = list_steps(dir)?
        .into_iter()
        .filter(|(s, _)| *s != current)
        .collect();
    let n_drop = others.len().saturating_sub(keep - 1);
    for (_, p) in &others[..n_drop] {
        log::info!("checkpoint: removing old {}", p.display());
        remove_dir(p)?;
    }
    Ok(())
}

fn remove_dir(p: &Path) -> Result<()> {
    std::fs::remove_dir_all(p).map_err(|e| CkptError::io(p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_round_trip() {
        assert_eq!(step_dir_name(20), "step-00000020");
        assert_eq!(parse_step_dir("step-00000020"), Some(20));
        assert_eq!(parse_step_dir("step-00000020.tmp"), None);
        assert_eq!(parse_step_dir("step-12"), None);
        assert_eq!(rank_file_name(3), "rank-00003.h5");
        assert_eq!(parse_rank_file("rank-00003.h5"), Some(3));
        assert_eq!(parse_rank_file("rank-3.h5"), None);
        assert_eq!(parse_rank_file("rank-00003.h5.tmp"), None);
    }
}
