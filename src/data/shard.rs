//! One open shard file: checked against its manifest entry on open, read by hyperslab.
use super::error::DataError;
use super::h5file;
use super::manifest::{IntType, Kind, Manifest, ShardEntry};
use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
use hdf5::{Dataset, Selection};
use ndarray::{s, Array2};
use std::path::{Path, PathBuf};

/// Elements read at a time when a whole shard is scanned (`verify`).
const SCAN_CHUNK: usize = 1 << 20;

/// An open shard; the datasets stay open for the loader's lifetime.
pub struct Shard {
    pub path: PathBuf,
    /// Tokens or samples.
    pub count: u64,
    pub dtype: IntType,
    /// The checksum manifest.json records (`ShardEntry::crc32`).
    pub crc32: u32,
    body: Body,
}

enum Body {
    /// tokens: (count,)
    Tokens(Dataset),
    /// x: (count, d) float32, y: (count,) integer
    Classify { x: Dataset, y: Dataset, d: usize },
}

fn descriptor(t: IntType) -> TypeDescriptor {
    match t {
        IntType::Uint8 => TypeDescriptor::Unsigned(IntSize::U1),
        IntType::Uint16 => TypeDescriptor::Unsigned(IntSize::U2),
        IntType::Uint32 => TypeDescriptor::Unsigned(IntSize::U4),
        IntType::Int32 => TypeDescriptor::Integer(IntSize::U4),
        IntType::Int64 => TypeDescriptor::Integer(IntSize::U8),
    }
}

impl Shard {
    /// Opens `entry` of the dataset in `dir` and checks it against the manifest:
    /// file present and readable as HDF5, dataset names, shapes, dtype and count. The
    /// file is opened read-only without HDF5 file locking (see `h5file`).
    pub fn open(dir: &Path, m: &Manifest, entry: &ShardEntry) -> Result<Shard, DataError> {
        let path = Manifest::shard_path(dir, entry);
        if !path.is_file() {
            return Err(DataError::shard(
                &path,
                "shard listed in manifest.json is missing",
            ));
        }
        let file = h5file::open_read(&path).map_err(|e| {
            let why = if h5file::is_locking_error(&e) {
                ""
            } else {
                " (truncated or corrupt?)"
            };
            DataError::shard(&path, format!("cannot open as HDF5{why}: {e}"))
        })?;
        let open = |name: &str| {
            file.dataset(name)
                .map_err(|e| DataError::shard(&path, format!("no dataset {name:?}: {e}")))
        };
        let check_type = |ds: &Dataset, name: &str, want: TypeDescriptor| {
            let got = ds
                .dtype()
                .and_then(|t| t.to_descriptor())
                .map_err(|e| DataError::shard(&path, format!("dataset {name:?}: {e}")))?;
            if got != want {
                return Err(DataError::shard(
                    &path,
                    format!("dataset {name:?} has dtype {got}, manifest.json says {want}"),
                ));
            }
            Ok(())
        };
        let count_err = |name: &str, n: usize| {
            DataError::shard(
                &path,
                format!(
                    "dataset {name:?} holds {n} elements but manifest.json says count = {}",
                    entry.count
                ),
            )
        };
        let body = match m.kind {
            Kind::Tokens => {
                let ds = open("tokens")?;
                check_type(&ds, "tokens", descriptor(entry.dtype))?;
                let shape = ds.shape();
                if shape.len() != 1 {
                    return Err(DataError::shard(
                        &path,
                        format!("dataset \"tokens\" must be 1-D, has shape {shape:?}"),
                    ));
                }
                if shape[0] as u64 != entry.count {
                    return Err(count_err("tokens", shape[0]));
                }
                Body::Tokens(ds)
            }
            Kind::Classify => {
                let x = open("x")?;
                let y = open("y")?;
                check_type(&x, "x", TypeDescriptor::Float(FloatSize::U4))?;
                check_type(&y, "y", descriptor(entry.dtype))?;
                let (xs, ys) = (x.shape(), y.shape());
                if xs.len() != 2 || xs[1] != m.features {
                    return Err(DataError::shard(
                        &path,
                        format!(
                            "dataset \"x\" must have shape (n, {}), has {xs:?}",
                            m.features
                        ),
                    ));
                }
                if ys.len() != 1 || ys[0] != xs[0] {
                    return Err(DataError::shard(
                        &path,
                        format!("dataset \"y\" must have shape ({},), has {ys:?}", xs[0]),
                    ));
                }
                if xs[0] as u64 != entry.count {
                    return Err(count_err("x", xs[0]));
                }
                Body::Classify {
                    x,
                    y,
                    d: m.features,
                }
            }
        };
        Ok(Shard {
            path,
            count: entry.count,
            dtype: entry.dtype,
            crc32: entry.crc32,
            body,
        })
    }

    /// Bytes the checksum covers: the ids, and for classify also `x` (float32).
    pub fn data_bytes(&self) -> u64 {
        let x = match &self.body {
            Body::Tokens(_) => 0,
            Body::Classify { d, .. } => 4 * *d as u64,
        };
        self.count * (x + self.dtype.size() as u64)
    }

