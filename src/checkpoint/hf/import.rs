//! `model.init = "hf:DIR"`: initial GPT parameters from a Hugging Face GPT-2 directory
//! (`model.safetensors`, or shards listed by `model.safetensors.index.json`; tensors
//! stored as fp32, bf16 or fp16, converted to f32). Every rank memory-maps the files and
//! copies out only the tensors of the unit it is building, so no rank holds the file.
//!
//! [`HfInit::open`] checks everything before training starts (and before any
//! collective): the files parse, `config.json` (when present) describes the config's
//! model, every tensor of the model is there once with the model's shape and a readable
//! dtype, no tensor is left over, and a stored `lm_head.weight` equals `wte.weight`
//! (zerotrain ties them; an untied head cannot be loaded faithfully, so it is an error).
use super::dtype::{decode, from_st};
use super::names::{classify, ConfigJson, Stored, CONFIG_FILE, INDEX_FILE, LM_HEAD, SINGLE_FILE};
use crate::config::{ModelConfig, ModelKind};
use crate::dtype::DType;
use crate::model::{unit_specs, UnitSpec};
use anyhow::{bail, Context};
use memmap2::Mmap;
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The directory `model.init` names, if it names one (`"hf:DIR"`; `""` is seeded init).
pub fn init_dir(init: &str) -> Option<&Path> {
    init.strip_prefix("hf:").map(Path::new)
}

/// One opened safetensors file.
struct StFile {
    path: PathBuf,
    map: Mmap,
    /// Bytes before the data: 8 + the header's length.
    data_start: usize,
    meta: Metadata,
}

impl StFile {
    fn open(path: &Path) -> anyhow::Result<StFile> {
        let f = std::fs::File::open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        // SAFETY: the map is read-only and lives as long as this struct; a file changed
        // by another process while training starts is a user error, as for any input.
        let map = unsafe { Mmap::map(&f) }
            .with_context(|| format!("{}: cannot memory-map", path.display()))?;
        let (n, meta) = SafeTensors::read_metadata(&map)
            .map_err(|e| anyhow::anyhow!("{}: not a safetensors file: {e}", path.display()))?;
        Ok(StFile {
            path: path.to_path_buf(),
            map,
            data_start: 8 + n,
            meta,
        })
    }

    /// The stored bytes of `info` (a tensor of this file).
    fn bytes(&self, info: &TensorInfo) -> &[u8] {
        let (a, b) = info.data_offsets;
        &self.map[self.data_start + a..self.data_start + b]
    }
}

/// Where a tensor is stored.
#[derive(Clone)]
struct Found {
    file: usize,
    stored_name: String,
    info: TensorInfo,
    dtype: DType,
}

/// A checked Hugging Face directory, ready to hand out units.
pub struct HfInit {
    files: Vec<StFile>,
    /// zerotrain tensor name -> where it is stored.
    tensors: HashMap<String, Found>,
    specs: Vec<UnitSpec>,
}

