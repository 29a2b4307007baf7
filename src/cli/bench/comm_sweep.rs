//! `zerotrain bench comm`: our collectives against the raw MPI calls on the same buffers.
//! Iterations alternate ours/raw (and which goes first) to cancel machine noise; each
//! iteration's time is the slowest rank's. `ours_s` and `raw_s` are the medians over
//! iterations and `ratio` = ours_s / raw_s. Ours and raw run back to back in every
//! iteration, first and second in turn (an even count), so both medians see the same load
//! and the same share of going first. (Medians of per-pair ratios were tried and were
//! noisier on an oversubscribed, loaded machine.)
//! Bandwidths follow nccl-tests: `bytes` is the whole buffer (all-reduce: the buffer;
//! reduce-scatter: the send buffer; all-gather: the receive buffer), algbw = bytes / time,
//! busbw = algbw * 2(n-1)/n for all-reduce and algbw * (n-1)/n for the other two.
use std::time::Instant;

use anyhow::{ensure, Result};
use half::{bf16, f16};

use crate::dist::{DType, Elem, Group, RawCollective, ReduceOp, ScalarOp};

/// A benchmarked collective.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchOp {
    AllReduce,
    ReduceScatter,
    AllGather,
}

impl BenchOp {
    /// `allreduce`, `reducescatter`, `allgather`.
    pub fn name(self) -> &'static str {
        match self {
            BenchOp::AllReduce => "allreduce",
            BenchOp::ReduceScatter => "reducescatter",
            BenchOp::AllGather => "allgather",
        }
    }

    /// Parses a name (dashes and underscores ignored).
    pub fn parse(s: &str) -> Result<BenchOp> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['-', '_'], "")
            .as_str()
        {
            "allreduce" => Ok(BenchOp::AllReduce),
            "reducescatter" => Ok(BenchOp::ReduceScatter),
            "allgather" => Ok(BenchOp::AllGather),
            other => anyhow::bail!(
                "unknown op '{other}' (expected allreduce, reducescatter or allgather)"
            ),
        }
    }

    /// The nccl-tests bus-bandwidth factor for `n` ranks.
    pub fn busbw_factor(self, n: usize) -> f64 {
        let n = n as f64;
        match self {
            BenchOp::AllReduce => 2.0 * (n - 1.0) / n,
            BenchOp::ReduceScatter | BenchOp::AllGather => (n - 1.0) / n,
        }
    }
}

/// What to sweep.
#[derive(Clone, Debug)]
pub struct BenchOpts {
    pub min_bytes: usize,
    pub max_bytes: usize,
    /// Size multiplier between steps (2 or 4 typically).
    pub factor: usize,
    /// Timed iterations per size (each of ours and raw, rounded up to even); `None`: by
    /// size and a time budget (see `default_iters`).
    pub iters: Option<usize>,
    pub dtypes: Vec<DType>,
    pub ops: Vec<BenchOp>,
}

impl BenchOpts {
    /// The message sizes: `min_bytes * factor^k` up to `max_bytes`.
    pub fn sizes(&self) -> Result<Vec<usize>> {
        ensure!(self.min_bytes >= 1, "--min-bytes must be at least 1");
        ensure!(
            self.max_bytes >= self.min_bytes,
            "--max-bytes must be at least --min-bytes"
        );
        ensure!(self.factor >= 2, "--factor must be at least 2");
        ensure!(
            !self.dtypes.is_empty() && !self.ops.is_empty(),
            "no dtypes or ops to benchmark"
        );
        let mut v = vec![self.min_bytes];
        while let Some(next) = v.last().and_then(|b| b.checked_mul(self.factor)) {
            if next > self.max_bytes {
                break;
            }
            v.push(next);
        }
        Ok(v)
    }
}

/// Most iterations by size: about 512 MiB moved per (op, dtype, size), between 40 and 200.
pub fn auto_iters(bytes: usize) -> usize {
    ((512usize << 20) / bytes.max(1)).clamp(MIN_ITERS * 2, 200)
}

/// Fewest default iterations (each of ours and raw): 10 per call order.
const MIN_ITERS: usize = 20;

/// Default time budget per (op, dtype, size): iterations beyond [`MIN_ITERS`] are cut to fit.
const BUDGET_S: f64 = 1.5;

/// The iteration count from the slowest rank's warm-up pair time (same on every rank):
/// [`auto_iters`], cut to the time budget but not below [`MIN_ITERS`]; always even.
fn default_iters(bytes: usize, pair_s: f64) -> usize {
    let fit = (BUDGET_S / pair_s.max(1e-9)) as usize;
    fit.clamp(MIN_ITERS, auto_iters(bytes).max(MIN_ITERS))
}

