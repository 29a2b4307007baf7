//! `manifest.json`: what a dataset directory holds. See docs/data-format.md.
use super::error::DataError;
use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};

/// File name of the manifest inside a dataset directory.
pub const MANIFEST: &str = "manifest.json";
/// Value of the manifest's `format` key.
pub const FORMAT: &str = "zerotrain-dataset";
/// Manifest version this build reads and writes.
pub const VERSION: u32 = 1;

/// What the shards hold.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A 1-D dataset `tokens` per shard (language modelling).
    Tokens,
    /// `x` float32 (n, d) and `y` integer (n) per shard (classification).
    Classify,
}

/// Train or validation split.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

/// Integer element type of `tokens` (uint16 or uint32) or of the labels `y`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IntType {
    Uint8,
    Uint16,
    Uint32,
    Int32,
    Int64,
}

impl IntType {
    /// The type the writers use for ids in `0..n`: uint16 when they fit, else uint32.
    pub fn for_ids(n: usize) -> IntType {
        if n <= 1 << 16 {
            IntType::Uint16
        } else {
            IntType::Uint32
        }
    }
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            IntType::Uint8 => 1,
            IntType::Uint16 => 2,
            IntType::Uint32 | IntType::Int32 => 4,
            IntType::Int64 => 8,
        }
    }
    /// Name as in the manifest (and numpy).
    pub fn name(self) -> &'static str {
        match self {
            IntType::Uint8 => "uint8",
            IntType::Uint16 => "uint16",
            IntType::Uint32 => "uint32",
            IntType::Int32 => "int32",
            IntType::Int64 => "int64",
        }
    }
    /// Exclusive upper bound of ids this type can hold.
    pub fn id_limit(self) -> u64 {
        match self {
            IntType::Uint8 => 1 << 8,
            IntType::Uint16 => 1 << 16,
            IntType::Uint32 => 1 << 32,
            IntType::Int32 => 1 << 31,
            IntType::Int64 => 1 << 63,
        }
    }
    /// Appends `vs` as little-endian bytes of this type (what checksums are computed
    /// on), matching on the type once for the whole sequence.
    pub fn extend_le(self, vs: impl IntoIterator<Item = i64>, out: &mut Vec<u8>) {
        let vs = vs.into_iter();
        out.reserve(vs.size_hint().0 * self.size());
        match self {
            IntType::Uint8 => out.extend(vs.map(|v| v as u8)),
            IntType::Uint16 => vs.for_each(|v| out.extend_from_slice(&(v as u16).to_le_bytes())),
            IntType::Uint32 => vs.for_each(|v| out.extend_from_slice(&(v as u32).to_le_bytes())),
            IntType::Int32 => vs.for_each(|v| out.extend_from_slice(&(v as i32).to_le_bytes())),
            IntType::Int64 => vs.for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        }
    }
}

/// One shard file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardEntry {
    /// File name relative to the dataset directory.
    pub file: String,
    pub split: Split,
    /// Tokens (kind = tokens) or samples (kind = classify) in the shard.
    pub count: u64,
    /// Element type of `tokens`, or of `y` for classify (`x` is always float32).
    pub dtype: IntType,
    /// CRC-32 (zlib) of the data values as little-endian bytes of `dtype`; for classify,
    /// of `x` (float32, row-major) followed by `y`. Written as 8 hex digits, read as
    /// those or an integer (`crate::checksum`).
    #[serde(with = "crate::checksum::notation")]
    pub crc32: u32,
}

/// The whole manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Always `"zerotrain-dataset"`.
    pub format: String,
    /// Always 1.
    pub version: u32,
    pub kind: Kind,
    /// How text was tokenised: "chars", "bytes" (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    /// Generator that produced the data, e.g. "addition" or "classify" (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// addition: whether each line's sum is written least-significant digit first
    /// (`48+39=78` for 87). Absent (older manifests, other tasks) means not reversed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_sum: Option<bool>,
    /// Token ids are in `0..vocab_size` (kind = tokens).
    #[serde(default)]
    pub vocab_size: usize,
    /// The string of each token id, for character vocabularies (absent for bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<Vec<String>>,
    /// Feature dimension d (kind = classify).
    #[serde(default)]
    pub features: usize,
    /// Labels are in `0..classes` (kind = classify).
    #[serde(default)]
    pub classes: usize,
    pub shards: Vec<ShardEntry>,
}

