//! Typed errors of the `data` part; every variant names the file it is about.
use std::path::PathBuf;

/// An error in a dataset directory, a shard or a loader request.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// `manifest.json` is missing, unreadable or inconsistent.
    #[error("{}: {msg}", path.display())]
    Manifest { path: PathBuf, msg: String },
    /// A shard is missing, unreadable, corrupt, or disagrees with the manifest.
    #[error("{}: {msg}", path.display())]
    Shard { path: PathBuf, msg: String },
    /// A token id (or class label) outside the vocabulary.
    #[error(
        "{}: {what} {value} at position {position} is outside the vocabulary \
         (valid ids are 0..{limit})",
        path.display()
    )]
    OutOfRange {
        path: PathBuf,
        what: &'static str,
        position: u64,
        value: i64,
        limit: usize,
    },
    /// A split has no usable data, or too little for the request.
    #[error("{}: {msg}", dir.display())]
    Split { dir: PathBuf, msg: String },
    /// Plain file-system error.
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
}

impl DataError {
    pub(crate) fn shard(path: impl Into<PathBuf>, msg: impl std::fmt::Display) -> Self {
        DataError::Shard {
            path: path.into(),
            msg: msg.to_string(),
        }
    }
    pub(crate) fn manifest(path: impl Into<PathBuf>, msg: impl std::fmt::Display) -> Self {
        DataError::Manifest {
            path: path.into(),
            msg: msg.to_string(),
        }
    }
    pub(crate) fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            err,
        }
    }
}
