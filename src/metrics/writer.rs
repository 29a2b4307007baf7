//! The metrics JSONL file: one [`StepRecord`] per line, written by rank 0.
use super::StepRecord;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Metrics file failures, each naming the file.
#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("metrics file {path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("metrics file {path}, line {line}: {err}")]
    Parse {
        path: PathBuf,
        line: usize,
        err: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MetricsError + '_ {
    move |err| MetricsError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// Appends one JSON object per logged step to a file, flushing each line so that a
/// crash loses at most the line being written. Only rank 0 creates one.
pub struct MetricsWriter {
    path: PathBuf,
    file: File,
}

impl MetricsWriter {
    /// Opens `path` (creating parent directories), truncating it unless `append`
    /// (resumed runs append to the file they started).
    pub fn create(path: &Path, append: bool) -> Result<Self, MetricsError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(path))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .map_err(io(path))?;
        Ok(MetricsWriter {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes one record as one line and flushes it.
    pub fn write(&mut self, rec: &StepRecord) -> Result<(), MetricsError> {
        let mut line = serde_json::to_vec(rec).map_err(|e| MetricsError::Io {
            path: self.path.clone(),
            err: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(io(&self.path))?;
        self.file.flush().map_err(io(&self.path))
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads every record of a metrics JSONL file (blank lines skipped).
pub fn read_records(path: &Path) -> Result<Vec<StepRecord>, MetricsError> {
    let f = File::open(path).map_err(io(path))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let rec = serde_json::from_str(&line).map_err(|err| MetricsError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            err,
        })?;
        out.push(rec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::CommKind;

    fn rec(step: u64) -> StepRecord {
        let mut r = StepRecord {
            step,
            loss: 2.5,
            lr: 1e-3,
            grad_norm: 0.7,
            step_ms: 12.0,
            loss_scale: 1.0,
            ..Default::default()
        };
        r.tokens_per_s = Some(1000.0);
        r.mem.params = 400;
        r.comm.add(CommKind::Allreduce, 100);
        r
    }

    #[test]
    fn lines_round_trip_and_none_is_omitted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/metrics.jsonl");
        let mut w = MetricsWriter::create(&path, false).unwrap();
        let mut r2 = rec(2);
        r2.val_loss = Some(2.4);
        r2.val_acc = Some(0.75);
        r2.loss = f64::NAN;
        r2.skipped = true;
        w.write(&rec(1)).unwrap();
        w.write(&r2).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        let o = first.as_object().unwrap();
        assert!(!o.contains_key("val_loss") && !o.contains_key("val_acc"));
        assert!(!o.contains_key("samples_per_s"));
        for k in [
            "step",
            "loss",
            "lr",
            "grad_norm",
            "tokens_per_s",
            "step_ms",
            "loss_scale",
            "compute_ms",
            "optimizer_ms",
            "comm_ms",
            "comm_exposed_ms",
            "data_wait_ms",
            "mem",
            "comm",
            "skipped",
        ] {
            assert!(o.contains_key(k), "{k} missing in {}", lines[0]);
        }
        assert_eq!(first["mem"]["params"], 400);
        assert_eq!(first["comm"]["allreduce"], 100);
        let back = read_records(&path).unwrap();
        assert_eq!(back[0], rec(1));
        assert_eq!((back[1].val_loss, back[1].val_acc), (Some(2.4), Some(0.75)));
        assert!(back[1].loss.is_nan() && back[1].skipped);
        // Appending keeps earlier lines; truncating drops them.
        drop(w);
        MetricsWriter::create(&path, true)
            .unwrap()
            .write(&rec(3))
            .unwrap();
        assert_eq!(read_records(&path).unwrap().len(), 3);
        MetricsWriter::create(&path, false)
            .unwrap()
            .write(&rec(4))
            .unwrap();
        assert_eq!(read_records(&path).unwrap().len(), 1);
    }

    #[test]
    fn errors_name_the_path_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let bad = blocker.join("m.jsonl"); // parent is a file
        let e = MetricsWriter::create(&bad, false)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(&bad.display().to_string()), "{e}");
        let p = dir.path().join("m.jsonl");
        std::fs::write(
            &p,
            format!(
                "{}\n\n{{not json\n",
                serde_json::to_string(&rec(1)).unwrap()
            ),
        )
        .unwrap();
        let e = read_records(&p).unwrap_err().to_string();
        assert!(e.contains("m.jsonl") && e.contains("line 3"), "{e}");
    }
}
