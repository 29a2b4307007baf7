//! Per-step phase times: milliseconds spent in compute, the optimizer, communication in
//! flight, communication waited on, and waiting for data (measured by the engine and
//! the training loop).
use serde::{Deserialize, Serialize};

/// Milliseconds per phase in one step; serialises flat into the step record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseTimes {
    pub compute_ms: f64,
    pub optimizer_ms: f64,
    pub comm_ms: f64,
    pub comm_exposed_ms: f64,
    pub data_wait_ms: f64,
}

impl PhaseTimes {
    /// The five values in declaration order (for a max/sum all-reduce).
    pub fn to_array(&self) -> [f64; 5] {
        [
            self.compute_ms,
            self.optimizer_ms,
            self.comm_ms,
            self.comm_exposed_ms,
            self.data_wait_ms,
        ]
    }

    /// Inverse of [`PhaseTimes::to_array`].
    pub fn from_array(a: [f64; 5]) -> Self {
        PhaseTimes {
            compute_ms: a[0],
            optimizer_ms: a[1],
            comm_ms: a[2],
            comm_exposed_ms: a[3],
            data_wait_ms: a[4],
        }
    }
}
