//! Writes shards and fills their manifest entries (used by `prepare` and `synth`).
use super::error::DataError;
use super::h5file::{self, quiet_hdf5};
use super::manifest::{IntType, Kind, Manifest, ShardEntry, Split};
use ndarray::ArrayView2;
use std::path::{Path, PathBuf};

/// Collects shards written into `dir`, then saves the manifest.
pub struct DatasetWriter {
    dir: PathBuf,
    pub manifest: Manifest,
}

fn h5err(path: &Path, e: hdf5::Error) -> DataError {
    DataError::shard(path, format!("writing failed: {e}"))
}

/// CRC-32 of `ids` as little-endian bytes of `dtype`.
fn crc_ids(ids: &[u32], dtype: IntType, crc: &mut crc32fast::Hasher) {
    let mut bytes = Vec::new();
    dtype.extend_le(ids.iter().map(|&v| i64::from(v)), &mut bytes);
    crc.update(&bytes);
}

impl DatasetWriter {
    /// Creates `dir` if needed; `manifest` carries kind, vocabulary or features/classes.
    pub fn new(dir: &Path, manifest: Manifest) -> Result<Self, DataError> {
        quiet_hdf5();
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        Ok(DatasetWriter {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    fn next_name(&self, split: Split) -> String {
        let k = self.manifest.split(split).len();
        format!("{}_{k:03}.h5", split.name())
    }

    /// Writes a token shard (`tokens`, uint16 or uint32 by vocabulary size).
    pub fn add_tokens(&mut self, split: Split, tokens: &[u32]) -> Result<(), DataError> {
        let mut s = self.begin_tokens(split, tokens.len())?;
        s.write(tokens)?;
        s.finish()
    }

    /// Starts a token shard of exactly `count` tokens, written in pieces by
    /// [`TokenShard::write`] (so a large shard never needs to be in memory at once).
    pub fn begin_tokens(
        &mut self,
        split: Split,
        count: usize,
    ) -> Result<TokenShard<'_>, DataError> {
        debug_assert_eq!(self.manifest.kind, Kind::Tokens);
        let file = self.next_name(split);
        let path = self.dir.join(&file);
        let dtype = IntType::for_ids(self.manifest.vocab_size);
        let f = h5file::create(&path).map_err(|e| h5err(&path, e))?;
        let b = f.new_dataset_builder();
        let ds = if dtype == IntType::Uint16 {
            b.empty::<u16>().shape(count).create("tokens")
        } else {
            b.empty::<u32>().shape(count).create("tokens")
        }
        .map_err(|e| h5err(&path, e))?;
        Ok(TokenShard {
            writer: self,
            file,
            path,
            split,
            dtype,
            ds,
            h5: f,
            count,
            written: 0,
            crc: crc32fast::Hasher::new(),
        })
    }

    /// Writes a classification shard: `x` (n, d) float32 row-major, `y` (n).
    pub fn add_rows(&mut self, split: Split, x: &[f32], y: &[u32]) -> Result<(), DataError> {
        debug_assert_eq!(self.manifest.kind, Kind::Classify);
        let file = self.next_name(split);
        let path = self.dir.join(&file);
        let d = self.manifest.features;
        let dtype = IntType::for_ids(self.manifest.classes);
        let xv = ArrayView2::from_shape((y.len(), d), x)
            .map_err(|e| DataError::shard(&path, format!("x does not have shape (n, d): {e}")))?;
        let f = h5file::create(&path).map_err(|e| h5err(&path, e))?;
        f.new_dataset_builder()
            .with_data(xv)
            .create("x")
            .map_err(|e| h5err(&path, e))?;
        let r = if dtype == IntType::Uint16 {
            let v: Vec<u16> = y.iter().map(|&t| t as u16).collect();
            f.new_dataset_builder()
                .with_data(&v[..])
                .create("y")
                .map(|_| ())
        } else {
            f.new_dataset_builder().with_data(y).create("y").map(|_| ())
        };
        r.map_err(|e| h5err(&path, e))?;
        let mut crc = crc32fast::Hasher::new();
        let xb: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        crc.update(&xb);
        crc_ids(y, dtype, &mut crc);
        self.push(file, split, y.len(), dtype, crc.finalize());
        Ok(())
    }

    fn push(&mut self, file: String, split: Split, count: usize, dtype: IntType, crc32: u32) {
        self.manifest.shards.push(ShardEntry {
            file,
            split,
            count: count as u64,
            dtype,
            crc32,
        });
    }

    /// Writes `manifest.json` (last, so a crash leaves no manifest naming absent shards).
    pub fn finish(self) -> Result<Manifest, DataError> {
        self.manifest.save(&self.dir)?;
        Ok(self.manifest)
    }
}

/// A token shard being written: `tokens` is a 1-D dataset of `count` elements of
/// `dtype`, filled front to back; the CRC is accumulated over the same values.
pub struct TokenShard<'a> {
    writer: &'a mut DatasetWriter,
    file: String,
    path: PathBuf,
    split: Split,
    dtype: IntType,
    ds: hdf5::Dataset,
    /// Held open until the shard is finished (the dataset first, then the file).
    h5: hdf5::File,
    count: usize,
    written: usize,
    crc: crc32fast::Hasher,
}

impl TokenShard<'_> {
    /// Appends `tokens` (ids below the vocabulary size) after those written so far.
    pub fn write(&mut self, tokens: &[u32]) -> Result<(), DataError> {
        if tokens.is_empty() {
            return Ok(());
        }
        let (a, b) = (self.written, self.written + tokens.len());
        if b > self.count {
            return Err(DataError::shard(
                &self.path,
                format!("{b} tokens written to a shard of {}", self.count),
            ));
        }
        let r = if self.dtype == IntType::Uint16 {
            let v: Vec<u16> = tokens.iter().map(|&t| t as u16).collect();
            self.ds.write_slice(&v[..], a..b)
        } else {
            self.ds.write_slice(tokens, a..b)
        };
        r.map_err(|e| h5err(&self.path, e))?;
        crc_ids(tokens, self.dtype, &mut self.crc);
        self.written = b;
        Ok(())
    }

    /// Closes the shard and adds its manifest entry (all `count` tokens must be written).
    pub fn finish(self) -> Result<(), DataError> {
        if self.written != self.count {
            return Err(DataError::shard(
                &self.path,
                format!("{} of {} tokens written", self.written, self.count),
            ));
        }
        let crc = self.crc.finalize();
        drop(self.ds);
        drop(self.h5);
        self.writer
            .push(self.file, self.split, self.count, self.dtype, crc);
        Ok(())
    }
}

/// Splits `0..n` into `k` contiguous nearly equal ranges (the first `n % k` one longer).
pub fn even_ranges(n: usize, k: usize) -> Vec<std::ops::Range<usize>> {
    let k = k.max(1);
    let (q, r) = (n / k, n % k);
    let mut out = Vec::with_capacity(k);
    let mut s = 0;
    for i in 0..k {
        let len = q + usize::from(i < r);
        out.push(s..s + len);
        s += len;
    }
    out
}