    /// Reads the whole shard (`scan`) and checks its checksum against the manifest's:
    /// `data inspect --verify` and the loader's first read of a shard (`data.verify`).
    pub fn verify(&self, limit: usize) -> Result<(), DataError> {
        let crc = self.scan(limit)?;
        if crc != self.crc32 {
            return Err(DataError::shard(
                &self.path,
                format!(
                    "checksum mismatch: manifest.json says crc32 {}, the data gives {} (the \
                     shard changed after the manifest was written, or is corrupt)",
                    crate::checksum::hex(self.crc32),
                    crate::checksum::hex(crc)
                ),
            ));
        }
        Ok(())
    }

    fn read_err(&self, what: &str, e: hdf5::Error) -> DataError {
        DataError::shard(
            &self.path,
            format!("reading {what} failed (corrupt file?): {e}"),
        )
    }

    fn range_err(&self, what: &'static str, position: u64, value: i64, limit: usize) -> DataError {
        DataError::OutOfRange {
            path: self.path.clone(),
            what,
            position,
            value,
            limit,
        }
    }

    /// Reads tokens `[start, start + out.len())` into `out`, checking each is `< limit`.
    pub fn read_tokens(&self, start: u64, out: &mut [u32], limit: usize) -> Result<(), DataError> {
        let Body::Tokens(ds) = &self.body else {
            return Err(DataError::shard(&self.path, "not a token shard"));
        };
        let s = start as usize;
        let a = ds
            .read_slice_1d::<u32, _>(s..s + out.len())
            .map_err(|e| self.read_err("tokens", e))?;
        for (j, (o, &v)) in out.iter_mut().zip(a.iter()).enumerate() {
            if v as usize >= limit {
                return Err(self.range_err("token id", start + j as u64, v as i64, limit));
            }
            *o = v;
        }
        Ok(())
    }

    /// Reads rows `rows` (any order, one HDF5 point selection per dataset): `x_out`
    /// (rows.len(), d) row-major gets the features; the labels (checked `< limit`) are
    /// returned in the same order.
    pub fn read_rows(
        &self,
        rows: &[u64],
        x_out: &mut [f32],
        limit: usize,
    ) -> Result<Vec<u32>, DataError> {
        let Body::Classify { x, y, d } = &self.body else {
            return Err(DataError::shard(&self.path, "not a classification shard"));
        };
        let d = *d;
        // x points: (rows.len() * d, 2) of (row, column); y points: (rows.len(), 1)
        let xp = Array2::from_shape_fn((rows.len() * d, 2), |(k, c)| {
            if c == 0 {
                rows[k / d] as usize
            } else {
                k % d
            }
        });
        let yp = Array2::from_shape_fn((rows.len(), 1), |(k, _)| rows[k] as usize);
        let xa = x
            .read_slice_1d::<f32, _>(Selection::Points(xp))
            .map_err(|e| self.read_err("x", e))?;
        for (o, &v) in x_out.iter_mut().zip(xa.iter()) {
            *o = v;
        }
        let ya = y
            .read_slice_1d::<i64, _>(Selection::Points(yp))
            .map_err(|e| self.read_err("y", e))?;
        rows.iter()
            .zip(ya.iter())
            .map(|(&r, &label)| {
                if label < 0 || label as usize >= limit {
                    return Err(self.range_err("label", r, label, limit));
                }
                Ok(label as u32)
            })
            .collect()
    }

    /// Scans the whole shard in chunks: checks every id is `< limit` and returns the
    /// CRC-32 of the data values (see `ShardEntry::crc32`). For `verify`.
    fn scan(&self, limit: usize) -> Result<u32, DataError> {
        let mut crc = crc32fast::Hasher::new();
        let mut bytes = Vec::new();
        let n = self.count as usize;
        let ids = match &self.body {
            Body::Tokens(ds) => ("token id", ds),
            Body::Classify { x, y, d } => {
                let rows = (SCAN_CHUNK / d.max(&1)).max(1);
                for r in (0..n).step_by(rows) {
                    let e = (r + rows).min(n);
                    let a = x
                        .read_slice_2d::<f32, _>(s![r..e, ..])
                        .map_err(|e| self.read_err("x", e))?;
                    bytes.clear();
                    for v in a.iter() {
                        bytes.extend_from_slice(&v.to_le_bytes());
                    }
                    crc.update(&bytes);
                }
                ("label", y)
            }
        };
        for c in (0..n).step_by(SCAN_CHUNK) {
            let e = (c + SCAN_CHUNK).min(n);
            let a = ids
                .1
                .read_slice_1d::<i64, _>(c..e)
                .map_err(|e| self.read_err(ids.0, e))?;
            if let Some(j) = a.iter().position(|&v| v < 0 || v as usize >= limit) {
                return Err(self.range_err(ids.0, (c + j) as u64, a[j], limit));
            }
            bytes.clear();
            self.dtype.extend_le(a.iter().copied(), &mut bytes);
            crc.update(&bytes);
        }
        Ok(crc.finalize())
    }
}