impl HfInit {
    /// Opens and checks `dir` against GPT `model` (see the module doc). Errors name
    /// `hf:DIR`, the file and the tensor.
    pub fn open(dir: &Path, model: &ModelConfig) -> anyhow::Result<HfInit> {
        let tag = format!("model.init = \"hf:{}\"", dir.display());
        if model.kind != ModelKind::Gpt {
            bail!("{tag}: Hugging Face weights initialise GPT models only, model.kind is mlp");
        }
        if !dir.is_dir() {
            bail!("{tag}: no such directory");
        }
        check_config_json(dir, model).with_context(|| tag.clone())?;
        let names = file_names(dir).with_context(|| tag.clone())?;
        let files = names
            .iter()
            .map(|n| StFile::open(&dir.join(n)))
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| tag.clone())?;
        let specs = unit_specs(model);
        let mut tensors: HashMap<String, Found> = HashMap::new();
        let mut lm_head = None;
        for (i, f) in files.iter().enumerate() {
            for stored in f.meta.offset_keys() {
                let Some(info) = f.meta.info(&stored).cloned() else {
                    continue;
                };
                let file_tag = format!("{tag}: {}", f.path.display());
                let dtype = || {
                    from_st(info.dtype).with_context(|| {
                        format!(
                            "{file_tag}: {stored} is stored as {:?}; zerotrain reads F32, BF16 and F16",
                            info.dtype
                        )
                    })
                };
                match classify(&stored) {
                    Stored::Buffer => {}
                    Stored::LmHead => {
                        lm_head = Some(Found {
                            file: i,
                            stored_name: stored.clone(),
                            dtype: dtype()?,
                            info,
                        })
                    }
                    Stored::Param(name) => {
                        let found = Found {
                            file: i,
                            stored_name: stored.clone(),
                            dtype: dtype()?,
                            info,
                        };
                        if let Some(prev) = tensors.insert(name.to_string(), found) {
                            bail!(
                                "{file_tag}: {name} is stored twice (as {} and {stored})",
                                prev.stored_name
                            );
                        }
                    }
                }
            }
        }
        let shape_of = format!(
            "the config's model (n_layer {}, d_model {}, ctx {}, vocab {})",
            model.n_layer, model.d_model, model.ctx, model.vocab
        );
        for t in specs.iter().flat_map(|s| &s.tensors) {
            let Some(f) = tensors.get(&t.name) else {
                bail!("{tag}: {} is missing; {shape_of} needs it", t.name);
            };
            if f.info.shape != t.shape {
                bail!(
                    "{tag}: {}: {} has shape {:?}, {shape_of} needs {:?}",
                    files[f.file].path.display(),
                    t.name,
                    f.info.shape,
                    t.shape
                );
            }
        }
        let known: usize = specs.iter().map(|s| s.tensors.len()).sum();
        if tensors.len() != known {
            let mut extra: Vec<&String> = tensors
                .keys()
                .filter(|n| !specs.iter().any(|s| s.tensor(n).is_some()))
                .collect();
            extra.sort();
            bail!(
                "{tag}: holds tensors {shape_of} does not have: {}",
                extra
                    .iter()
                    .take(5)
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let init = HfInit {
            files,
            tensors,
            specs,
        };
        if let Some(head) = lm_head {
            init.check_tied(&head).with_context(|| tag.clone())?;
        }
        Ok(init)
    }

    /// The stored values of tensor `name` (checked present with its shape) as f32.
    fn read(&self, name: &str, out: &mut [f32]) -> anyhow::Result<()> {
        let f = self
            .tensors
            .get(name)
            .with_context(|| format!("internal error: {name} not found after the check"))?;
        decode(self.files[f.file].bytes(&f.info), f.dtype, out);
        Ok(())
    }

    /// A stored LM head must be the token embedding (GPT2LMHeadModel ties them).
    fn check_tied(&self, head: &Found) -> anyhow::Result<()> {
        let wte = self
            .specs
            .first()
            .and_then(|s| s.tensor("wte.weight"))
            .context("internal error: no wte.weight")?;
        let path = self.files[head.file].path.display();
        if head.info.shape != wte.shape {
            bail!(
                "{path}: {LM_HEAD} has shape {:?}, wte.weight {:?}: zerotrain ties them",
                head.info.shape,
                wte.shape
            );
        }
        let mut a = vec![0.0f32; wte.numel()];
        let mut b = vec![0.0f32; wte.numel()];
        self.read("wte.weight", &mut a)?;
        decode(self.files[head.file].bytes(&head.info), head.dtype, &mut b);
        if a != b {
            bail!("{path}: {LM_HEAD} differs from wte.weight; zerotrain's LM head is tied to the token embedding, so an untied head cannot be loaded");
        }
        Ok(())
    }

    /// Unit `u`'s parameters in canonical order (`units[u].numel` f32).
    pub fn unit(&self, u: usize) -> anyhow::Result<Vec<f32>> {
        let spec = self
            .specs
            .get(u)
            .with_context(|| format!("internal error: no unit {u}"))?;
        let mut v = vec![0.0f32; spec.numel];
        for t in &spec.tensors {
            self.read(&t.name, &mut v[t.offset..t.offset + t.numel()])?;
        }
        Ok(v)
    }
}

/// The safetensors files of `dir`: those the index lists, else `model.safetensors`.
fn file_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        let text = std::fs::read_to_string(&index)
            .with_context(|| format!("{}: cannot read", index.display()))?;
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: BTreeMap<String, String>,
        }
        let ix: Index = serde_json::from_str(&text)
            .with_context(|| format!("{}: not an index (weight_map)", index.display()))?;
        let mut names: Vec<String> = ix.weight_map.into_values().collect();
        names.sort();
        names.dedup();
        if let Some(bad) = names.iter().find(|n| n.contains('/') || n.contains("..")) {
            bail!(
                "{}: names a file outside the directory: {bad}",
                index.display()
            );
        }
        return Ok(names);
    }
    if dir.join(SINGLE_FILE).is_file() {
        return Ok(vec![SINGLE_FILE.to_string()]);
    }
    bail!("holds neither {SINGLE_FILE} nor {INDEX_FILE}")
}

/// `config.json`, when present, must describe the config's model.
fn check_config_json(dir: &Path, model: &ModelConfig) -> anyhow::Result<()> {
    let path = dir.join(CONFIG_FILE);
    if !path.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let c: ConfigJson = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a GPT-2 config", path.display()))?;
    if c.model_type != "gpt2" {
        bail!(
            "{}: model_type is {:?}, not \"gpt2\"",
            path.display(),
            c.model_type
        );
    }
    if let Some(why) = c.mismatch(model) {
        bail!("{}: {why}", path.display());
    }
    Ok(())
}
