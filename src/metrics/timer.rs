//! Per-step phase timers: milliseconds spent in compute, the optimizer, communication in
//! flight, communication waited on, and waiting for data, accumulated over one step.
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// What a stretch of time was spent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Forward and backward kernels.
    Compute,
    /// The optimizer update (and clipping, unscaling).
    Optimizer,
    /// Collectives in flight (launch to completion), overlapped or not.
    Comm,
    /// Time the step was blocked waiting for a collective.
    CommExposed,
    /// Time the step waited for the data loader.
    DataWait,
}

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
    fn slot(&mut self, p: Phase) -> &mut f64 {
        match p {
            Phase::Compute => &mut self.compute_ms,
            Phase::Optimizer => &mut self.optimizer_ms,
            Phase::Comm => &mut self.comm_ms,
            Phase::CommExposed => &mut self.comm_exposed_ms,
            Phase::DataWait => &mut self.data_wait_ms,
        }
    }

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

/// Accumulates [`PhaseTimes`] over one step, plus the step's wall time.
///
/// Communication in flight is the union of the intervals during which at least one
/// collective is outstanding: call [`StepTimer::comm_begin`] when a collective is
/// launched and [`StepTimer::comm_end`] when it completes; overlapping collectives are
/// counted once.
#[derive(Debug, Clone)]
pub struct StepTimer {
    step_start: Instant,
    times: PhaseTimes,
    in_flight: usize,
    in_flight_since: Instant,
}

impl Default for StepTimer {
    fn default() -> Self {
        Self::new()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl StepTimer {
    /// A timer whose first step starts now.
    pub fn new() -> Self {
        let now = Instant::now();
        StepTimer {
            step_start: now,
            times: PhaseTimes::default(),
            in_flight: 0,
            in_flight_since: now,
        }
    }

    /// Starts a new step: zeroes the accumulators and restarts the step clock.
    /// Collectives still in flight carry over, counted from now.
    pub fn start_step(&mut self) {
        let now = Instant::now();
        self.step_start = now;
        self.times = PhaseTimes::default();
        self.in_flight_since = now;
    }

    /// Adds a measured duration to a phase.
    pub fn add(&mut self, phase: Phase, d: Duration) {
        *self.times.slot(phase) += ms(d);
    }

    /// Adds the time since `since` to a phase (`let t = Instant::now(); …; add_since(p, t)`).
    pub fn add_since(&mut self, phase: Phase, since: Instant) {
        self.add(phase, since.elapsed());
    }

    /// Runs `f` and adds its duration to `phase`.
    pub fn time<R>(&mut self, phase: Phase, f: impl FnOnce() -> R) -> R {
        let t = Instant::now();
        let r = f();
        self.add_since(phase, t);
        r
    }

    /// A collective was launched.
    pub fn comm_begin(&mut self) {
        if self.in_flight == 0 {
            self.in_flight_since = Instant::now();
        }
        self.in_flight += 1;
    }

    /// A collective completed. Unmatched calls are ignored.
    pub fn comm_end(&mut self) {
        if self.in_flight == 0 {
            return;
        }
        self.in_flight -= 1;
        if self.in_flight == 0 {
            self.times.comm_ms += ms(self.in_flight_since.elapsed());
        }
    }

    /// Collectives currently in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The accumulated phase times of this step so far (including the open in-flight
    /// interval, if any).
    pub fn times(&self) -> PhaseTimes {
        let mut t = self.times;
        if self.in_flight > 0 {
            t.comm_ms += ms(self.in_flight_since.elapsed());
        }
        t
    }

    /// Milliseconds since [`StepTimer::start_step`].
    pub fn step_ms(&self) -> f64 {
        ms(self.step_start.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_accumulate_and_reset() {
        let mut t = StepTimer::new();
        t.add(Phase::Compute, Duration::from_millis(3));
        t.add(Phase::Compute, Duration::from_millis(2));
        t.add(Phase::CommExposed, Duration::from_micros(1500));
        assert_eq!(t.times().compute_ms, 5.0);
        assert_eq!(t.times().comm_exposed_ms, 1.5);
        let v = t.time(Phase::Optimizer, || 7);
        assert_eq!(v, 7);
        assert!(t.times().optimizer_ms >= 0.0);
        t.start_step();
        assert_eq!(t.times(), PhaseTimes::default());
    }

    #[test]
    fn overlapping_collectives_count_once() {
        let mut t = StepTimer::new();
        t.comm_begin();
        t.comm_begin();
        std::thread::sleep(Duration::from_millis(20));
        t.comm_end();
        assert_eq!(t.in_flight(), 1);
        std::thread::sleep(Duration::from_millis(20));
        t.comm_end();
        t.comm_end(); // unmatched: ignored
        let c = t.times().comm_ms;
        // Two collectives overlapped for ~40 ms of wall time: the union is ~40 ms, not
        // the ~60 ms sum; sleep overshoot is bounded loosely (a loaded 2-core machine).
        assert!((40.0..58.0).contains(&c), "comm_ms {c}");
    }

    #[test]
    fn array_round_trip() {
        let p = PhaseTimes {
            compute_ms: 1.0,
            optimizer_ms: 2.0,
            comm_ms: 3.0,
            comm_exposed_ms: 4.0,
            data_wait_ms: 5.0,
        };
        assert_eq!(PhaseTimes::from_array(p.to_array()), p);
    }
}
