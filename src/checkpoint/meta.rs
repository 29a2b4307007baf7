//! `meta.json`: what a checkpoint holds and how it was sharded. Written by rank 0 after
//! every rank file is on disk; read by every rank on resume and by the tools.
use super::error::{CkptError, Result};
use crate::config::{Config, DType, ModelConfig, OptimizerKind};
use crate::data::LoaderState;
use crate::model::UnitSpec;
use crate::optim::LossScaler;
use crate::zero::UnitLayout;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Version of the on-disk layout (docs/checkpoint-format.md).
pub const FORMAT: u32 = 1;
/// Name of the metadata file in a step directory.
pub const META_FILE: &str = "meta.json";

/// One unit as the writing run laid it out.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct UnitEntry {
    pub name: String,
    /// Real elements.
    pub numel: usize,
    /// Elements after padding at the writing world size.
    pub padded: usize,
    /// The named tensors of the unit's flat buffer, in order (docs/checkpoint-format.md:
    /// how to split a unit with h5py). Absent in checkpoints written before the field;
    /// when present, it must be the model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensors: Option<Vec<TensorEntry>>,
}

/// One named tensor inside a unit: `numel = prod(shape)` elements from `offset` of the
/// unit's canonical (unpadded) flat buffer, row-major.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
}

impl TensorEntry {
    /// The tensors of `unit`, as meta.json lists them.
    pub fn of(unit: &UnitSpec) -> Vec<TensorEntry> {
        unit.tensors
            .iter()
            .map(|t| TensorEntry {
                name: t.name.clone(),
                shape: t.shape.clone(),
                offset: t.offset,
            })
            .collect()
    }
}

/// One rank file with its size and CRC-32.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    /// CRC-32 (IEEE) of the whole file, 8 hex digits (`crate::checksum`'s notation).
    pub crc32: String,
}

/// Contents of `meta.json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Meta {
    pub format: u32,
    /// Training steps done (the loop continues at this step).
    pub step: u64,
    /// Optimizer updates done (fp16 steps skipped on overflow not counted): Adam's
    /// bias-correction step.
    pub optimizer_steps: u64,
    /// World size, ZeRO stage and dtypes of the writing run.
    pub world: usize,
    pub stage: u8,
    pub dtype: DType,
    pub reduce_dtype: DType,
    pub optimizer: OptimizerKind,
    /// Names of the optimizer state datasets, in the optimizer's order.
    pub state_names: Vec<String>,
    pub model: ModelConfig,
    pub units: Vec<UnitEntry>,
    /// Train loader position after the last step's batches.
    pub loader: LoaderState,
    pub scaler: LossScaler,
    /// CRC-32 of the resolved config TOML with `[checkpoint]` and `[log]` reset to their
    /// defaults ([`config_digest`]), 8 hex digits.
    pub config_crc32: String,
    /// `files[r]` is rank r's file.
    pub files: Vec<FileEntry>,
}

/// The CRC-32 (zlib's) of the resolved configuration rendered as TOML (`Config::to_toml`,
/// what `zerotrain config show` prints), after every key of `[checkpoint]` and `[log]` is
/// reset to its default (the sections stay in the text, with default values): a resumed
/// run naturally changes them. Recorded in `meta.json`; docs/checkpoint-format.md shows
/// how to recompute it from `config show`.
pub fn config_digest(cfg: &Config) -> String {
    let mut c = cfg.clone();
    c.checkpoint = Default::default();
    c.log = Default::default();
    crate::checksum::hex(crc32fast::hash(c.to_toml().as_bytes()))
}

impl Meta {
    /// Reads and checks `dir/meta.json`: every field (docs/checkpoint-format.md), a
    /// value that does not parse or does not fit named by its key.
    pub fn read(dir: &Path) -> Result<Meta> {
        let path = dir.join(META_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| CkptError::io(&path, e))?;
        let meta: Meta =
            serde_json::from_str(&text).map_err(|e| {
                match super::json_path::path_at(&text, e.line(), e.column()) {
                    Some(key) if e.is_data() => CkptError::MetaKey {
                        path: path.clone(),
                        key,
                        msg: e.to_string(),
                    },
                    _ => CkptError::Meta {
                        path: path.clone(),
                        msg: format!("not a valid checkpoint description: {e}"),
                    },
                }
            })?;
        super::meta_check::check(&meta, dir, &path)?;
        Ok(meta)
    }

