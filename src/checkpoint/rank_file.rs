//! One rank's HDF5 file: root attributes `step`, `rank`, `world` (what meta.json must
//! agree with; files written before they existed lack them), and per unit a group named
//! after the unit with attributes `start`/`end` (the unit-local range of real elements
//! this rank owned) and 1-D f32 datasets `master` and one per optimizer state, each
//! `end - start` long.
use super::error::{CkptError, Result};
use crate::zero::UnitPiece;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Dataset of the fp32 master weights in each unit group.
pub const MASTER: &str = "master";

/// The root attributes of a rank file: which checkpoint and rank it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub step: u64,
    pub rank: usize,
    pub world: usize,
}

impl Header {
    fn fields(&self) -> [(&'static str, u64); 3] {
        [
            ("step", self.step),
            ("rank", self.rank as u64),
            ("world", self.world as u64),
        ]
    }
}

/// Writes a rank file, one unit at a time: `piece(u)` is asked for unit `u` only when
/// its group is written, so memory stays at one unit's piece.
pub fn write(
    path: &Path,
    header: Header,
    units: &[String],
    state_names: &[&str],
    mut piece: impl FnMut(usize) -> anyhow::Result<UnitPiece>,
) -> anyhow::Result<()> {
    let f = crate::data::h5file::create(path).map_err(|e| CkptError::hdf5(path, "create", e))?;
    for (key, v) in header.fields() {
        f.new_attr::<u64>()
            .create(key)
            .and_then(|a| a.write_scalar(&v))
            .map_err(|e| CkptError::hdf5(path, &format!("attribute {key}"), e))?;
    }
    for (u, name) in units.iter().enumerate() {
        let p = piece(u)?;
        let herr = |what: &str, e| CkptError::hdf5(path, &format!("unit {name}: {what}"), e);
        let g = f.create_group(name).map_err(|e| herr("group", e))?;
        for (key, v) in [("start", p.range.start), ("end", p.range.end)] {
            g.new_attr::<u64>()
                .create(key)
                .and_then(|a| a.write_scalar(&(v as u64)))
                .map_err(|e| herr(key, e))?;
        }
        let sets =
            std::iter::once((MASTER, &p.master)).chain(state_names.iter().copied().zip(&p.states));
        for (ds, data) in sets {
            g.new_dataset_builder()
                .with_data(&data[..])
                .create(ds)
                .map_err(|e| herr(ds, e))?;
        }
    }
    f.close().map_err(|e| CkptError::hdf5(path, "close", e))?;
    Ok(())
}

/// A rank file opened for reading.
pub struct RankFile {
    pub path: PathBuf,
    file: hdf5::File,
}

impl RankFile {
    pub fn open(path: &Path) -> Result<RankFile> {
        crate::data::h5file::quiet_hdf5();
        let file = hdf5::File::open(path).map_err(|e| CkptError::hdf5(path, "open", e))?;
        Ok(RankFile {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Errors where a root attribute the file records differs from `expect` (meta.json's
    /// view); files without the attributes pass.
    pub fn check_header(&self, expect: Header, meta_path: &Path) -> Result<()> {
        for (key, want) in expect.fields() {
            if !self
                .file
                .attr_names()
                .is_ok_and(|n| n.iter().any(|a| a == key))
            {
                continue;
            }
            let got = self
                .file
                .attr(key)
                .and_then(|a| a.read_scalar::<u64>())
                .map_err(|e| CkptError::Corrupt {
                    path: self.path.clone(),
                    what: format!("attribute {key}: {e}"),
                })?;
            if got != want {
                return Err(CkptError::MetaKey {
                    path: meta_path.to_path_buf(),
                    key: key.to_string(),
                    msg: format!("{want}, but {} records {key} {got}", self.path.display()),
                });
            }
        }
        Ok(())
    }

    fn bad(&self, unit: &str, what: String) -> CkptError {
        CkptError::Corrupt {
            path: self.path.clone(),
            what: format!("unit {unit}: {what}"),
        }
    }

    /// The unit-local range unit `unit` covers in this file, checked against `expect`
    /// and against every dataset's length.
    pub fn check_unit(&self, unit: &str, expect: Range<usize>, datasets: &[&str]) -> Result<()> {
        let range = self.range(unit)?;
        // Two empty ranges describe the same (no) elements wherever they sit: files from
        // before the layout put an all-padding rank's empty range at its slice say
        // `numel..numel`.
        if range != expect && !(range.is_empty() && expect.is_empty()) {
            return Err(self.bad(
                unit,
                format!("covers {range:?}, the unit table says {expect:?}"),
            ));
        }
        let g = self.group(unit)?;
        for ds in datasets {
            let d = g
                .dataset(ds)
                .map_err(|e| self.bad(unit, format!("dataset {ds}: {e}")))?;
            if d.shape() != [range.len()] {
                return Err(self.bad(
                    unit,
                    format!(
                        "dataset {ds} has shape {:?}, expected [{}]",
                        d.shape(),
                        range.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn group(&self, unit: &str) -> Result<hdf5::Group> {
        self.file
            .group(unit)
            .map_err(|e| self.bad(unit, format!("no group: {e}")))
    }

    /// The unit-local range of unit `unit` stored here.
    pub fn range(&self, unit: &str) -> Result<Range<usize>> {
        let g = self.group(unit)?;
        let get = |k: &str| {
            g.attr(k)
                .and_then(|a| a.read_scalar::<u64>())
                .map(|v| v as usize)
                .map_err(|e| self.bad(unit, format!("attribute {k}: {e}")))
        };
        let (s, e) = (get("start")?, get("end")?);
        if e < s {
            return Err(self.bad(unit, format!("start {s} > end {e}")));
        }
        Ok(s..e)
    }

    /// Reads dataset `ds` of unit `unit` over the unit-local range `want` (inside the
    /// stored range) by a hyperslab read into `out` (`want.len()` long).
    pub fn read_into(
        &self,
        unit: &str,
        ds: &str,
        stored: &Range<usize>,
        want: Range<usize>,
        out: &mut [f32],
    ) -> Result<()> {
        let d = self
            .group(unit)?
            .dataset(ds)
            .map_err(|e| self.bad(unit, format!("dataset {ds}: {e}")))?;
        let local = (want.start - stored.start)..(want.end - stored.start);
        let a = d
            .read_slice_1d::<f32, _>(local.clone())
            .map_err(|e| self.bad(unit, format!("reading {ds}[{local:?}]: {e}")))?;
        for (o, v) in out.iter_mut().zip(a.iter()) {
            *o = *v;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_round_trip_by_hyperslab() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rank-00000.h5");
        let units = vec!["a".to_string(), "b".to_string()];
        let piece = |u: usize| -> anyhow::Result<UnitPiece> {
            let range = if u == 0 { 10..20 } else { 0..0 };
            let master: Vec<f32> = range.clone().map(|i| i as f32).collect();
            let states = vec![master.iter().map(|x| -x).collect()];
            Ok(UnitPiece {
                range,
                master,
                states,
            })
        };
        let header = Header {
            step: 7,
            rank: 0,
            world: 2,
        };
        write(&path, header, &units, &["m"], piece).unwrap();
        let f = RankFile::open(&path).unwrap();
        let meta = dir.path().join("meta.json");
        f.check_header(header, &meta).unwrap();
        let e = f
            .check_header(Header { step: 8, ..header }, &meta)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("meta.json: key `step`: 8, but") && e.contains("records step 7"),
            "{e}"
        );
        f.check_unit("a", 10..20, &[MASTER, "m"]).unwrap();
        f.check_unit("b", 0..0, &[MASTER, "m"]).unwrap();
        assert!(f.check_unit("a", 10..21, &[MASTER]).is_err());
        assert!(f.check_unit("a", 10..20, &["nope"]).is_err());
        let mut out = vec![0.0; 4];
        f.read_into("a", MASTER, &(10..20), 13..17, &mut out)
            .unwrap();
        assert_eq!(out, [13.0, 14.0, 15.0, 16.0]);
        f.read_into("a", "m", &(10..20), 16..20, &mut out).unwrap();
        assert_eq!(out, [-16.0, -17.0, -18.0, -19.0]);
        assert!(f.range("c").is_err());
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rank-00000.h5");
        std::fs::write(&path, b"not hdf5").unwrap();
        let e = RankFile::open(&path).err().unwrap().to_string();
        assert!(e.contains("rank-00000.h5"), "{e}");
    }
}