impl Manifest {
    /// An empty manifest of `kind`, to be filled by a writer.
    pub fn new(kind: Kind) -> Self {
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            kind,
            tokenizer: None,
            task: None,
            reverse_sum: None,
            vocab_size: 0,
            vocab: None,
            features: 0,
            classes: 0,
            shards: Vec::new(),
        }
    }

    /// Reads and checks `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest, DataError> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
        let m: Manifest = serde_json::from_str(&text)
            .map_err(|e| DataError::manifest(&path, format!("not a valid manifest: {e}")))?;
        m.check(&path)?;
        Ok(m)
    }

    /// Writes `dir/manifest.json` atomically (temporary file, then rename).
    pub fn save(&self, dir: &Path) -> Result<(), DataError> {
        let path = dir.join(MANIFEST);
        let tmp = dir.join(format!("{MANIFEST}.tmp"));
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| DataError::manifest(&path, e.to_string()))?;
        std::fs::write(&tmp, text + "\n").map_err(|e| DataError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| DataError::io(&path, e))
    }

    /// The shards of `split`, with their index in `shards`.
    pub fn split(&self, split: Split) -> Vec<(usize, &ShardEntry)> {
        self.shards
            .iter()
            .enumerate()
            .filter(|(_, s)| s.split == split)
            .collect()
    }

    /// Exclusive upper bound of the ids in the data: vocab_size or classes.
    pub fn id_limit(&self) -> usize {
        match self.kind {
            Kind::Tokens => self.vocab_size,
            Kind::Classify => self.classes,
        }
    }

    /// Path of a shard file.
    pub fn shard_path(dir: &Path, entry: &ShardEntry) -> PathBuf {
        dir.join(&entry.file)
    }

    /// Consistency checks that need no shard file.
    fn check(&self, path: &Path) -> Result<(), DataError> {
        let bad = |msg: String| Err(DataError::manifest(path, msg));
        if self.format != FORMAT {
            return bad(format!("format is {:?}, expected {FORMAT:?}", self.format));
        }
        if self.version != VERSION {
            return bad(format!(
                "version {} is not supported (this build reads {VERSION})",
                self.version
            ));
        }
        match self.kind {
            Kind::Tokens => {
                if self.vocab_size == 0 {
                    return bad("kind = tokens needs vocab_size >= 1".into());
                }
                if let Some(v) = &self.vocab {
                    if v.len() != self.vocab_size {
                        return bad(format!(
                            "vocab lists {} entries but vocab_size is {}",
                            v.len(),
                            self.vocab_size
                        ));
                    }
                }
            }
            Kind::Classify => {
                if self.features == 0 || self.classes < 2 {
                    return bad("kind = classify needs features >= 1 and classes >= 2".into());
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for s in &self.shards {
            let p = Path::new(&s.file);
            let plain =
                !s.file.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
            if !plain {
                return bad(format!(
                    "shard file {:?} must be a relative path inside the dataset directory",
                    s.file
                ));
            }
            if !seen.insert(&s.file) {
                return bad(format!("shard file {:?} is listed twice", s.file));
            }
            if self.kind == Kind::Tokens && !matches!(s.dtype, IntType::Uint16 | IntType::Uint32) {
                return bad(format!(
                    "shard {}: token dtype must be uint16 or uint32, got {}",
                    s.file,
                    s.dtype.name()
                ));
            }
            if (self.id_limit() as u64) > s.dtype.id_limit() {
                return bad(format!(
                    "shard {}: dtype {} cannot hold ids up to {}",
                    s.file,
                    s.dtype.name(),
                    self.id_limit() - 1
                ));
            }
        }
        Ok(())
    }
}
