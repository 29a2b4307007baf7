//! Correctness sweep of every collective, run under mpirun by the integration tests
//! (`zerotrain bench comm --self-test`, a hidden test hook). Each rank fills its data from
//! a formula of (rank, index), so every rank computes the expected result itself.
use anyhow::{bail, ensure, Result};
use half::{bf16, f16};

use crate::dist::{DType, Dist, Elem, Group, RawCollective, ReduceOp, ScalarOp};

/// Lengths for all-reduce and broadcast: zero, odd, and not divisible by 2, 3 or 4.
const LENS: [usize; 6] = [0, 1, 7, 13, 1000, 4099];
/// Per-rank block lengths for reduce-scatter and all-gather (zero and odd).
const BLOCKS: [usize; 4] = [0, 1, 7, 333];

/// What the sweep checked on this rank.
#[derive(Debug, Default, Clone, Copy)]
pub struct Report {
    /// Comparisons made (one per collective result checked).
    pub checks: usize,
    /// Elements compared.
    pub elements: usize,
    /// `test()` calls made while a request overlapped compute.
    pub test_calls: usize,
    /// Largest half-precision sum error seen, as a fraction of its allowed bound.
    pub worst_half_error_vs_bound: f64,
}

/// Integer data in [-5, 5]: sums over up to 4 ranks (|s| <= 20) are exact in f32, bf16
/// (exact integers up to 256) and f16 (up to 2048), so results must match exactly
/// whatever order MPI adds in.
fn int_val(rank: usize, i: usize) -> f32 {
    ((rank * 7 + i * 3) % 11) as f32 - 5.0
}

fn int_sum(n: usize, i: usize) -> f32 {
    (0..n).map(|r| int_val(r, i)).sum()
}

/// Non-integer data in [1, 2), rounded to the element type so inputs are exact.
fn frac_val<T: Elem>(rank: usize, i: usize) -> T {
    T::from_f32(1.0 + ((rank * 31 + i * 17) % 97) as f32 / 97.0)
}

fn fill<T: Elem>(len: usize, f: impl Fn(usize) -> f32) -> Vec<T> {
    (0..len).map(|i| T::from_f32(f(i))).collect()
}

impl Report {
    fn check<T: Elem>(&mut self, what: &str, got: &[T], want: impl Fn(usize) -> T) -> Result<()> {
        for (i, g) in got.iter().enumerate() {
            let w = want(i);
            ensure!(
                *g == w,
                "self-test {what} ({}, len {}): element {i} is {g:?}, expected {w:?}",
                T::DTYPE.name(),
                got.len()
            );
        }
        self.checks += 1;
        self.elements += got.len();
        Ok(())
    }
}

fn blocking<T: Elem>(d: &Group, rep: &mut Report) -> Result<()> {
    let (r, n) = (d.rank(), d.size());
    for len in LENS {
        for op in [ReduceOp::Sum, ReduceOp::Avg] {
            let mut buf: Vec<T> = fill(len, |i| int_val(r, i));
            d.all_reduce(&mut buf, op)?;
            let div = if op == ReduceOp::Avg { n as f32 } else { 1.0 };
            rep.check("all_reduce", &buf, |i| T::from_f32(int_sum(n, i) / div))?;
        }
        let send: Vec<T> = fill(len, |i| int_val(r, i));
        let mut wide = vec![0f32; len];
        d.all_reduce_into_f32(&send, &mut wide, ReduceOp::Sum)?;
        rep.check("all_reduce_into_f32", &wide, |i| int_sum(n, i))?;
        for root in [0, n - 1] {
            let mut buf: Vec<T> = fill(len, |i| if r == root { int_val(root, i) } else { 99.0 });
            d.broadcast(&mut buf, root)?;
            rep.check("broadcast", &buf, |i| T::from_f32(int_val(root, i)))?;
        }
    }
    for b in BLOCKS {
        for op in [ReduceOp::Sum, ReduceOp::Avg] {
            let send: Vec<T> = fill(b * n, |j| int_val(r, j));
            let mut recv = vec![T::from_f32(99.0); b];
            d.reduce_scatter(&send, &mut recv, op)?;
            let div = if op == ReduceOp::Avg { n as f32 } else { 1.0 };
            rep.check("reduce_scatter", &recv, |i| {
                T::from_f32(int_sum(n, r * b + i) / div)
            })?;
        }
        let send: Vec<T> = fill(b, |i| int_val(r, i));
        let mut recv = vec![T::from_f32(99.0); b * n];
        d.all_gather(&send, &mut recv)?;
        rep.check("all_gather", &recv, |j| {
            T::from_f32(int_val(j / b.max(1), j % b.max(1)))
        })?;
    }
    Ok(())
}