/// Results of one measurement.
struct Measured {
    ours: f64,
    raw: f64,
    ratio: f64,
    iters: usize,
}

/// One measured (op, dtype, size).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub op: &'static str,
    pub dtype: &'static str,
    pub bytes: usize,
    pub count: usize,
    pub ranks: usize,
    pub iters: usize,
    pub ours_s: f64,
    pub raw_s: f64,
    /// `ours_s / raw_s`.
    pub ratio: f64,
    pub algbw_gbps: f64,
    pub busbw_gbps: f64,
    pub raw_busbw_gbps: f64,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// Buffers of one measurement, zero-filled (sums of zeros stay finite across iterations).
struct Bufs<T> {
    a: Vec<T>,
    b: Vec<T>,
}

/// Ours: the public wrapper. Raw: the MPI call issued directly on the same buffers.
fn bench_call<T: Elem>(g: &Group, op: BenchOp, bufs: &mut Bufs<T>, raw: bool) -> Result<()> {
    let (a, b) = (&mut bufs.a, &mut bufs.b);
    if !raw {
        match op {
            BenchOp::AllReduce => g.all_reduce(a, ReduceOp::Sum)?,
            BenchOp::ReduceScatter => g.reduce_scatter(a, b, ReduceOp::Sum)?,
            BenchOp::AllGather => g.all_gather(a, b)?,
        }
        return Ok(());
    }
    // The same MPI call issued directly (dist/raw.rs), with no wrapper around it.
    let (what, count, send, recv) = match op {
        BenchOp::AllReduce => (
            RawCollective::AllReduceInPlace,
            a.len(),
            std::ptr::null(),
            a.as_mut_ptr() as *mut u8,
        ),
        BenchOp::ReduceScatter => (
            RawCollective::ReduceScatter,
            b.len(),
            a.as_ptr() as *const u8,
            b.as_mut_ptr() as *mut u8,
        ),
        BenchOp::AllGather => (
            RawCollective::AllGather,
            a.len(),
            a.as_ptr() as *const u8,
            b.as_mut_ptr() as *mut u8,
        ),
    };
    // SAFETY: buffer sizes were made for `op` by `measure`; counts fit an int there.
    unsafe { g.run_raw(what, T::DTYPE, send, recv, count)? };
    Ok(())
}

/// Medians of ours and raw, and their ratio (see the module doc); `iters`: `None` for
/// [`default_iters`].
fn measure<T: Elem>(
    g: &Group,
    op: BenchOp,
    total: usize,
    iters: Option<usize>,
) -> Result<Measured> {
    let n = g.size();
    let block = total / n;
    let z = T::default();
    let mut bufs = match op {
        BenchOp::AllReduce => Bufs {
            a: vec![z; total],
            b: Vec::new(),
        },
        BenchOp::ReduceScatter => Bufs {
            a: vec![z; total],
            b: vec![z; block],
        },
        BenchOp::AllGather => Bufs {
            a: vec![z; block],
            b: vec![z; total],
        },
    };
    g.check_all_reduce(total)?; // counts fit an int
    let mut pair_s = 0.0;
    for _warm_up in 0..2 {
        let t = Instant::now();
        bench_call::<T>(g, op, &mut bufs, false)?;
        bench_call::<T>(g, op, &mut bufs, true)?;
        pair_s = t.elapsed().as_secs_f64();
    }
    let pair_s = g.all_reduce_f64(pair_s, ScalarOp::Max);
    let bytes = total * T::DTYPE.bytes();
    // Even, so ours-first and raw-first iterations are equally many.
    let iters = iters
        .unwrap_or_else(|| default_iters(bytes, pair_s))
        .max(1)
        .next_multiple_of(2);
    let mut times = vec![0f64; 2 * iters]; // [ours..., raw...]
    for it in 0..iters {
        for k in 0..2 {
            let raw = (k ^ (it % 2)) == 1;
            g.barrier()?;
            let t = Instant::now();
            bench_call::<T>(g, op, &mut bufs, raw)?;
            times[it + if raw { iters } else { 0 }] = t.elapsed().as_secs_f64();
        }
    }
    let mut slowest = slowest_rank(g, &times)?;
    let (ours, raw) = slowest.split_at_mut(iters);
    let (ours, raw) = (median(ours), median(raw));
    Ok(Measured {
        ours,
        raw,
        ratio: ours / raw,
        iters,
    })
}

