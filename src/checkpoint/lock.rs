//! One job per checkpoint directory: rank 0 holds an exclusive `flock` on `<dir>/LOCK`
//! for the life of the job. The file says who holds it (host, pid, start time) but only
//! the flock decides: the kernel releases it when the holder dies however it dies, so a
//! stale file never blocks. Where the file system cannot lock (NFS without lockd, Lustre
//! mounted without `flock`), a warning says so and the job goes on unprotected.
use super::error::CkptError;
use super::share::gather_messages;
use crate::config::CheckpointConfig;
use crate::dist::Dist;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

/// The lock file's name in a checkpoint directory.
pub const LOCK_FILE: &str = "LOCK";

/// Held for as long as it lives (on rank 0; other ranks hold an empty one).
pub struct DirLock {
    _file: Option<File>,
}

/// Collective: rank 0 locks `cfg.dir` (created if missing). On failure every rank gets
/// the same error, naming the lock file and its owner's host and pid. Nothing to lock
/// without `checkpoint.dir`.
pub fn lock_dir(dist: &Dist, cfg: &CheckpointConfig) -> anyhow::Result<DirLock> {
    let local = if dist.is_root() && !cfg.dir.is_empty() {
        take(Path::new(&cfg.dir))
    } else {
        Ok(None)
    };
    let mine = local.as_ref().err().map(|e| e.to_string());
    let all = gather_messages(dist.world(), mine.as_deref())?;
    if let Some(msg) = all.into_iter().flatten().next() {
        anyhow::bail!("{msg}");
    }
    Ok(DirLock {
        _file: local.ok().flatten(),
    })
}

/// Takes the lock on `dir` (this process): the open, locked file, or `None` where the
/// file system cannot lock.
fn take(dir: &Path) -> Result<Option<File>, String> {
    std::fs::create_dir_all(dir).map_err(|e| CkptError::io(dir, e).to_string())?;
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| CkptError::io(&path, e).to_string())?;
    // SAFETY: flock on a file descriptor this function owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Err(held_by_another(&path, &mut file)),
            Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::ENOSYS) => log::warn!(
                "checkpoint: cannot lock {} ({err}): this file system does not support flock \
                 (NFS without lock service, Lustre without the flock mount option); \
                 nothing stops a second job from using this directory",
                path.display()
            ),
            _ => return Err(format!("{}: cannot lock: {err}", path.display())),
        }
    }
    write_owner(&mut file).map_err(|e| CkptError::io(&path, e).to_string())?;
    Ok((rc == 0).then_some(file))
}

/// The error for a lock another process holds, naming it from the file's content (read
/// a few times: the holder writes it just after locking).
fn held_by_another(path: &Path, file: &mut File) -> String {
    let mut owner = Owner::default();
    for _ in 0..10 {
        let mut text = String::new();
        if file.rewind().is_ok() && file.read_to_string(&mut text).is_ok() {
            owner = Owner::parse(&text);
            if owner.pid.is_some() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let who = match (&owner.host, &owner.pid) {
        (Some(h), Some(p)) => format!("pid {p} on host {h}"),
        _ => "another process (it has not written its name yet)".into(),
    };
    let since = owner
        .started
        .map(|s| format!(", started {s}"))
        .unwrap_or_default();
    format!(
        "{}: checkpoint directory in use: locked by {who}{since}; two jobs must not \
         share checkpoint.dir (wait for that job, or give this one another directory)",
        path.display()
    )
}

/// This process as the lock's owner, replacing the file's content.
fn write_owner(file: &mut File) -> std::io::Result<()> {
    let text = format!(
        "host {}\npid {}\nstarted {}\n",
        hostname(),
        std::process::id(),
        utc_now()
    );
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// What a lock file says about its (last) owner.
#[derive(Default)]
struct Owner {
    host: Option<String>,
    pid: Option<String>,
    started: Option<String>,
}

impl Owner {
    fn parse(text: &str) -> Owner {
        let mut o = Owner::default();
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("host", v)) => o.host = Some(v.trim().to_string()),
                Some(("pid", v)) => o.pid = Some(v.trim().to_string()),
                Some(("started", v)) => o.started = Some(v.trim().to_string()),
                _ => {}
            }
        }
        o
    }
}

/// This machine's host name (`?` if it cannot be read).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "?".into();
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The current time as `2025-01-31T12:00:00Z`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as libc::time_t;
    // SAFETY: gmtime_r fills the zeroed `tm` from `secs`; both live for the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::gmtime_r(&secs, &mut tm) }.is_null() {
        return format!("{secs} (unix time)");
    }
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_fails_naming_the_owner_and_a_released_one_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let first = take(dir.path()).unwrap();
        assert!(first.is_some());
        // flock locks belong to the open file: a second open in this process conflicts
        // as another process's would.
        let e = take(dir.path()).unwrap_err();
        let me = format!("pid {} on host {}", std::process::id(), hostname());
        assert!(
            e.contains("LOCK: checkpoint directory in use") && e.contains(&me),
            "{e}"
        );
        assert!(e.contains(", started 20"), "{e}");
        drop(first);
        // The stale content of a released lock does not block.
        assert!(take(dir.path()).unwrap().is_some());
    }
}