/// Wrong lengths and roots are refused locally (no MPI call, so no rank hangs).
fn refusals<T: Elem>(d: &Group, rep: &mut Report) -> Result<()> {
    let n = d.size();
    let x = vec![T::default(); 3 * n + 1];
    let mut y = vec![T::default(); 3];
    ensure!(
        d.reduce_scatter(&x, &mut y, ReduceOp::Sum).is_err(),
        "reduce_scatter accepted bad lengths"
    );
    ensure!(
        d.all_gather(&y, &mut vec![T::default(); 3 * n + 1])
            .is_err(),
        "all_gather accepted bad lengths"
    );
    ensure!(
        d.all_reduce_into_f32(&y, &mut [0f32; 2], ReduceOp::Sum)
            .is_err(),
        "into_f32 accepted bad lengths"
    );
    ensure!(
        d.broadcast(&mut y, n).is_err(),
        "broadcast accepted root {n}"
    );
    ensure!(
        d.iall_gather(y.clone(), vec![T::default(); 1]).is_err(),
        "iall_gather accepted bad lengths"
    );
    rep.checks += 5;
    Ok(())
}

fn nonblocking<T: Elem>(d: &Group, rep: &mut Report) -> Result<()> {
    let (r, n) = (d.rank(), d.size());
    let len = 4099;
    let ar = d.iall_reduce(fill::<T>(len, |i| int_val(r, i)), ReduceOp::Avg)?;
    let b = 333;
    let rs = d.ireduce_scatter(
        fill::<T>(b * n, |j| int_val(r, j)),
        vec![T::default(); b],
        ReduceOp::Sum,
    )?;
    let ag = d.iall_gather(fill::<T>(b, |i| int_val(r, i)), vec![T::default(); b * n])?;
    let root = n - 1;
    let bc = d.ibroadcast(
        fill::<T>(13, |i| if r == root { int_val(root, i) } else { 99.0 }),
        root,
    )?;
    let zero = d.iall_reduce(Vec::<T>::new(), ReduceOp::Sum)?;
    let bar = d.ibarrier()?;
    // Complete in an order different from the start order.
    bar.wait();
    let (out, other) = bc.wait();
    ensure!(other.is_empty(), "ibroadcast returned a second buffer");
    rep.check("ibroadcast", &out, |i| T::from_f32(int_val(root, i)))?;
    let (out, send) = ag.wait();
    rep.check("iall_gather", &out, |j| T::from_f32(int_val(j / b, j % b)))?;
    rep.check("iall_gather returned send", &send, |i| {
        T::from_f32(int_val(r, i))
    })?;
    let (out, send) = rs.wait();
    rep.check("ireduce_scatter", &out, |i| {
        T::from_f32(int_sum(n, r * b + i))
    })?;
    ensure!(
        send.len() == b * n,
        "ireduce_scatter did not return its send buffer"
    );
    let (out, _) = ar.wait();
    rep.check("iall_reduce avg", &out, |i| {
        T::from_f32(int_sum(n, i) / n as f32)
    })?;
    let (out, _) = zero.wait();
    ensure!(out.is_empty(), "zero-length iall_reduce returned data");
    // Dropping an unfinished request waits for it instead of freeing memory under MPI.
    drop(d.iall_reduce(fill::<T>(1 << 16, |i| int_val(r, i)), ReduceOp::Sum)?);
    rep.checks += 2;
    Ok(())
}

