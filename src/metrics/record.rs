//! One line of the metrics JSONL file.
use super::{CommCounter, MemCounter, NodeBytes, PhaseTimes};
use serde::{Deserialize, Deserializer, Serialize};

/// Metrics of one logged optimizer step, as rank 0 writes it (memory and times are the
/// maximum over ranks). Optional values are omitted when absent. JSON has no NaN or
/// infinity: such values (a diverged loss, an fp16 overflow's norm) are written as
/// `null` and read back as NaN.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Optimizer step, 1-based (the number of updates done, counting skipped ones).
    pub step: u64,
    /// Mean training loss over the step's global batch.
    #[serde(deserialize_with = "null_as_nan")]
    pub loss: f64,
    pub lr: f64,
    /// Global gradient norm before clipping.
    #[serde(deserialize_with = "null_as_nan")]
    pub grad_norm: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_per_s: Option<f64>,
    pub step_ms: f64,
    /// Mean validation loss, on evaluation steps only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// Classification runs, on evaluation steps: the fraction of the held-out rows (all
    /// eval batches, all ranks) whose argmax class is their label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_acc: Option<f64>,
    /// The fp16 loss scale used this step (1 without fp16).
    #[serde(deserialize_with = "null_as_nan")]
    pub loss_scale: f64,
    /// compute_ms, optimizer_ms, comm_ms, comm_exposed_ms, data_wait_ms.
    #[serde(flatten)]
    pub times: PhaseTimes,
    /// Maximum over ranks of each memory category.
    pub mem: MemCounter,
    /// Each rank's memory, index = rank (optional; the report plots it when present).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mem_ranks: Vec<MemCounter>,
    /// Elements contributed per collective kind this step.
    pub comm: CommCounter,
    /// Bytes all ranks together sent this step to a rank on their own node and to one on
    /// another node, had every collective run as a ring (docs/architecture.md, "Hybrid
    /// sharding"); what `zerotrain estimate --nodes` predicts.
    #[serde(default)]
    pub comm_bytes: NodeBytes,
    /// The step was skipped (fp16 overflow on some rank).
    pub skipped: bool,
    /// Bytes copied host -> device and device -> host this step (maximum over ranks):
    /// the batch and the logged scalars, plus the collectives' volume when staged.
    #[serde(default)]
    pub h2d_bytes: u64,
    #[serde(default)]
    pub d2h_bytes: u64,
    /// Rank 0's time at this step's end spent on checkpoints, outside `step_ms`: a
    /// foreground save, or an asynchronous save's start (the copy to host memory) and
    /// its progress check and commit; absent when no save was due or in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_ms: Option<f64>,
}

fn null_as_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}
