//! Collectives on `Store`s, timed and counted: every element this rank contributes is
//! added to the step's volume, time in flight to `comm_ms` and time spent waiting to
//! `exposed_ms`.
use crate::device::Store;
use crate::dist::{Group, Pending, ReduceOp, ScalarOp};
use crate::metrics::{CommCounter, CommKind};
use half::{bf16, f16};
use serde::Serialize;
use std::time::Instant;

/// One step's communication: elements per collective kind (padded) and time.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct CommStats {
    /// Elements per kind; `total` is the logical volume as the ZeRO paper counts it (an
    /// all-reduce counts twice: a reduce-scatter plus an all-gather).
    pub counter: CommCounter,
    /// Time at least one collective was in flight (overlapping ones counted once).
    #[serde(skip)]
    pub comm_ms: f64,
    /// Time the step waited on collectives.
    #[serde(skip)]
    pub exposed_ms: f64,
    /// In-flight intervals of this step's collectives, merged into `comm_ms` by `finish`.
    #[serde(skip)]
    intervals: Vec<(Instant, Instant)>,
}

/// A copy of the counters and times; the in-flight intervals are per-step scratch of the
/// engine and are not copied (so reporting a step allocates nothing).
impl Clone for CommStats {
    fn clone(&self) -> Self {
        CommStats {
            counter: self.counter,
            comm_ms: self.comm_ms,
            exposed_ms: self.exposed_ms,
            intervals: Vec::new(),
        }
    }
}

impl CommStats {
    /// Starts a new step, keeping the interval buffer's capacity (no allocation).
    pub fn reset(&mut self) {
        let mut intervals = std::mem::take(&mut self.intervals);
        intervals.clear();
        *self = CommStats {
            intervals,
            ..CommStats::default()
        };
    }

    /// Merges the step's in-flight intervals into `comm_ms`.
    pub fn finish(&mut self) {
        self.intervals.sort_unstable_by_key(|i| i.0);
        let mut total = 0.0;
        let mut current: Option<(Instant, Instant)> = None;
        for &(s, e) in &self.intervals {
            current = match current {
                Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
                Some((cs, ce)) => {
                    total += (ce - cs).as_secs_f64();
                    Some((s, e))
                }
                None => Some((s, e)),
            };
        }
        if let Some((cs, ce)) = current {
            total += (ce - cs).as_secs_f64();
        }
        self.comm_ms = total * 1e3;
    }

    fn add_allreduce(&mut self, n: usize) {
        self.counter.add(CommKind::Allreduce, n);
        self.counter.total += n as u64; // its all-gather half
    }
    fn add_reduce_scatter(&mut self, n: usize) {
        self.counter.add(CommKind::ReduceScatter, n);
    }
    fn add_allgather(&mut self, n: usize) {
        self.counter.add(CommKind::Allgather, n);
    }
    /// Time of a blocking collective: all of it was in flight and all of it exposed.
    fn blocking(&mut self, since: Instant) {
        let now = Instant::now();
        self.exposed_ms += (now - since).as_secs_f64() * 1e3;
        self.intervals.push((since, now));
    }
}

enum Typed {
    F32(Pending<f32>),
    Bf16(Pending<bf16>),
    F16(Pending<f16>),
}

/// A non-blocking collective on owned `Store`s.
pub struct InFlight {
    op: Typed,
    started: Instant,
    done: Option<Instant>,
}

impl InFlight {
    fn new(op: Typed) -> InFlight {
        InFlight {
            op,
            started: Instant::now(),
            done: None,
        }
    }
    /// Drives MPI progress; true once complete.
    pub fn test(&mut self) -> bool {
        if self.done.is_some() {
            return true;
        }
        let finished = match &mut self.op {
            Typed::F32(p) => p.test(),
            Typed::Bf16(p) => p.test(),
            Typed::F16(p) => p.test(),
        };
        if finished {
            self.done = Some(Instant::now());
        }
        finished
    }
    /// Waits; returns (result, the other buffer) and adds to the step's times.
    pub fn wait(self, stats: &mut CommStats) -> anyhow::Result<(Store, Store)> {
        let waited = Instant::now();
        let (a, b) = match self.op {
            Typed::F32(p) => {
                let (a, b) = p.wait();
                (Store::F32(a), Store::F32(b))
            }
            Typed::Bf16(p) => {
                let (a, b) = p.wait();
                (Store::Bf16(a), Store::Bf16(b))
            }
            Typed::F16(p) => {
                let (a, b) = p.wait();
                (Store::F16(a), Store::F16(b))
            }
        };
        let now = Instant::now();
        let done = self.done.unwrap_or(now);
        stats.intervals.push((self.started, done));
        if self.done.is_none() {
            stats.exposed_ms += (now - waited).as_secs_f64() * 1e3;
        }
        Ok((a, b))
    }
}