/// A large all-reduce completes while this rank computes, calling `test()` between chunks.
fn overlap(d: &Group, rep: &mut Report) -> Result<()> {
    let (r, n) = (d.rank(), d.size());
    let len = 1 << 20;
    let mut p = d.iall_reduce(fill::<f32>(len, |i| int_val(r, i)), ReduceOp::Sum)?;
    let (mut acc, mut chunks) = (0f64, 0usize);
    loop {
        for k in 0..20_000 {
            acc = (acc + k as f64).sqrt(); // stand-in compute
        }
        chunks += 1;
        rep.test_calls += 1;
        if p.test() {
            break;
        }
        ensure!(chunks < 10_000_000, "iall_reduce never completed");
    }
    ensure!(acc.is_finite() && chunks > 0, "compute loop did not run");
    let (out, _) = p.wait();
    rep.check("iall_reduce during compute", &out, |i| int_sum(n, i))
}

/// Half sums (n-1 additions, each rounding once to T with unit roundoff u) must be within
/// gamma_{n-1} * sum|x_r| of the exact sum, gamma_k = k*u / (1 - k*u) (Higham, Accuracy
/// and Stability of Numerical Algorithms, 2nd ed., eq. 4.4), for any addition order. The
/// f32 reduction of the same half inputs is exact: at most 4 values in [1, 2) with at most
/// 11 significant bits need at most 14 bits.
fn half_rounding<T: Elem>(d: &Group, rep: &mut Report) -> Result<()> {
    let (r, n) = (d.rank(), d.size());
    let len = 4099;
    let mut buf: Vec<T> = (0..len).map(|i| frac_val::<T>(r, i)).collect();
    let mut wide = vec![0f32; len];
    d.all_reduce_into_f32(&buf, &mut wide, ReduceOp::Sum)?;
    d.all_reduce(&mut buf, ReduceOp::Sum)?;
    let k = (n - 1) as f64;
    let u = T::DTYPE.unit_roundoff();
    let gamma = k * u / (1.0 - k * u);
    for i in 0..len {
        let xs: Vec<f64> = (0..n)
            .map(|q| frac_val::<T>(q, i).to_f32() as f64)
            .collect();
        let exact: f64 = xs.iter().sum();
        let bound = gamma * xs.iter().map(|x| x.abs()).sum::<f64>();
        let err = (buf[i].to_f32() as f64 - exact).abs();
        ensure!(
            err <= bound,
            "{} sum at {i}: {} vs exact {exact}, error {err} > bound {bound}",
            T::DTYPE.name(),
            buf[i].to_f32()
        );
        ensure!(
            wide[i] as f64 == exact,
            "f32 reduction of {} data at {i} not exact",
            T::DTYPE.name()
        );
        if bound > 0.0 {
            rep.worst_half_error_vs_bound = rep.worst_half_error_vs_bound.max(err / bound);
        }
    }
    rep.checks += 2;
    rep.elements += 2 * len;
    Ok(())
}

