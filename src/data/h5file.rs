//! How zerotrain opens HDF5 files. Reads never take HDF5's file lock; a write that fails
//! on the lock says how to turn locking off.
//!
//! HDF5 (1.10+) `flock`s every file it opens: shared for reading, exclusive for writing.
//! On Lustre, GPFS and Cray DVS that lock fails or is refused (HDFGroup/hdf5 issue 3311,
//! h5py issue 1082), and any other process holding an exclusive lock (an open writer, a
//! `flock -x`) makes a plain `H5Fopen` fail with "unable to lock file". Shards and other
//! inputs are only read, so they open with locking off on the file access property list
//! (`H5Pset_file_locking`, HDF5 >= 1.10.7; Debian 12 ships 1.10.8). The environment
//! variable `HDF5_USE_FILE_LOCKING` still overrides it, as HDF5 documents.
//! Writes keep HDF5's default: a writer's lock protects its readers. Where it fails,
//! the error names `HDF5_USE_FILE_LOCKING=FALSE`, the one switch that covers every file.
use hdf5::MinorErrorCode;
use std::path::Path;

/// The environment setting that turns HDF5 file locking off for a whole job.
pub const LOCKING_OFF: &str = "HDF5_USE_FILE_LOCKING=FALSE";

/// Turns off HDF5's own error printing (its error stack on stderr); our errors say it.
pub fn quiet_hdf5() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| hdf5::silence_errors(true));
}

/// Opens `path` read-only without HDF5 file locking.
pub fn open_read(path: &Path) -> hdf5::Result<hdf5::File> {
    quiet_hdf5();
    hdf5::File::with_options()
        .with_fapl(|p| p.file_locking(false))
        .open(path)
        .map_err(with_locking_hint)
}

/// Creates (truncates) `path` for writing, HDF5 locking as configured; a locking
/// failure names the fix.
pub fn create(path: &Path) -> hdf5::Result<hdf5::File> {
    quiet_hdf5();
    hdf5::File::create(path).map_err(with_locking_hint)
}

/// Whether `e` is HDF5 failing to lock (or unlock) a file.
pub fn is_locking_error(e: &hdf5::Error) -> bool {
    e.contains_minor(MinorErrorCode::CantLockFile)
        || e.contains_minor(MinorErrorCode::CantUnlockFile)
        || e.to_string().to_lowercase().contains("lock file")
}

/// `e`, with the way out appended when it is a locking failure; other errors unchanged.
pub fn with_locking_hint(e: hdf5::Error) -> hdf5::Error {
    if !is_locking_error(&e) {
        return e;
    }
    hdf5::Error::Internal(format!(
        "{e} (HDF5 file locking failed: another process holds a lock on this file, or \
         the file system does not support locks, as on Lustre, GPFS or Cray DVS; \
         run with {LOCKING_OFF} in the environment to turn HDF5 file locking off)"
    ))
}
