//! Validation of a `meta.json` as read: every field must hold a value some writer could
//! have produced, consistent with the other fields, with the step directory's name and
//! with the rank files beside it. A user's edit (`"stage": 7`, a false `"step"`) is an
//! error naming the file and the key, before anything is loaded.
use super::error::{CkptError, Result};
use super::meta::{Meta, TensorEntry, FORMAT};
use super::paths::{parse_rank_file, parse_step_dir, rank_file_name};
use crate::checksum::is_hex8;
use crate::config::{ConfigError, DType, ModelConfig, ModelKind, Sampling, TrainConfig};
use crate::model::unit_specs;
use crate::optim::UpdateRule;
use crate::zero::Layout;
use std::path::Path;

/// Largest model dimension a checkpoint may name (2^24): keeps the unit table's sizes
/// far from overflow whatever an edited `model` says.
const MAX_DIM: usize = 1 << 24;

/// Checks `meta`, read from `path` inside the step directory `dir`.
pub fn check(meta: &Meta, dir: &Path, path: &Path) -> Result<()> {
    let bad = |key: &str, msg: String| {
        Err(CkptError::MetaKey {
            path: path.to_path_buf(),
            key: key.to_string(),
            msg,
        })
    };
    if meta.format != FORMAT {
        return bad(
            "format",
            format!(
                "{} is not supported (this build reads {FORMAT})",
                meta.format
            ),
        );
    }
    if meta.world == 0 {
        return bad("world", "must be at least 1".into());
    }
    if meta.stage > 3 {
        return bad(
            "stage",
            format!("{} is not a ZeRO stage (0, 1, 2 or 3)", meta.stage),
        );
    }
    let dir_name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if let Some(step) = parse_step_dir(dir_name) {
        if step != meta.step {
            return bad(
                "step",
                format!("{}, but the directory is {dir_name}", meta.step),
            );
        }
    }
    if meta.optimizer_steps > meta.step {
        return bad(
            "optimizer_steps",
            format!(
                "{} optimizer updates in {} steps",
                meta.optimizer_steps, meta.step
            ),
        );
    }
    check_files(meta, dir, &bad)?;
    if !is_hex8(&meta.config_crc32) {
        return bad(
            "config_crc32",
            format!("{:?} is not 8 hex digits", meta.config_crc32),
        );
    }
    let allowed = state_names(meta);
    if !allowed.contains(&meta.state_names) {
        return bad(
            "state_names",
            format!(
                "{:?} are not the states of optimizer {:?} (one of {allowed:?})",
                meta.state_names, meta.optimizer
            ),
        );
    }
    if let Err((field, msg)) = meta.scaler.check() {
        return bad(&format!("scaler.{field}"), msg);
    }
    if meta.scaler.is_enabled() != (meta.dtype == DType::Fp16) {
        return bad(
            "scaler.enabled",
            format!(
                "{} with dtype {} (the scaler is dynamic exactly for fp16)",
                meta.scaler.is_enabled(),
                meta.dtype.name()
            ),
        );
    }
    let l = &meta.loader;
    if l.sampling == Sampling::Random && (l.epoch != 0 || l.cursor != 0) {
        return bad(
            "loader",
            format!(
                "epoch {} and cursor {} with random sampling (both are 0 there)",
                l.epoch, l.cursor
            ),
        );
    }
    if l.batches < meta.step {
        return bad(
            "loader.batches",
            format!(
                "{} global micro-batches for {} steps (each step reads at least one)",
                l.batches, meta.step
            ),
        );
    }
    check_model(&meta.model, path, meta.units.len())?;
    check_units(meta, &bad)
}

/// `files` lists `rank-00000.h5 ...` for ranks 0..world, and the directory holds no rank
/// file of a rank beyond them.
fn check_files(meta: &Meta, dir: &Path, bad: &impl Fn(&str, String) -> Result<()>) -> Result<()> {
    if meta.files.len() != meta.world {
        return bad(
            "files",
            format!(
                "{} rank files listed, but world is {}",
                meta.files.len(),
                meta.world
            ),
        );
    }
    for (r, f) in meta.files.iter().enumerate() {
        let want = rank_file_name(r);
        if f.name != want {
            return bad(
                &format!("files[{r}].name"),
                format!("{:?}, rank {r}'s file is {want}", f.name),
            );
        }
        if !is_hex8(&f.crc32) {
            return bad(
                &format!("files[{r}].crc32"),
                format!("{:?} is not 8 hex digits", f.crc32),
            );
        }
        if f.bytes == 0 {
            return bad(
                &format!("files[{r}].bytes"),
                "0: no HDF5 file is empty".into(),
            );
        }
    }
    let entries = std::fs::read_dir(dir).map_err(|e| CkptError::io(dir, e))?;
    for e in entries {
        let name = e.map_err(|e| CkptError::io(dir, e))?.file_name();
        let name = name.to_string_lossy();
        if let Some(r) = parse_rank_file(&name) {
            if r >= meta.world {
                return bad(
                    "world",
                    format!(
                        "{}, but the directory also holds {name} (rank {r})",
                        meta.world
                    ),
                );
            }
        }
    }
    Ok(())
}