    /// Writes `dir/meta.json` and fsyncs it.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(META_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| CkptError::Meta {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        super::fsio::write_synced(&path, text.as_bytes())
    }

    /// Unit `u` laid out as the writing run had it.
    pub fn unit_layout(&self, u: usize) -> UnitLayout {
        let e = &self.units[u];
        let canonical_offset = self.units[..u].iter().map(|x| x.numel).sum();
        UnitLayout {
            name: e.name.clone(),
            numel: e.numel,
            padded: e.padded,
            shard: e.padded / self.world,
            canonical_offset,
        }
    }

    /// Real parameters.
    pub fn numel(&self) -> usize {
        self.units.iter().map(|u| u.numel).sum()
    }

    /// Errors unless the unit table matches `model` (names and element counts).
    pub fn check_model(&self, dir: &Path, model: &[UnitSpec]) -> Result<()> {
        let diff = |msg: String| {
            Err(CkptError::DifferentModel {
                dir: dir.to_path_buf(),
                msg,
            })
        };
        if self.units.len() != model.len() {
            return diff(format!(
                "it has {} units, this model {}",
                self.units.len(),
                model.len()
            ));
        }
        for (c, m) in self.units.iter().zip(model) {
            if c.name != m.name {
                return diff(format!(
                    "unit {} is called {:?} there, {:?} here",
                    m.name, c.name, m.name
                ));
            }
            if c.numel != m.numel {
                return diff(format!(
                    "unit {} has {} elements, this model {}",
                    c.name, c.numel, m.numel
                ));
            }
        }
        Ok(())
    }

    /// Path of rank r's file inside `dir`.
    pub fn rank_path(&self, dir: &Path, r: usize) -> PathBuf {
        dir.join(&self.files[r].name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Sampling;

    fn meta() -> Meta {
        let cfg = Config::default();
        let units: Vec<UnitEntry> = crate::model::unit_specs(&cfg.model)
            .iter()
            .map(|u| UnitEntry {
                name: u.name.clone(),
                numel: u.numel,
                padded: u.numel.div_ceil(32) * 32,
                tensors: Some(TensorEntry::of(u)),
            })
            .collect();
        Meta {
            format: FORMAT,
            step: 3,
            optimizer_steps: 3,
            world: 2,
            stage: 1,
            dtype: DType::Bf16,
            reduce_dtype: DType::Fp32,
            optimizer: OptimizerKind::Adamw,
            state_names: vec!["exp_avg".into(), "exp_avg_sq".into()],
            model: cfg.model.clone(),
            units,
            loader: LoaderState {
                batches: 3,
                ..LoaderState::start(Sampling::Random)
            },
            scaler: LossScaler::disabled(),
            config_crc32: config_digest(&cfg),
            files: (0..2)
                .map(|r| FileEntry {
                    name: super::super::paths::rank_file_name(r),
                    bytes: 1,
                    crc32: "00000000".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn round_trip_and_model_check() {
        let dir = tempfile::tempdir().unwrap();
        let m = meta();
        m.write(dir.path()).unwrap();
        let back = Meta::read(dir.path()).unwrap();
        assert_eq!(back, m);
        let specs = crate::model::unit_specs(&m.model);
        m.check_model(dir.path(), &specs).unwrap();
        let mut other = m.model.clone();
        other.d_model = 48;
        let e = m
            .check_model(dir.path(), &crate::model::unit_specs(&other))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is of a different model: unit embed has"), "{e}");
        assert_eq!(m.unit_layout(1).canonical_offset, m.units[0].numel);
    }

    #[test]
    fn inconsistent_meta_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = meta();
        m.files.pop();
        m.write(dir.path()).unwrap();
        let e = Meta::read(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("meta.json: key `files`: 1 rank files listed, but world is 2"),
            "{e}"
        );
        std::fs::write(dir.path().join(META_FILE), "{").unwrap();
        assert!(Meta::read(dir.path()).is_err());
    }

    /// A meta.json written before units listed their tensors still reads.
    #[test]
    fn units_without_tensors_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = meta();
        for u in &mut m.units {
            u.tensors = None;
        }
        m.write(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(META_FILE)).unwrap();
        assert!(!text.contains("tensors"), "{text}");
        assert_eq!(Meta::read(dir.path()).unwrap(), m);
    }

    /// Each edit of a good meta.json (a JSON value replaced) is refused naming the key.
    #[test]
    fn every_edited_field_is_named() {
        let good = serde_json::to_value(meta()).unwrap();
        let cases: &[(&str, serde_json::Value, &str)] = &[
            ("/format", 2.into(), "key `format`: 2 is not supported"),
            ("/stage", 7.into(), "key `stage`: 7 is not a ZeRO stage"),
            (
                "/stage",
                (-1).into(),
                "key `stage`: invalid value: integer `-1`",
            ),
            ("/world", 0.into(), "key `world`: must be at least 1"),
            ("/optimizer_steps", 4.into(), "key `optimizer_steps`"),
            ("/dtype", "fp8".into(), "key `dtype`: unknown variant `fp8`"),
            ("/reduce_dtype", "f32".into(), "key `reduce_dtype`"),
            ("/optimizer", "lamb".into(), "key `optimizer`"),
            ("/state_names/1", "v".into(), "key `state_names`"),
            ("/config_crc32", "xyz".into(), "key `config_crc32`"),
            (
                "/files/1/name",
                "rank-00007.h5".into(),
                "key `files[1].name`",
            ),
            ("/files/0/crc32", "0".into(), "key `files[0].crc32`"),
            ("/files/0/bytes", "many".into(), "key `files[0].bytes`"),
            (
                "/units/2/numel",
                5.into(),
                "key `units[2].numel`: 5, the model's unit",
            ),
            ("/units/1/padded", 64000.into(), "key `units[1].padded`"),
            ("/units/0/name", "emb".into(), "key `units[0].name`"),
            (
                "/units/1/tensors/0/name",
                "h.0.ln_2.weight".into(),
                "key `units[1].tensors`: tensor 0 is h.0.ln_2.weight (shape [32], offset 0), \
                 the model's unit h.0 has h.0.ln_1.weight (shape [32], offset 0)",
            ),
            (
                "/units/1/tensors/2/offset",
                1.into(),
                "key `units[1].tensors`",
            ),
            (
                "/units/1/tensors/0/shape",
                "32".into(),
                "key `units[1].tensors[0].shape`",
            ),
            (
                "/model/n_head",
                3.into(),
                "key `model.d_model`: 32 is not divisible",
            ),
            (
                "/model/n_layer",
                1000000.into(),
                "key `model.n_layer`: 1000000 layers",
            ),
            ("/model/kind", "rnn".into(), "key `model.kind`"),
            ("/loader/batches", 1.into(), "key `loader.batches`"),
            ("/loader/epoch", 2.into(), "key `loader`"),
            (
                "/loader/sampling",
                "sometimes".into(),
                "key `loader.sampling`",
            ),
            ("/scaler/scale", 4.0.into(), "key `scaler.scale`"),
            ("/scaler/enabled", true.into(), "key `scaler."),
        ];
        for (at, value, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let mut v = good.clone();
            *v.pointer_mut(at).unwrap() = value.clone();
            let text = serde_json::to_string_pretty(&v).unwrap();
            std::fs::write(dir.path().join(META_FILE), text).unwrap();
            let e = Meta::read(dir.path()).unwrap_err().to_string();
            assert!(e.contains("meta.json: ") && e.contains(want), "{at}: {e}");
        }
    }

    #[test]
    fn step_must_match_the_directory_and_rank_files_the_world() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("step-00000004");
        std::fs::create_dir(&dir).unwrap();
        meta().write(&dir).unwrap();
        let e = Meta::read(&dir).unwrap_err().to_string();
        assert!(
            e.contains("key `step`: 3, but the directory is step-00000004"),
            "{e}"
        );
        let dir = root.path().join("step-00000003");
        std::fs::create_dir(&dir).unwrap();
        meta().write(&dir).unwrap();
        Meta::read(&dir).unwrap();
        std::fs::write(dir.join("rank-00002.h5"), b"x").unwrap();
        let e = Meta::read(&dir).unwrap_err().to_string();
        assert!(
            e.contains("key `world`: 2, but the directory also holds rank-00002.h5"),
            "{e}"
        );
    }

    #[test]
    fn digest_ignores_checkpoint_and_log_sections() {
        let mut cfg = Config::default();
        let d = config_digest(&cfg);
        cfg.checkpoint.resume = "auto".into();
        cfg.log.every = 1;
        assert_eq!(config_digest(&cfg), d);
        // What `config show` prints for a config without the two sections, hashed.
        let text = Config::default().to_toml();
        assert_eq!(d, crate::checksum::hex(crc32fast::hash(text.as_bytes())));
        cfg.train.lr = 0.5;
        assert_ne!(config_digest(&cfg), d);
    }
}