/// The raw collectives the engine's direct transport uses (`dist/raw.rs`), on host
/// memory (which any MPI accepts, as a CUDA-aware one accepts device memory), blocking
/// and started.
fn raw<T: Elem>(d: &Group, rep: &mut Report) -> Result<()> {
    let (r, n, b) = (d.rank(), d.size(), 7);
    let ptr = |v: &mut Vec<T>| v.as_mut_ptr() as *mut u8;
    let null = std::ptr::null();
    let mut buf: Vec<T> = fill(13, |i| int_val(r, i));
    // SAFETY: every buffer holds the elements its collective states for count b (or 13).
    unsafe {
        d.run_raw(
            RawCollective::AllReduceInPlace,
            T::DTYPE,
            null,
            ptr(&mut buf),
            13,
        )?
    };
    rep.check("raw all_reduce in place", &buf, |i| {
        T::from_f32(int_sum(n, i))
    })?;
    let mut send: Vec<T> = fill(b * n, |j| int_val(r, j));
    let mut recv = vec![T::default(); b];
    let req = unsafe {
        d.start_raw(
            RawCollective::ReduceScatter,
            T::DTYPE,
            ptr(&mut send),
            ptr(&mut recv),
            b,
        )?
    };
    req.wait();
    rep.check("raw reduce_scatter (started)", &recv, |i| {
        T::from_f32(int_sum(n, r * b + i))
    })?;
    let mut send: Vec<T> = fill(b, |i| int_val(r, i));
    let mut recv = vec![T::default(); b * n];
    unsafe {
        d.run_raw(
            RawCollective::AllGather,
            T::DTYPE,
            ptr(&mut send),
            ptr(&mut recv),
            b,
        )?
    };
    rep.check("raw all_gather", &recv, |j| {
        T::from_f32(int_val(j / b, j % b))
    })?;
    let mut all = vec![T::default(); b * n];
    all[r * b..(r + 1) * b].copy_from_slice(&send);
    unsafe {
        d.run_raw(
            RawCollective::AllGatherInPlace,
            T::DTYPE,
            null,
            ptr(&mut all),
            b,
        )?
    };
    rep.check("raw all_gather in place", &all, |j| {
        T::from_f32(int_val(j / b, j % b))
    })?;
    Ok(())
}

fn all_for<T: Elem>(d: &Group, rep: &mut Report) -> Result<()> {
    blocking::<T>(d, rep)?;
    refusals::<T>(d, rep)?;
    nonblocking::<T>(d, rep)?;
    raw::<T>(d, rep)?;
    if T::DTYPE != DType::Fp32 {
        half_rounding::<T>(d, rep)?;
    }
    Ok(())
}

/// Runs the whole sweep on one group; returns this rank's report after a final barrier
/// (so a report on the group's rank 0 means every rank of it passed).
pub fn run(d: &Group) -> Result<Report> {
    let mut rep = Report::default();
    all_for::<f32>(d, &mut rep)?;
    all_for::<bf16>(d, &mut rep)?;
    all_for::<f16>(d, &mut rep)?;
    overlap(d, &mut rep)?;
    let n = d.size() as f64;
    let sum = d.all_reduce_f64(d.rank() as f64 + 1.0, ScalarOp::Sum);
    let max = d.all_reduce_f64(d.rank() as f64 + 1.0, ScalarOp::Max);
    if sum != n * (n + 1.0) / 2.0 || max != n {
        bail!(
            "group {}: all_reduce_f64 gave sum {sum}, max {max}",
            d.name()
        );
    }
    rep.checks += 2;
    d.barrier()?;
    Ok(rep)
}

/// The sweep on every group `Dist::init` makes (world, node, across nodes) and on a split
/// of the world by rank parity, whose ranks and sizes are checked first: rank r lands in
/// group r % 2 at rank r / 2. Reports add up over the groups.
pub fn run_on_groups(dist: &Dist) -> Result<Report> {
    let world = dist.world();
    let parity = world.split(world.rank() % 2, "parity")?;
    let (r, n) = (world.rank(), world.size());
    let want_size = n / 2 + (r % 2 < n % 2) as usize;
    ensure!(
        parity.rank() == r / 2 && parity.size() == want_size,
        "split by parity: rank {} of {}, expected {} of {want_size}",
        parity.rank(),
        parity.size(),
        r / 2
    );
    ensure!(
        dist.node().size() * dist.across_nodes().size() >= n,
        "node ({}) and across-nodes ({}) groups do not cover {n} ranks",
        dist.node().size(),
        dist.across_nodes().size()
    );
    let mut total = Report::default();
    for g in [world, dist.node(), dist.across_nodes(), &parity] {
        let rep = run(g)?;
        total.checks += rep.checks + 1;
        total.elements += rep.elements;
        total.test_calls += rep.test_calls;
        total.worst_half_error_vs_bound = total
            .worst_half_error_vs_bound
            .max(rep.worst_half_error_vs_bound);
    }
    world.barrier()?;
    Ok(total)
}
