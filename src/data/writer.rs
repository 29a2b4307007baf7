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
    let mut bytes = Vec::with_capacity(ids.len() * dtype.size());
    for &v in ids {
        dtype.push_le(v as i64, &mut bytes);
    }
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
        debug_assert_eq!(self.manifest.kind, Kind::Tokens);
        let file = self.next_name(split);
        let path = self.dir.join(&file);
        let dtype = IntType::for_ids(self.manifest.vocab_size);
        let f = h5file::create(&path).map_err(|e| h5err(&path, e))?;
        let b = f.new_dataset_builder();
        let r = if dtype == IntType::Uint16 {
            let v: Vec<u16> = tokens.iter().map(|&t| t as u16).collect();
            b.with_data(&v[..]).create("tokens").map(|_| ())
        } else {
            b.with_data(tokens).create("tokens").map(|_| ())
        };
        r.map_err(|e| h5err(&path, e))?;
        let mut crc = crc32fast::Hasher::new();
        crc_ids(tokens, dtype, &mut crc);
        self.push(file, split, tokens.len(), dtype, crc.finalize());
        Ok(())
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
