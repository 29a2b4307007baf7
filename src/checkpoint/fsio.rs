//! File-system pieces of the atomic commit: fsync of files and directories, the
//! write-then-rename of small files, streamed CRC-32 of rank files.
use super::error::{CkptError, Result};
use std::io::{Read, Write};
use std::path::Path;

/// Flushes `path` (a file or a directory) to stable storage.
pub fn sync_path(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| CkptError::io(path, e))
}

/// Writes `bytes` to `path` and fsyncs the file (not the directory).
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| CkptError::io(path, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| CkptError::io(path, e))
}

/// Atomically replaces `dir/name` with `bytes`: write `name.tmp`, fsync, rename over
/// `name`, fsync `dir`. A crash leaves either the old or the new content.
pub fn replace_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    write_synced(&tmp, bytes)?;
    std::fs::rename(&tmp, &dst).map_err(|e| CkptError::io(&dst, e))?;
    sync_path(dir)
}

/// Size and CRC-32 of a whole file, read in 1 MiB pieces.
pub fn file_crc32(path: &Path) -> Result<(u64, u32)> {
    let mut f = std::fs::File::open(path).map_err(|e| CkptError::io(path, e))?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| CkptError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, h.finalize()))
}