/// Runs the sweep; every rank returns the same rows (times are the slowest rank's).
pub fn bench_comm(g: &Group, opts: &BenchOpts) -> Result<Vec<Row>> {
    let sizes = opts.sizes()?;
    let n = g.size();
    let mut rows = Vec::new();
    for &op in &opts.ops {
        for &dtype in &opts.dtypes {
            for &bytes in &sizes {
                let elem = dtype.bytes();
                let total = (bytes / elem / n) * n; // equal blocks for RS/AG
                let total = if op == BenchOp::AllReduce {
                    bytes / elem
                } else {
                    total
                };
                if total == 0 {
                    continue;
                }
                let m = match dtype {
                    DType::Fp32 => measure::<f32>(g, op, total, opts.iters)?,
                    DType::Bf16 => measure::<bf16>(g, op, total, opts.iters)?,
                    DType::Fp16 => measure::<f16>(g, op, total, opts.iters)?,
                };
                let Measured {
                    ours,
                    raw,
                    ratio,
                    iters,
                } = m;
                let bytes = total * elem;
                let algbw = bytes as f64 / ours / 1e9;
                rows.push(Row {
                    op: op.name(),
                    dtype: dtype.name(),
                    bytes,
                    count: total,
                    ranks: n,
                    iters,
                    ours_s: ours,
                    raw_s: raw,
                    ratio,
                    algbw_gbps: algbw,
                    busbw_gbps: algbw * op.busbw_factor(n),
                    raw_busbw_gbps: bytes as f64 / raw / 1e9 * op.busbw_factor(n),
                });
            }
        }
    }
    Ok(rows)
}

/// Element-wise maximum of `times` over the group's ranks.
fn slowest_rank(g: &Group, times: &[f64]) -> Result<Vec<f64>> {
    let bits: Vec<u64> = times.iter().map(|t| t.to_bits()).collect();
    let all = g.all_gather_u64s(&bits)?;
    Ok((0..times.len())
        .map(|i| {
            all.chunks(times.len())
                .map(|rank| f64::from_bits(rank[i]))
                .fold(0.0, f64::max)
        })
        .collect())
}

/// The aligned table, with a closing line on the fp32 >= 1 MiB ratios (the floor).
pub fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<14} {:<5} {:>10} {:>5} {:>5} {:>11} {:>11} {:>6} {:>10} {:>10}\n",
        "op",
        "dtype",
        "bytes",
        "ranks",
        "iters",
        "ours_us",
        "raw_us",
        "ratio",
        "algbw_GB/s",
        "busbw_GB/s"
    );
    for r in rows {
        s += &format!(
            "{:<14} {:<5} {:>10} {:>5} {:>5} {:>11.1} {:>11.1} {:>6.3} {:>10.3} {:>10.3}\n",
            r.op,
            r.dtype,
            r.bytes,
            r.ranks,
            r.iters,
            r.ours_s * 1e6,
            r.raw_s * 1e6,
            r.ratio,
            r.algbw_gbps,
            r.busbw_gbps
        );
    }
    for op in [
        BenchOp::AllReduce,
        BenchOp::ReduceScatter,
        BenchOp::AllGather,
    ] {
        let big: Vec<f64> = rows
            .iter()
            .filter(|r| r.op == op.name() && r.dtype == "fp32" && r.bytes >= 1 << 20)
            .map(|r| r.ratio)
            .collect();
        if let Some(worst) = big.iter().copied().reduce(f64::max) {
            s += &format!(
                "{}: fp32 >= 1 MiB: worst ratio ours/raw {worst:.3} over {} sizes\n",
                op.name(),
                big.len()
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_factors() {
        let o = BenchOpts {
            min_bytes: 1024,
            max_bytes: 64 << 20,
            factor: 4,
            iters: None,
            dtypes: vec![DType::Fp32],
            ops: vec![BenchOp::AllReduce],
        };
        let s = o.sizes().unwrap();
        assert_eq!(s.first(), Some(&1024));
        assert_eq!(s.last(), Some(&(64 << 20)));
        assert_eq!(s.len(), 9);
        assert!(BenchOpts {
            factor: 1,
            ..o.clone()
        }
        .sizes()
        .is_err());
        assert!(BenchOpts { max_bytes: 10, ..o }.sizes().is_err());
        assert_eq!(BenchOp::AllReduce.busbw_factor(4), 1.5);
        assert_eq!(BenchOp::AllGather.busbw_factor(2), 0.5);
        assert_eq!(
            BenchOp::parse("reduce-scatter").unwrap(),
            BenchOp::ReduceScatter
        );
        assert!(BenchOp::parse("alltoall").is_err());
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
    }
}
