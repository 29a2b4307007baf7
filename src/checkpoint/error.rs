//! Typed errors of the `checkpoint` part; every variant names the file or directory.
use std::path::PathBuf;

/// A checkpoint that cannot be written, found, trusted or loaded into this run.
#[derive(Debug, thiserror::Error)]
pub enum CkptError {
    /// The path holds neither `meta.json` nor a `latest` pointer.
    #[error("{}: not a checkpoint (no meta.json and no `latest` pointer)", path.display())]
    NotACheckpoint { path: PathBuf },
    /// `latest` names a directory that does not exist or is incomplete.
    #[error("{}: names {target:?}, which is not a complete checkpoint ({why})", latest.display())]
    DanglingLatest {
        latest: PathBuf,
        target: String,
        why: String,
    },
    /// A rank file listed in `meta.json` is absent.
    #[error("{}: rank file missing (checkpoint written by {world} ranks)", path.display())]
    MissingRankFile { path: PathBuf, world: usize },
    /// A file's checksum or size differs from `meta.json`.
    #[error("{}: corrupt: {what}", path.display())]
    Corrupt { path: PathBuf, what: String },
    /// The checkpoint holds another model than this run builds.
    #[error("checkpoint {} is of a different model: {msg}", dir.display())]
    DifferentModel { dir: PathBuf, msg: String },
    /// The checkpoint cannot continue this run (optimizer, data position...).
    #[error("checkpoint {}: {msg}", dir.display())]
    Incompatible { dir: PathBuf, msg: String },
    /// `meta.json` is unreadable or inconsistent with itself.
    #[error("{}: {msg}", path.display())]
    Meta { path: PathBuf, msg: String },
    /// A field of `meta.json` holds a value no writer produces (edited, or damaged).
    #[error("{}: key `{key}`: {msg}", path.display())]
    MetaKey {
        path: PathBuf,
        key: String,
        msg: String,
    },
    /// An HDF5 error on a rank file.
    #[error("{}: {msg}", path.display())]
    Hdf5 { path: PathBuf, msg: String },
    /// Plain file-system error.
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
}

impl CkptError {
    /// Whether the checkpoint itself is damaged or incomplete (unreadable, edited, a file
    /// missing or not as recorded), as opposed to intact but not for this run
    /// (`DifferentModel`, `Incompatible`): `resume = "auto"` falls back past damage.
    pub fn is_damage(&self) -> bool {
        !matches!(
            self,
            CkptError::DifferentModel { .. } | CkptError::Incompatible { .. }
        )
    }

    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> CkptError {
        CkptError::Io {
            path: path.into(),
            err,
        }
    }
    pub fn hdf5(path: impl Into<PathBuf>, what: &str, e: hdf5::Error) -> CkptError {
        CkptError::Hdf5 {
            path: path.into(),
            msg: format!("{what}: {}", hdf5_one_line(&e.to_string())),
        }
    }
}

/// HDF5's message as one line: its file driver's write failure spans lines ("file write
/// failed: time = <ctime>\n, filename = ..., errno = 28, error message = 'No space left
/// on device', buf = ...") and is cut to its cause ("file write failed: No space left on
/// device").
fn hdf5_one_line(msg: &str) -> String {
    let flat = msg.split_whitespace().collect::<Vec<_>>().join(" ");
    const CAUSE: &str = "error message = '";
    match (flat.find(" time = "), flat.find(CAUSE)) {
        (Some(t), Some(c)) if t < c => {
            let cause = &flat[c + CAUSE.len()..];
            let cause = &cause[..cause.find('\'').unwrap_or(cause.len())];
            format!("{} {cause}", &flat[..t])
        }
        _ => flat,
    }
}

pub type Result<T> = std::result::Result<T, CkptError>;

#[cfg(test)]
mod tests {
    #[test]
    fn a_driver_write_failure_is_one_line_with_its_cause() {
        let m =
            "H5Dwrite(): can't write data: file write failed: time = Wed Dec  2 14:29:40 2026\n, \
                 filename = '/x/rank-00000.h5', file descriptor = 5, errno = 28, error message = \
                 'No space left on device', buf = 0x7f, total write size = 8";
        assert_eq!(
            super::hdf5_one_line(m),
            "H5Dwrite(): can't write data: file write failed: No space left on device"
        );
        assert_eq!(
            super::hdf5_one_line("open:\n  no such file"),
            "open: no such file"
        );
    }
}
