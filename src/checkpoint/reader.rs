//! Reading a checkpoint at any world size: any unit-local range of any unit is
//! assembled from the hyperslabs of the old rank files that overlap it, so a reader
//! holds only what it asked for.
use super::error::{CkptError, Result};
use super::fsio::file_crc32;
use super::meta::{Meta, META_FILE};
use super::paths::resolve;
use super::rank_file::{Header, RankFile, MASTER};
use crate::zero::UnitPiece;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// An opened step directory: its metadata, and rank files opened on first use.
pub struct Checkpoint {
    /// The step directory.
    pub dir: PathBuf,
    pub meta: Meta,
    files: Vec<Option<RankFile>>,
    /// Check each rank file's size and CRC-32 against `meta.json` when it is opened.
    verify_on_open: bool,
}

impl Checkpoint {
    /// Opens `path` (a step directory, or a directory with `latest`), reads `meta.json`
    /// and checks that every rank file exists. With `verify_on_open`, each rank file's
    /// checksum is checked the first time it is read.
    pub fn open(path: &Path, verify_on_open: bool) -> Result<Checkpoint> {
        let dir = resolve(path)?;
        let meta = Meta::read(&dir)?;
        for r in 0..meta.world {
            let p = meta.rank_path(&dir, r);
            if !p.is_file() {
                return Err(CkptError::MissingRankFile {
                    path: p,
                    world: meta.world,
                });
            }
        }
        let files = (0..meta.world).map(|_| None).collect();
        Ok(Checkpoint {
            dir,
            meta,
            files,
            verify_on_open,
        })
    }

    /// Checks rank file r's size and CRC-32 against `meta.json`.
    pub fn verify_checksum(&self, r: usize) -> Result<()> {
        let path = self.meta.rank_path(&self.dir, r);
        let entry = &self.meta.files[r];
        let (bytes, crc) = file_crc32(&path)?;
        if bytes != entry.bytes {
            return Err(CkptError::Corrupt {
                path,
                what: format!("{bytes} bytes, meta.json says {}", entry.bytes),
            });
        }
        let crc = crate::checksum::hex(crc);
        if crc != entry.crc32 {
            return Err(CkptError::Corrupt {
                path,
                what: format!("CRC-32 {crc}, meta.json says {}", entry.crc32),
            });
        }
        Ok(())
    }

    /// Rank file r, opened (and verified) on first use; the step, rank and world it
    /// records must be meta.json's.
    pub fn rank_file(&mut self, r: usize) -> Result<&RankFile> {
        if self.files[r].is_none() {
            if self.verify_on_open {
                self.verify_checksum(r)?;
            }
            let f = RankFile::open(&self.meta.rank_path(&self.dir, r))?;
            let header = Header {
                step: self.meta.step,
                rank: r,
                world: self.meta.world,
            };
            f.check_header(header, &self.dir.join(META_FILE))?;
            self.files[r] = Some(f);
        }
        self.files[r].as_ref().ok_or_else(|| CkptError::Meta {
            path: self.dir.clone(),
            msg: format!("internal error: rank file {r} not open"),
        })
    }

    /// Master weights (and, with `states`, optimizer states) of unit `u` over the
    /// unit-local range `want` (real elements only).
    pub fn read(&mut self, u: usize, want: Range<usize>, states: bool) -> Result<UnitPiece> {
        let l = self.meta.unit_layout(u);
        if want.end > l.numel || want.start > want.end {
            return Err(CkptError::Meta {
                path: self.dir.clone(),
                msg: format!("unit {}: range {want:?} outside 0..{}", l.name, l.numel),
            });
        }
        let names: Vec<String> = if states {
            self.meta.state_names.clone()
        } else {
            Vec::new()
        };
        let n = want.len();
        let mut piece = UnitPiece {
            range: want.clone(),
            master: vec![0.0; n],
            states: vec![vec![0.0; n]; names.len()],
        };
        let mut covered = 0;
        for r in 0..self.meta.world {
            let owned = l.valid_range(r);
            let (a, b) = (owned.start.max(want.start), owned.end.min(want.end));
            if a >= b {
                continue;
            }
            let f = self.rank_file(r)?;
            let stored = f.range(&l.name)?;
            if stored != owned {
                return Err(CkptError::Corrupt {
                    path: f.path.clone(),
                    what: format!(
                        "unit {}: covers {stored:?}, the unit table says {owned:?}",
                        l.name
                    ),
                });
            }
            let dst = (a - want.start)..(b - want.start);
            f.read_into(
                &l.name,
                MASTER,
                &stored,
                a..b,
                &mut piece.master[dst.clone()],
            )?;
            for (s, name) in names.iter().enumerate() {
                f.read_into(
                    &l.name,
                    name,
                    &stored,
                    a..b,
                    &mut piece.states[s][dst.clone()],
                )?;
            }
            covered += b - a;
        }
        if covered != n {
            return Err(CkptError::Meta {
                path: self.dir.clone(),
                msg: format!(
                    "unit {}: rank files cover {covered} of {n} elements",
                    l.name
                ),
            });
        }
        Ok(piece)
    }
}
