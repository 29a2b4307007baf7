//! Names inside a checkpoint directory and how a user's path resolves to one step
//! directory: `<dir>/step-00000020/{meta.json, rank-00000.h5, ...}`, `<dir>/latest`.
use super::error::{CkptError, Result};
use super::meta::META_FILE;
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

/// Removes step directories beyond the newest `keep` up to `current` (0 keeps all;
/// `current`, just committed, is always kept) and leftovers of interrupted saves (`*.tmp`,
/// `*.old` directories). Step directories newer than `current` (left by a run that this
/// one resumed before, e.g. after falling back from a damaged newest checkpoint) are
/// neither counted nor removed: counting them could delete the good ones below `current`
/// and keep a damaged one; a later save of their step replaces them.
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
    let older: Vec<_> = list_steps(dir)?
        .into_iter()
        .filter(|(s, _)| *s < current)
        .collect();
    let n_drop = older.len().saturating_sub(keep - 1);
    for (_, p) in &older[..n_drop] {
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

    #[test]
    fn prune_keeps_the_newest_below_current_and_leaves_newer_ones() {
        let t = tempfile::tempdir().unwrap();
        for s in [2, 4, 5, 8] {
            std::fs::create_dir(t.path().join(step_dir_name(s))).unwrap();
        }
        std::fs::create_dir(t.path().join("step-00000006.tmp")).unwrap();
        // Resumed from 4 (8 damaged, say), saved 5: 4 and 5 stay, 8 is not counted.
        prune(t.path(), 2, 5).unwrap();
        let left: Vec<u64> = list_steps(t.path()).unwrap().iter().map(|x| x.0).collect();
        assert_eq!(left, [4, 5, 8]);
        assert!(!t.path().join("step-00000006.tmp").exists());
    }
}
