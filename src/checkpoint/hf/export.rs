//! `zerotrain export --format hf`: a checkpoint (any world size and stage) as a
//! Hugging Face `GPT2LMHeadModel` directory: `config.json` and `model.safetensors`, or
//! shards `model-0000i-of-0000N.safetensors` with `model.safetensors.index.json` past the
//! size limit. Streamed: each tensor is a [`View`] whose bytes are read from the rank
//! files (the tensor's range of its unit, as `consolidate` reads) only when the
//! serializer writes it, so memory stays near the largest tensor, never the model.
use super::dtype::{encode, to_st};
use super::names::{hf_name, ConfigJson, CONFIG_FILE, INDEX_FILE, SINGLE_FILE};
use super::tokenizer::export_tokenizer;
use crate::checkpoint::Checkpoint;
use crate::config::ModelKind;
use crate::dtype::DType;
use crate::model::unit_specs;
use anyhow::{bail, Context};
use safetensors::{Dtype, View};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The stored dtype (rounded from the fp32 master weights).
    pub dtype: DType,
    /// Largest tensor bytes in one file (transformers' `max_shard_size`); a single
    /// tensor larger than this gets a file of its own.
    pub max_shard_bytes: u64,
    /// The training dataset, for its tokenizer files (`tokenizer.rs`).
    pub data: Option<PathBuf>,
}

/// What [`export_hf`] wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    pub files: Vec<PathBuf>,
    pub tensors: usize,
    pub parameters: usize,
    pub step: u64,
    /// Why no tokenizer was exported from `data`, when it was not.
    pub note: Option<String>,
}

/// One tensor to write: where it lives in the checkpoint.
struct Planned {
    name: String,
    unit: usize,
    /// Unit-local element range.
    range: Range<usize>,
    shape: Vec<usize>,
}

/// The checkpoint every view reads from, and the first read error (a `View` cannot
/// return one; it is reported after the file is written, and the file removed).
struct Source {
    ck: Checkpoint,
    dtype: DType,
    error: Option<anyhow::Error>,
}

/// A tensor whose bytes are read when the serializer asks for them.
struct Lazy<'a> {
    src: &'a RefCell<Source>,
    t: &'a Planned,
    dtype: DType,
}

impl View for Lazy<'_> {
    fn dtype(&self) -> Dtype {
        to_st(self.dtype)
    }
    fn shape(&self) -> &[usize] {
        &self.t.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let mut src = self.src.borrow_mut();
        let s = &mut *src;
        match s.ck.read(self.t.unit, self.t.range.clone(), false) {
            Ok(piece) => Cow::Owned(encode(&piece.master, s.dtype)),
            Err(e) => {
                if s.error.is_none() {
                    s.error =
                        Some(anyhow::Error::new(e).context(format!("tensor {}", self.t.name)));
                }
                Cow::Owned(vec![0; self.data_len()])
            }
        }
    }
    fn data_len(&self) -> usize {
        self.t.range.len() * self.dtype.bytes()
    }
}