/// The state-name lists the optimizer kind can have (SGD keeps momentum or nothing).
fn state_names(meta: &Meta) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    for momentum in [0.0, 0.9] {
        let train = TrainConfig {
            optimizer: meta.optimizer,
            momentum,
            ..TrainConfig::default()
        };
        let names: Vec<String> = UpdateRule::from_config(&train)
            .state_names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        if !out.contains(&names) {
            out.push(names);
        }
    }
    out
}

/// The `model` section: the config's own checks, sizes bounded, and no more layers than
/// the unit table could hold (so building its unit table stays cheap).
fn check_model(m: &ModelConfig, path: &Path, units: usize) -> Result<()> {
    let key_err = |key: &str, msg: String| CkptError::MetaKey {
        path: path.to_path_buf(),
        key: key.to_string(),
        msg,
    };
    m.check(&path.display().to_string()).map_err(|e| match e {
        ConfigError::Invalid { key, msg, .. } => key_err(&key, msg),
        other => key_err("model", other.to_string()),
    })?;
    let dims: Vec<(&str, usize)> = match m.kind {
        ModelKind::Gpt => vec![
            ("model.n_layer", m.n_layer),
            ("model.n_head", m.n_head),
            ("model.d_model", m.d_model),
            ("model.ctx", m.ctx),
            ("model.vocab", m.vocab),
        ],
        ModelKind::Mlp => std::iter::once(("model.inputs", m.inputs))
            .chain(std::iter::once(("model.classes", m.classes)))
            .chain(m.hidden.iter().map(|&h| ("model.hidden", h)))
            .collect(),
    };
    for (key, v) in dims {
        if v > MAX_DIM {
            return Err(key_err(key, format!("{v} is beyond {MAX_DIM}")));
        }
    }
    let (key, layers) = match m.kind {
        ModelKind::Gpt => ("model.n_layer", m.n_layer),
        ModelKind::Mlp => ("model.hidden", m.hidden.len()),
    };
    if layers > units {
        return Err(key_err(
            key,
            format!("{layers} layers, but the unit table has {units} units"),
        ));
    }
    Ok(())
}

/// `units` is the unit table of `model` (names, sizes) padded as the layout pads at `world`.
fn check_units(meta: &Meta, bad: &impl Fn(&str, String) -> Result<()>) -> Result<()> {
    let specs = unit_specs(&meta.model);
    if specs.len() != meta.units.len() {
        return bad(
            "units",
            format!(
                "{} units, but the model section describes {}",
                meta.units.len(),
                specs.len()
            ),
        );
    }
    let layout = Layout::new(&specs, meta.world);
    for (u, ((e, l), spec)) in meta.units.iter().zip(&layout.units).zip(&specs).enumerate() {
        if e.name != l.name {
            return bad(
                &format!("units[{u}].name"),
                format!("{:?}, the model's unit {u} is {:?}", e.name, l.name),
            );
        }
        if e.numel != l.numel {
            return bad(
                &format!("units[{u}].numel"),
                format!(
                    "{}, the model's unit {} has {} elements",
                    e.numel, l.name, l.numel
                ),
            );
        }
        if e.padded != l.padded {
            return bad(
                &format!("units[{u}].padded"),
                format!(
                    "{}, unit {} of {} elements pads to {} at {} ranks",
                    e.padded, l.name, l.numel, l.padded, meta.world
                ),
            );
        }
        if let Some(listed) = &e.tensors {
            let want = TensorEntry::of(spec);
            if *listed != want {
                let show = |t: Option<&TensorEntry>| {
                    t.map_or("nothing".to_string(), |t| {
                        format!("{} (shape {:?}, offset {})", t.name, t.shape, t.offset)
                    })
                };
                // The first tensor that differs (or the one missing or extra).
                let i = (0..listed.len().max(want.len()))
                    .find(|&i| listed.get(i) != want.get(i))
                    .unwrap_or(0);
                return bad(
                    &format!("units[{u}].tensors"),
                    format!(
                        "tensor {i} is {}, the model's unit {} has {}",
                        show(listed.get(i)),
                        l.name,
                        show(want.get(i))
                    ),
                );
            }
        }
    }
    Ok(())
}
