//! Memory accounting: bytes this rank holds of parameters, gradients and optimizer state
//! (counted where the engine allocates them), the peaks of transient buffers, and the
//! process's peak resident set size.
use serde::{Deserialize, Serialize};

/// A transient buffer kind whose peak is tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transient {
    /// Stage 3: gathered (unsharded) unit parameters.
    Gathered,
    /// Stages 2/3: unsharded gradient buckets awaiting reduce-scatter.
    Bucket,
}

/// Bytes by category; serialises as the record's `mem` object
/// `{params, grads, optimizer, gathered_peak, bucket_peak, peak_rss}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemCounter {
    pub params: u64,
    pub grads: u64,
    pub optimizer: u64,
    pub gathered_peak: u64,
    pub bucket_peak: u64,
    /// Peak resident set size of the process (VmHWM), 0 where unknown.
    #[serde(default)]
    pub peak_rss: u64,
    #[serde(skip)]
    gathered_now: u64,
    #[serde(skip)]
    bucket_now: u64,
}

impl MemCounter {
    /// A transient buffer of `bytes` now exists; raises its peak if needed.
    pub fn transient_alloc(&mut self, t: Transient, bytes: usize) {
        let (now, peak) = match t {
            Transient::Gathered => (&mut self.gathered_now, &mut self.gathered_peak),
            Transient::Bucket => (&mut self.bucket_now, &mut self.bucket_peak),
        };
        *now += bytes as u64;
        *peak = (*peak).max(*now);
    }

    /// A transient buffer of `bytes` was released.
    pub fn transient_free(&mut self, t: Transient, bytes: usize) {
        let now = match t {
            Transient::Gathered => &mut self.gathered_now,
            Transient::Bucket => &mut self.bucket_now,
        };
        *now = now.saturating_sub(bytes as u64);
    }

    /// Reads the process's peak RSS into `peak_rss` (left unchanged where unknown).
    pub fn refresh_rss(&mut self) {
        if let Some(r) = peak_rss() {
            self.peak_rss = r;
        }
    }

    /// The six reported values in field order, for an element-wise max over ranks.
    pub fn to_array(&self) -> [u64; 6] {
        [
            self.params,
            self.grads,
            self.optimizer,
            self.gathered_peak,
            self.bucket_peak,
            self.peak_rss,
        ]
    }

    /// Inverse of [`MemCounter::to_array`] (transient "now" values are zero).
    pub fn from_array(a: [u64; 6]) -> Self {
        MemCounter {
            params: a[0],
            grads: a[1],
            optimizer: a[2],
            gathered_peak: a[3],
            bucket_peak: a[4],
            peak_rss: a[5],
            ..Default::default()
        }
    }
}

/// Peak resident set size of this process in bytes, from `VmHWM` in
/// `/proc/self/status`; `None` where that file or line is missing (non-Linux).
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&s)
}

/// The `VmHWM:   1234 kB` line of a `/proc/<pid>/status` text, in bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut it = line["VmHWM:".len()..].split_whitespace();
    let n: u64 = it.next()?.parse().ok()?;
    match it.next() {
        Some("kB") | None => Some(n * 1024),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_peaks_and_record_fields() {
        let mut m = MemCounter {
            params: 100,
            grads: 30,
            optimizer: 1200,
            ..Default::default()
        };
        m.transient_alloc(Transient::Gathered, 64);
        m.transient_alloc(Transient::Gathered, 32);
        m.transient_free(Transient::Gathered, 64);
        m.transient_alloc(Transient::Gathered, 16);
        assert_eq!((m.gathered_peak, m.gathered_now), (96, 48));
        m.transient_alloc(Transient::Bucket, 8);
        assert_eq!(m.bucket_peak, 8);
        let json = serde_json::to_value(m).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(keys.len(), 6, "{keys:?}");
        for k in [
            "params",
            "grads",
            "optimizer",
            "gathered_peak",
            "bucket_peak",
            "peak_rss",
        ] {
            assert!(keys.contains(&k), "{k} missing");
        }
        assert_eq!(
            MemCounter::from_array(m.to_array()).to_array(),
            m.to_array()
        );
    }

    #[test]
    fn vm_hwm_parsing_and_live_value() {
        assert_eq!(
            parse_vm_hwm("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS: 1 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM: lots kB\n"), None);
        // This test process has touched at least a megabyte.
        let big = vec![1u8; 8 << 20];
        let r = peak_rss().expect("Linux has /proc/self/status");
        assert!(r >= 8 << 20, "peak rss {r}");
        assert_eq!(big.iter().map(|&b| b as usize).sum::<usize>(), 8 << 20);
    }
}