/// Writes the checkpoint at `ckpt` into the new or empty directory `out` (see the module
/// doc; the tied LM head is not stored, as `save_pretrained` leaves it out).
pub fn export_hf(ckpt: &Path, out: &Path, opts: &ExportOptions) -> anyhow::Result<Exported> {
    if opts.max_shard_bytes == 0 {
        bail!("--max-shard-size must be above 0");
    }
    let ck = Checkpoint::open(ckpt, true)?;
    let model = ck.meta.model.clone();
    if model.kind != ModelKind::Gpt {
        bail!(
            "{}: holds an MLP; only GPT checkpoints export to Hugging Face (GPT2LMHeadModel)",
            ck.dir.display()
        );
    }
    let specs = unit_specs(&model);
    // The unit table matches the model: Meta::read (Checkpoint::open) checked it.
    prepare_out(out)?;
    // The tokenizer first: a dataset that names gpt2 but lacks its files fails before
    // any weights are written.
    let mut files = Vec::new();
    let mut note = None;
    if let Some(data) = &opts.data {
        match export_tokenizer(data, out, model.ctx)? {
            Ok(f) => files.extend(f),
            Err(why) => note = Some(why),
        }
    }
    let planned: Vec<Planned> = specs
        .iter()
        .enumerate()
        .flat_map(|(u, s)| {
            s.tensors.iter().map(move |t| Planned {
                name: hf_name(&t.name),
                unit: u,
                range: t.offset..t.offset + t.numel(),
                shape: t.shape.clone(),
            })
        })
        .collect();
    let shards = plan_shards(&planned, opts);
    let n = shards.len();
    let step = ck.meta.step;
    let src = RefCell::new(Source {
        ck,
        dtype: opts.dtype,
        error: None,
    });
    let mut weight_map = BTreeMap::new();
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    for (i, shard) in shards.iter().enumerate() {
        let name = match n {
            1 => SINGLE_FILE.to_string(),
            _ => format!("model-{:05}-of-{n:05}.safetensors", i + 1),
        };
        let path = out.join(&name);
        let views = shard.iter().map(|&k| {
            let t = &planned[k];
            let view = Lazy {
                src: &src,
                t,
                dtype: opts.dtype,
            };
            (t.name.clone(), view)
        });
        safetensors::serialize_to_file(views, Some(metadata.clone()), &path)
            .with_context(|| format!("{}: writing", path.display()))?;
        if let Some(e) = src.borrow_mut().error.take() {
            let _ = std::fs::remove_file(&path);
            return Err(e.context(format!("{}: reading the checkpoint", path.display())));
        }
        // The serializer's temporary file is private (0600); a model is for sharing.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("{}: setting permissions", path.display()))?;
        for &k in shard {
            weight_map.insert(planned[k].name.clone(), name.clone());
        }
        files.push(path);
    }
    if n > 1 {
        let total: usize = planned
            .iter()
            .map(|t| t.range.len() * opts.dtype.bytes())
            .sum();
        let index = serde_json::json!({
            "metadata": {"total_size": total},
            "weight_map": weight_map,
        });
        let path = out.join(INDEX_FILE);
        write_json(&path, &index)?;
        files.push(path);
    }
    let path = out.join(CONFIG_FILE);
    write_json(&path, &ConfigJson::of(&model, opts.dtype))?;
    files.push(path);
    Ok(Exported {
        files,
        tensors: planned.len(),
        parameters: planned.iter().map(|t| t.range.len()).sum(),
        step,
        note,
    })
}

/// Creates `out` or accepts it empty: files of an earlier export beside new ones would
/// mix two models (a stale shard or index).
fn prepare_out(out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out)
            .with_context(|| format!("--out {}: cannot read the directory", out.display()))?;
        if entries.next().is_some() {
            bail!(
                "--out {}: the directory is not empty; export into a new or empty directory",
                out.display()
            );
        }
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("--out {}: cannot create the directory", out.display()))
}

/// Tensors (indices into `planned`) per file, in model order: a file is closed when the
/// next tensor would take it past the limit (transformers' rule).
fn plan_shards(planned: &[Planned], opts: &ExportOptions) -> Vec<Vec<usize>> {
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut bytes = 0u64;
    for (k, t) in planned.iter().enumerate() {
        let b = (t.range.len() * opts.dtype.bytes()) as u64;
        let open = shards.last().is_some_and(|s| !s.is_empty());
        if open && bytes + b > opts.max_shard_bytes {
            shards.push(Vec::new());
            bytes = 0;
        }
        bytes += b;
        if let Some(s) = shards.last_mut() {
            s.push(k);
        }
    }
    shards
}

/// Writes `value` as pretty JSON to `path`.
pub(super) fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("{}: cannot write", path.display()))
}