fn dtype_mismatch() -> anyhow::Error {
    anyhow::anyhow!("internal error: collective buffers of different dtypes")
}

/// Starts a sum all-reduce of `buf`.
pub fn iall_reduce(group: &Group, buf: Store, stats: &mut CommStats) -> anyhow::Result<InFlight> {
    stats.add_allreduce(buf.len());
    let op = match buf {
        Store::F32(v) => Typed::F32(group.iall_reduce(v, ReduceOp::Sum)?),
        Store::Bf16(v) => Typed::Bf16(group.iall_reduce(v, ReduceOp::Sum)?),
        Store::F16(v) => Typed::F16(group.iall_reduce(v, ReduceOp::Sum)?),
    };
    Ok(InFlight::new(op))
}

/// Starts a sum reduce-scatter of `send` (one equal block per rank of the group) into `recv`.
pub fn ireduce_scatter(
    group: &Group,
    send: Store,
    recv: Store,
    stats: &mut CommStats,
) -> anyhow::Result<InFlight> {
    stats.add_reduce_scatter(send.len());
    let op = match (send, recv) {
        (Store::F32(s), Store::F32(r)) => Typed::F32(group.ireduce_scatter(s, r, ReduceOp::Sum)?),
        (Store::Bf16(s), Store::Bf16(r)) => {
            Typed::Bf16(group.ireduce_scatter(s, r, ReduceOp::Sum)?)
        }
        (Store::F16(s), Store::F16(r)) => Typed::F16(group.ireduce_scatter(s, r, ReduceOp::Sum)?),
        _ => return Err(dtype_mismatch()),
    };
    Ok(InFlight::new(op))
}

/// Starts an all-gather of `send` (this rank's block) into `recv` (a block per rank).
pub fn iall_gather(
    group: &Group,
    send: Store,
    recv: Store,
    stats: &mut CommStats,
) -> anyhow::Result<InFlight> {
    stats.add_allgather(recv.len());
    let op = match (send, recv) {
        (Store::F32(s), Store::F32(r)) => Typed::F32(group.iall_gather(s, r)?),
        (Store::Bf16(s), Store::Bf16(r)) => Typed::Bf16(group.iall_gather(s, r)?),
        (Store::F16(s), Store::F16(r)) => Typed::F16(group.iall_gather(s, r)?),
        _ => return Err(dtype_mismatch()),
    };
    Ok(InFlight::new(op))
}

/// Blocking all-gather of `send` into `recv`.
pub fn all_gather(
    group: &Group,
    send: &Store,
    recv: &mut Store,
    stats: &mut CommStats,
) -> anyhow::Result<()> {
    let t = Instant::now();
    stats.add_allgather(recv.len());
    match (send, recv) {
        (Store::F32(s), Store::F32(r)) => group.all_gather(s, r)?,
        (Store::Bf16(s), Store::Bf16(r)) => group.all_gather(s, r)?,
        (Store::F16(s), Store::F16(r)) => group.all_gather(s, r)?,
        _ => return Err(dtype_mismatch()),
    }
    stats.blocking(t);
    Ok(())
}

/// Blocking all-gather of f32 data straight into a host slice (zero-copy on CPU).
pub fn all_gather_f32(
    group: &Group,
    send: &[f32],
    recv: &mut [f32],
    stats: &mut CommStats,
) -> anyhow::Result<()> {
    let t = Instant::now();
    stats.add_allgather(recv.len());
    group.all_gather(send, recv)?;
    stats.blocking(t);
    Ok(())
}

/// Blocking element-wise sum of a few scalars over the group, in one collective (loss,
/// grad-norm partials).
pub fn sum_scalars<const N: usize>(group: &Group, x: [f64; N], stats: &mut CommStats) -> [f64; N] {
    let t = Instant::now();
    let s = group.all_reduce_f64s(x, ScalarOp::Sum);
    stats.blocking(t);
    s
}
