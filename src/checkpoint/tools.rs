//! Single-process tools on a checkpoint: inspect, verify, consolidate, and loading the
//! full parameters (for sampling). None needs MPI or the world size that wrote it.
use super::error::{CkptError, Result};
use super::rank_file::MASTER;
use super::reader::Checkpoint;
use crate::config::ModelConfig;
use crate::model::unit_specs;
use std::fmt::Write;
use std::path::Path;

/// A human-readable summary: step, world, stage, dtypes, units with sizes, files.
pub fn inspect(path: &Path) -> Result<String> {
    let ck = Checkpoint::open(path, false)?;
    let m = &ck.meta;
    let mut s = String::new();
    let mib = |b: f64| b / 1048576.0;
    let _ = writeln!(s, "checkpoint  {}", ck.dir.display());
    let _ = writeln!(
        s,
        "step        {} ({} optimizer updates)",
        m.step, m.optimizer_steps
    );
    let _ = writeln!(s, "world       {} ranks, zero stage {}", m.world, m.stage);
    let _ = writeln!(
        s,
        "dtype       {} (reduce {}), master weights and states fp32",
        m.dtype.name(),
        m.reduce_dtype.name()
    );
    let _ = writeln!(
        s,
        "optimizer   {:?} (states: {})",
        m.optimizer,
        m.state_names.join(", ")
    );
    let _ = writeln!(
        s,
        "model       {:?}, {} parameters in {} units",
        m.model.kind,
        m.numel(),
        m.units.len()
    );
    let _ = writeln!(
        s,
        "data        {} global micro-batches done (epoch {}, cursor {})",
        m.loader.batches, m.loader.epoch, m.loader.cursor
    );
    let _ = writeln!(s, "config      crc32 {}", m.config_crc32);
    let _ = writeln!(s, "units:");
    for (u, e) in m.units.iter().enumerate() {
        let _ = writeln!(
            s,
            "  {u:>4} {:<24} {:>12} elements  padded {:>12}  shard {:>10}",
            e.name,
            e.numel,
            e.padded,
            e.padded / m.world
        );
        // meta.json's tensor list (absent in older checkpoints): where each named tensor
        // starts in the unit's canonical flat buffer.
        for t in e.tensors.iter().flatten() {
            let _ = writeln!(
                s,
                "         {:<32} {:>12} at {:>10}  shape {:?}",
                t.name,
                t.shape.iter().product::<usize>(),
                t.offset,
                t.shape
            );
        }
    }
    let _ = writeln!(s, "files:");
    let mut total = 0u64;
    for f in &m.files {
        total += f.bytes;
        let _ = writeln!(
            s,
            "  {}  {:>10.2} MiB  crc32 {}",
            f.name,
            mib(f.bytes as f64),
            f.crc32
        );
    }
    let _ = writeln!(s, "total       {:.2} MiB", mib(total as f64));
    Ok(s)
}

/// Checks every rank file: present, checksum and size as in `meta.json`, each unit's
/// range and dataset shapes as the unit table implies. Returns the files checked.
pub fn verify(path: &Path) -> Result<usize> {
    let mut ck = Checkpoint::open(path, true)?;
    let mut datasets = vec![MASTER.to_string()];
    datasets.extend(ck.meta.state_names.iter().cloned());
    let ds: Vec<&str> = datasets.iter().map(|s| s.as_str()).collect();
    for r in 0..ck.meta.world {
        let layouts: Vec<_> = (0..ck.meta.units.len())
            .map(|u| ck.meta.unit_layout(u))
            .collect();
        let f = ck.rank_file(r)?;
        for l in &layouts {
            f.check_unit(&l.name, l.valid_range(r), &ds)?;
        }
    }
    Ok(ck.meta.world)
}

/// Sizes of what [`consolidate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consolidated {
    pub tensors: usize,
    pub elements: usize,
}

/// Writes one fp32 dataset per named parameter tensor (e.g. `h.0.attn.c_attn.w`, with
/// its shape) to `out`, plus the step as a root attribute. Streams tensor by tensor, so
/// memory stays near the largest tensor, never the whole model.
pub fn consolidate(path: &Path, out: &Path) -> Result<Consolidated> {
    let mut ck = Checkpoint::open(path, true)?;
    let specs = unit_specs(&ck.meta.model);
    // The unit table matches the model: Meta::read (Checkpoint::open) checked it.
    crate::data::h5file::quiet_hdf5();
    let f = hdf5::File::create(out).map_err(|e| CkptError::hdf5(out, "create", e))?;
    f.new_attr::<u64>()
        .create("step")
        .and_then(|a| a.write_scalar(&ck.meta.step))
        .map_err(|e| CkptError::hdf5(out, "attribute step", e))?;
    let mut done = Consolidated {
        tensors: 0,
        elements: 0,
    };
    for (u, spec) in specs.iter().enumerate() {
        for t in &spec.tensors {
            let piece = ck.read(u, t.offset..t.offset + t.numel(), false)?;
            let ds = f
                .new_dataset::<f32>()
                .shape(t.shape.clone())
                .create(t.name.as_str())
                .and_then(|d| d.write_raw(&piece.master[..]))
                .map_err(|e| CkptError::hdf5(out, &format!("dataset {}", t.name), e));
            ds?;
            done.tensors += 1;
            done.elements += t.numel();
        }
    }
    f.close().map_err(|e| CkptError::hdf5(out, "close", e))?;
    Ok(done)
}

/// The model config and the canonical fp32 parameters of every unit (in model order)
/// of the checkpoint at `path`, whatever world size and stage wrote it.
pub fn load_full_params(path: &Path) -> Result<(ModelConfig, Vec<Vec<f32>>)> {
    let mut ck = Checkpoint::open(path, true)?;
    let specs = unit_specs(&ck.meta.model);
    let units = (0..specs.len())
        .map(|u| ck.read(u, 0..specs[u].numel, false).map(|p| p.master))
        .collect::<Result<Vec<_>>>()?;
    Ok((ck.meta.model.clone(), units))
}
