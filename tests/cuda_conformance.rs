//! CUDA backend conformance: every kernel, each layer's forward and backward, and whole
//! GPT and MLP training steps run on the CPU and the CUDA backend from the same inputs,
//! and must agree within the tolerance stated at each comparison.
//!
//! Without a usable GPU (no libcuda, no cuBLAS/NVRTC, no device) each test prints
//! "skipped: no CUDA GPU (reason)" and passes; where CUDA is present, a failure to start
//! the backend (e.g. a kernel that NVRTC rejects) fails the test. See scripts/gpu-check.sh.
//!
//! Tolerances, with u = 2^-24 ≈ 6e-8 the f32 unit roundoff:
//! - exact (0): kernels doing the same IEEE operations in the same order (copies, fill,
//!   scale, axpy, bias/residual adds, ReLU, embedding forward, the serial dwpe sum); the
//!   kernels are compiled without FMA contraction, so these round identically.
//! - 1e-5 (relative, plus the same absolute for values near 0): transcendental functions
//!   (CUDA's expf/logf are within 2 ulp of the correctly rounded result, Rust's within 1)
//!   and reductions of up to a few hundred terms summed in another order (error typically
//!   sqrt(L)·u·Σ|x|, i.e. ~1e-6 relative here).
//! - typed memory (`Backend::Mem`): bit-exact for every move and conversion (copies, fills,
//!   dtype conversions, host copies: the same bit manipulation as the `half` crate) and
//!   for the f32 adds; only a NaN that an add produces may differ in payload (x86 keeps
//!   an operand's, the GPU returns its canonical NaN), so adds compare NaN as NaN.
//! - optimizer updates: bit-exact (see `optimizer_update_is_bit_exact`); sum of squares
//!   in f64: 2.5e-11 relative (see `sum_squares_in_f64`).
//! - GEMM: |got − want| ≤ tol · (|α| |A||B| + |β| |C|) elementwise, the standard bound's
//!   shape; tol = 1e-5 for full fp32 (k ≤ 96 → k·u ≤ 6e-6), and 4e-3 with TF32 (inputs
//!   cut to 10 mantissa bits: at most 2^-10 each if truncated, so ≤ 2e-3 per product,
//!   with margin for the fp32 accumulation; a wrong kernel is off by O(1)).
#![cfg(feature = "cuda")]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use zerotrain::config::{DType, ModelConfig, ModelKind};
use zerotrain::data::batch::Batch;
use zerotrain::device::cuda::{kernel_ptx, probe, Cuda, KERNEL_NAMES};
use zerotrain::device::select::{select, DeviceChoice};
use zerotrain::device::{Backend, Cpu, Gemm, Store, Transfers};
use zerotrain::model::attention::{self, Dims};
use zerotrain::model::linear::Linear;
use zerotrain::model::{build_model, LocalState, Model};
use zerotrain::optim::{AdamRule, SgdRule, StepHyper, UpdateRule};

// ---------------------------------------------------------------- harness

/// The CUDA backend on device 0, or None (after printing why) when this machine has no
/// usable CUDA. Where CUDA is present the backend must start.
fn gpu(tf32: bool) -> Option<Arc<Cuda>> {
    if let Err(why) = probe() {
        eprintln!("skipped: no CUDA GPU ({why})");
        return None;
    }
    let be = Cuda::new(0).expect("CUDA is present, so the backend must start");
    be.set_tf32(tf32).expect("setting the cuBLAS math mode");
    Some(Arc::new(be))
}

fn rnd(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0..1.0) * scale).collect()
}

fn rnd_ids(seed: u64, n: usize, below: u32) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(0..below)).collect()
}

fn up<B: Backend>(be: &B, v: &[f32]) -> B::Buf {
    let mut b = be.alloc(v.len()).unwrap();
    be.upload(&mut b, v);
    b
}

fn up_ids<B: Backend>(be: &B, v: &[u32]) -> B::Ids {
    let mut b = be.alloc_ids(v.len()).unwrap();
    be.upload_ids(&mut b, v);
    b
}

fn down<B: Backend>(be: &B, b: &B::Buf) -> Vec<f32> {
    let mut v = vec![0.0; be.len(b)];
    be.download(b, &mut v);
    be.sync().expect("no error recorded by any kernel");
    v
}

/// |got - want| <= tol * (1 + |want|) elementwise (tol = 0: bit-exact), NaN only where
/// the reference has NaN.
fn close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let scale: Vec<f32> = want.iter().map(|w| 1.0 + w.abs()).collect();
    within(what, got, want, &scale, tol);
}

/// |got - want| <= tol * scale elementwise.
fn within(what: &str, got: &[f32], want: &[f32], scale: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let mut worst = (0.0f32, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() {
            assert!(g.is_nan(), "{what}[{i}]: got {g}, want NaN");
            continue;
        }
        let err = (g - w).abs();
        assert!(!err.is_nan(), "{what}[{i}]: got {g}, want {w}");
        let r = err / (tol * scale[i]).max(f32::MIN_POSITIVE);
        if err > tol * scale[i] && r > worst.0 {
            worst = (r, i);
        }
    }
    let i = worst.1;
    assert!(
        worst.0 == 0.0,
        "{what}[{i}]: got {}, want {} (|err| {} > {tol} x {})",
        got[i],
        want[i],
        (got[i] - want[i]).abs(),
        scale[i]
    );
}

// ---------------------------------------------------------------- start-up

#[test]
fn new_is_an_error_not_a_panic_where_cuda_cannot_run() {
    match probe() {
        Err(why) => {
            let e = Cuda::new(0).expect_err("no CUDA here, so no backend");
            assert!(e.to_string().contains(&why), "{e:#} should name {why}");
            let (choice, said) = select("auto", 0, 1).unwrap();
            assert_eq!(choice, DeviceChoice::Cpu, "auto falls back to the CPU");
            assert!(said.contains(&why), "{said}");
            let e = select("cuda", 0, 1).unwrap_err().to_string();
            assert!(e.contains(&why), "{e} should name {why}");
            eprintln!("skipped the GPU half: no CUDA GPU ({why})");
        }
        Ok(count) => {
            let e = Cuda::new(count).expect_err("ordinal past the last device");
            assert!(e.to_string().contains("does not exist"), "{e:#}");
            assert!(Cuda::new(0).is_ok());
            let (choice, _) = select("auto", count + 1, count + 2).unwrap();
            assert_eq!(
                choice,
                DeviceChoice::Cuda {
                    ordinal: (count + 1) % count
                }
            );
        }
    }
}

/// The kernel source compiles with NVRTC and defines every kernel the backend loads.
/// Needs only libnvrtc (no driver, no GPU), so it also runs on a build machine that has
/// NVRTC on LD_LIBRARY_PATH (see scripts/gpu-check.sh).
#[test]
fn kernels_compile_with_nvrtc() {
    // SAFETY: only tries to dlopen libnvrtc.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        eprintln!("skipped: no NVRTC library (libnvrtc.so.13) on this machine");
        return;
    }
    let ptx = kernel_ptx().unwrap_or_else(|e| panic!("{e:#}"));
    for name in KERNEL_NAMES {
        assert!(
            ptx.contains(&format!(".entry {name}(")),
            "{name} missing from the PTX"
        );
    }
}

// ---------------------------------------------------------------- BLAS-1 and copies

fn blas1<B: Backend>(be: &B, x: &[f32], y: &[f32]) -> Vec<Vec<f32>> {
    let (mut xb, mut yb) = (up(be, x), up(be, y));
    be.fill(&mut xb, 3, 50, -1.25);
    be.scale(&mut yb, 7, 100, 0.37);
    be.axpy(&mut yb, 1, -1.7, &xb, 20, 150);
    be.copy(&mut xb, 100, &yb, 5, 60);
    let mut part = vec![0.0; 33];
    be.download_at(&xb, 90, &mut part);
    be.upload_at(&mut yb, 170, &part);
    vec![down(be, &xb), down(be, &yb)]
}

#[test]
fn fill_scale_axpy_copy_upload_download() {
    let Some(gpu) = gpu(false) else { return };
    let (x, y) = (rnd(1, 300, 2.0), rnd(2, 300, 2.0));
    let want = blas1(&Cpu::new(1), &x, &y);
    let got = blas1(&*gpu, &x, &y);
    // exact: one IEEE multiply and/or add per element, in the same order
    close("x", &got[0], &want[0], 0.0);
    close("y", &got[1], &want[1], 0.0);
}

// ---------------------------------------------------------------- typed memory

const DTYPES: [DType; 3] = [DType::Fp32, DType::Bf16, DType::Fp16];

/// Values that exercise every conversion path, then `n` random ones over a wide range of
/// magnitudes: signed zeros, infinities, NaNs with payloads, f32 and fp16 subnormals,
/// fp16 overflow, bf16 and fp16 rounding ties (to even, up and down) and near-ties.
fn typed_inputs(seed: u64, n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = [
        0x0000_0000u32,
        0x8000_0000,
        0x7f80_0000,
        0xff80_0000,
        0x7fc0_0001, // quiet NaN with a payload
        0xffa0_1234, // signalling NaN: quieted by conversions
        0x0000_0001, // smallest f32 subnormal
        0x8040_0000,
        0x3f80_8000, // 1 + 2^-8: a bf16 tie, rounds down to even
        0x3f81_8000, // a bf16 tie that rounds up
        0x3f80_8001, // just above a bf16 tie
        0x3f80_1000, // 1 + 2^-11: an fp16 tie, rounds down to even
        0x3f80_3000, // an fp16 tie that rounds up
        0x3380_0000, // 2^-24: the smallest fp16 subnormal
        0x3300_0000, // 2^-25: a tie between 0 and it
        0x3300_0001,
        0x3880_0000, // 2^-14: the smallest fp16 normal
        0x387f_e000, // just below it: rounds up into the normals
        0x477f_f000, // 65520: rounds to fp16 infinity
        0x477f_efff, // just below: 65504
        0x7f7f_ffff, // f32 max: bf16 infinity
    ]
    .iter()
    .map(|&b| f32::from_bits(b))
    .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    v.extend((0..n).map(|_| {
        let m: f32 = rng.gen_range(-2.0..2.0);
        m * 2f32.powi(rng.gen_range(-30..20))
    }));
    v
}

/// `v` in a new buffer of `dtype` (rounded on the host by the `half` crate).
fn mem_of<B: Backend>(be: &B, dtype: DType, v: &[f32]) -> B::Mem {
    let mut host = Store::zeros(dtype, v.len());
    host.write_f32(0, v);
    let mut m = be.alloc_mem(dtype, v.len()).unwrap();
    be.upload_mem(&mut m, 0, &host, 0, v.len());
    m
}

fn down_mem<B: Backend>(be: &B, m: &B::Mem) -> Store {
    let n = be.mem_len(m);
    let mut s = Store::zeros(be.mem_dtype(m), n);
    be.download_mem(m, 0, &mut s, 0, n);
    be.sync().expect("no error recorded by any kernel");
    s
}

/// Each element's bits, and whether it is NaN.
fn elems(s: &Store) -> Vec<(u32, bool)> {
    let b = s.dtype().bytes();
    let mut f = vec![0.0; s.len()];
    s.read_f32(0..s.len(), &mut f);
    s.bytes_of(0..s.len())
        .chunks(b)
        .zip(f)
        .map(|(c, v)| {
            let mut w = [0u8; 4];
            w[..b].copy_from_slice(c);
            (u32::from_le_bytes(w), v.is_nan())
        })
        .collect()
}

/// Element-for-element equal bits; with `nan_as_nan`, any NaN matches any NaN.
fn same_bits(what: &str, got: &Store, want: &Store, nan_as_nan: bool) {
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in elems(got).into_iter().zip(elems(want)).enumerate() {
        let ok = g.0 == w.0 || (nan_as_nan && g.1 && w.1);
        assert!(ok, "{what}[{i}]: got bits {:#x}, want {:#x}", g.0, w.0);
    }
}

/// The results of every typed-memory operation from the same inputs, each with whether
/// it came from an add (see `same_bits`), and the bytes the backend copied doing them.
fn typed_ops<B: Backend>(be: &B, x: &[f32], y: &[f32]) -> (Vec<(String, Store, bool)>, Transfers) {
    let t0 = be.transfers();
    let n = x.len();
    let yb = up(be, y);
    let mut out = Vec::new();
    for d in DTYPES {
        let name = d.name();
        for s in DTYPES {
            let b = mem_of(be, s, y);
            let mut a = mem_of(be, d, x);
            be.mem_copy(&mut a, 7, &b, 3, n - 20);
            out.push((
                format!("mem_copy {name} <- {}", s.name()),
                down_mem(be, &a),
                false,
            ));
            let mut a = mem_of(be, d, x);
            be.mem_add(&mut a, 5, &b, 11, n - 30);
            out.push((
                format!("mem_add {name} += {}", s.name()),
                down_mem(be, &a),
                true,
            ));
        }
        let a = mem_of(be, d, x);
        assert_eq!((be.mem_len(&a), be.mem_dtype(&a)), (n, d));
        let mut f = up(be, y);
        be.mem_to_f32(&mut f, 2, &a, 9, n - 20);
        let mut fs = Store::zeros(DType::Fp32, n);
        fs.write_f32(0, &down(be, &f));
        out.push((format!("mem_to_f32 {name}"), fs, false));
        let mut a = mem_of(be, d, x);
        be.mem_from_f32(&mut a, 4, &yb, 6, n - 10);
        out.push((format!("mem_from_f32 {name}"), down_mem(be, &a), false));
        let mut a = mem_of(be, d, x);
        be.mem_add_f32(&mut a, 1, &yb, 8, n - 10);
        out.push((format!("mem_add_f32 {name}"), down_mem(be, &a), true));
        let mut a = mem_of(be, d, x);
        for (k, v) in [1.0 / 3.0, 65519.0, -1e-6, f32::INFINITY, f32::NAN, -0.0]
            .into_iter()
            .enumerate()
        {
            be.mem_fill(&mut a, 13 * k, 10 + k, v);
        }
        be.mem_fill(&mut a, 0, 0, 1.0); // empty: no effect
        out.push((format!("mem_fill {name}"), down_mem(be, &a), false));
        // partial host copies at offsets on both sides
        let mut host = Store::zeros(d, n);
        host.write_f32(0, y);
        be.upload_mem(&mut a, 10, &host, 20, n / 2);
        let mut back = Store::zeros(d, n);
        back.write_f32(0, x);
        be.download_mem(&a, 30, &mut back, 5, n / 2);
        out.push((format!("upload_mem, download_mem {name}"), back, false));
    }
    be.sync().unwrap();
    (out, be.transfers().since(t0))
}

#[test]
fn typed_memory_matches_cpu_bit_for_bit() {
    let Some(gpu) = gpu(false) else { return };
    assert!(!gpu.host_resident());
    let (x, y) = (typed_inputs(40, 600), typed_inputs(41, 600));
    let (want, cpu_bytes) = typed_ops(&Cpu::new(1), &x, &y);
    let (got, gpu_bytes) = typed_ops(&*gpu, &x, &y);
    for ((what, g, add), (_, w, _)) in got.iter().zip(&want) {
        same_bits(what, g, w, *add);
    }
    // every upload and download counted, the same bytes as the CPU backend counts
    assert_eq!(gpu_bytes, cpu_bytes);
    assert!(gpu_bytes.h2d > 0 && gpu_bytes.d2h > 0);
}

#[test]
fn typed_memory_is_counted_and_has_device_addresses() {
    let Some(gpu) = gpu(false) else { return };
    let before = gpu.mem_stats();
    let mut a = gpu.alloc_mem(DType::Bf16, 1000).unwrap();
    let mut b = gpu.alloc_mem(DType::Fp32, 10).unwrap();
    let mut f = gpu.alloc(10).unwrap();
    let now = gpu.mem_stats();
    assert_eq!(now.device_bytes - before.device_bytes, 2000 + 40 + 40);
    assert_eq!(now.allocs - before.allocs, 3);
    gpu.sync().unwrap();
    let (pa, pb, pf) = (
        gpu.mem_ptr(&mut a),
        gpu.mem_ptr(&mut b),
        gpu.buf_ptr(&mut f) as *mut u8,
    );
    assert!(!pa.is_null() && !pb.is_null() && !pf.is_null());
    assert!(pa != pb && pb != pf && pa != pf, "distinct buffers");
    assert_eq!(pa, gpu.mem_ptr(&mut a), "stable for the buffer's life");
    drop((a, b, f));
    assert_eq!(gpu.mem_stats().device_bytes, before.device_bytes);
}

// ---------------------------------------------------------------- optimizer

/// Σ x² over a few windows of `x`, and the bytes the backend copied computing them.
fn sum_squares_run<B: Backend>(be: &B, x: &[f32]) -> (Vec<f64>, Transfers) {
    let xb = up(be, x);
    let t0 = be.transfers();
    let n = x.len();
    let r = [(0, n), (8, n - 8), (17, 1), (5, 0), (100, 255)]
        .iter()
        .map(|&(off, len)| be.sum_squares(&xb, off, len).unwrap())
        .collect();
    (r, be.transfers().since(t0))
}

// Both backends square exactly in f64 (a 24-bit mantissa squared fits in 53 bits) and
// add the squares in f64 in different orders (CPU: 8 lanes; GPU: per thread, then tree
// reductions). Each sum is within (n − 1)·2^-53·Σx² of the exact one, so for n ≤ 3·10^5
// the two agree within 2 · 3e5 · 1.1e-16 ≈ 6.7e-11 relative in the worst case and about
// sqrt(n)·2^-53 ≈ 6e-14 typically: 2.5e-11 leaves margin over the typical case while a
// wrong kernel (a lost block, f32 accumulation: ~1e-4 here) is far outside it.
#[test]
fn sum_squares_in_f64() {
    let Some(gpu) = gpu(false) else { return };
    let mut x = rnd(42, 300_001, 3.0);
    x[7] = 1e30; // its square overflows f32, not f64 (window 1 leaves it out)
    let (want, cpu_bytes) = sum_squares_run(&Cpu::new(1), &x);
    let (got, gpu_bytes) = sum_squares_run(&*gpu, &x);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 2.5e-11 * w,
            "window {i}: got {g}, want {w}"
        );
    }
    assert_eq!(got[2], want[2], "one element: exact");
    assert_eq!(got[3], 0.0, "empty: 0");
    // the same windows on the device give the same bits again
    assert_eq!(sum_squares_run(&*gpu, &x).0, got);
    assert_eq!(gpu_bytes, cpu_bytes, "8 bytes read back per call");
}

/// Three steps of `rule` at offsets in larger buffers; params then every state.
fn optimizer_run<B: Backend>(be: &B, rule: &UpdateRule, decay: bool) -> Vec<Vec<f32>> {
    let (n, len) = (500, 431);
    let mut p = up(be, &rnd(50, n, 1.0));
    let mut states: Vec<B::Buf> = (0..rule.state_names().len() as u64)
        .map(|k| {
            let s: Vec<f32> = rnd(60 + k, n, 0.1).iter().map(|v| v.abs()).collect();
            up(be, &s)
        })
        .collect();
    for step in 1..=3u64 {
        let mut g = rnd(70 + step, n, 2.0);
        g[9] = 0.0;
        let g = up(be, &g);
        let hp = StepHyper {
            lr: 1e-3 * step as f32,
            step,
        };
        be.optimizer_update(rule, &hp, decay, &mut p, 7, &g, 3, &mut states, 11, len);
    }
    let mut out = vec![down(be, &p)];
    out.extend(states.iter().map(|s| down(be, s)));
    out
}

// Bit-exact: the kernels do each element's IEEE operations in the CPU's order, compiled
// without FMA contraction and with NVRTC's default IEEE-rounded division and square root
// (sqrt.rn, div.rn), from per-step scalars computed by the same host code
// (`AdamRule::coef`, `SgdRule::decays`); nothing is reduced, so nothing reorders.
#[test]
fn optimizer_update_is_bit_exact() {
    let Some(gpu) = gpu(false) else { return };
    let adam = |weight_decay, decoupled| {
        UpdateRule::Adam(AdamRule {
            betas: [0.9, 0.99],
            eps: 1e-8,
            weight_decay,
            decoupled,
        })
    };
    let sgd = |momentum, weight_decay| {
        UpdateRule::Sgd(SgdRule {
            momentum,
            weight_decay,
        })
    };
    let rules = [
        sgd(0.0, 0.0),
        sgd(0.0, 0.01),
        sgd(0.9, 0.01),
        adam(0.0, false),
        adam(0.1, false),
        adam(0.1, true),
    ];
    for rule in rules {
        for decay in [true, false] {
            let want = optimizer_run(&Cpu::new(1), &rule, decay);
            let got = optimizer_run(&*gpu, &rule, decay);
            let names = [&["params"][..], rule.state_names()].concat();
            for ((g, w), name) in got.into_iter().zip(want).zip(names) {
                let what = format!("{rule:?} decay {decay}: {name}");
                same_bits(&what, &Store::F32(g), &Store::F32(w), false);
            }
        }
    }
}

// ---------------------------------------------------------------- GEMM

/// C after `g` from the given A, B, C.
fn gemm_run<B: Backend>(be: &B, g: &Gemm, a: &[f32], b: &[f32], c: &[f32]) -> Vec<f32> {
    let (ab, bb, mut cb) = (up(be, a), up(be, b), up(be, c));
    be.gemm(g, &ab, &bb, &mut cb);
    down(be, &cb)
}

/// Every transpose pair, offsets, padded row strides, alpha/beta and a strided batch.
fn gemm_cases() -> Vec<Gemm> {
    let mut v = Vec::new();
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        v.push(Gemm::new(17, 23, 31, ta, tb));
        let (lda, ldb) = (if ta { 17 } else { 31 } + 5, if tb { 31 } else { 23 } + 3);
        v.push(
            Gemm::new(17, 23, 31, ta, tb)
                .offsets(4, 9, 2)
                .lds(lda, ldb, 29)
                .scaled(-0.5, 1.25),
        );
        v.push(
            Gemm::new(9, 12, 96, ta, tb)
                .offsets(1, 2, 3)
                .batched(3, 9 * 96 + 7, 12 * 96 + 1, 9 * 12 + 4)
                .scaled(0.8, 0.5),
        );
    }
    v.push(Gemm::new(5, 6, 0, false, false).scaled(1.0, 0.5)); // k = 0: C = beta C
    v
}

fn gemm_conformance(tf32: bool, tol: f32) {
    let Some(gpu) = gpu(tf32) else { return };
    let cpu = Cpu::new(1);
    for (i, g) in gemm_cases().into_iter().enumerate() {
        let (na, nb, nc) = g.required_lens().unwrap();
        let (a, b, c) = (
            rnd(10 + i as u64, na, 1.0),
            rnd(50, nb, 1.0),
            rnd(90, nc, 1.0),
        );
        let want = gemm_run(&cpu, &g, &a, &b, &c);
        let got = gemm_run(&*gpu, &g, &a, &b, &c);
        // the error bound's shape: |alpha| |A||B| + |beta| |C| (CPU, exact enough)
        let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
        let gb = g.scaled(g.alpha.abs(), g.beta.abs());
        let bound = gemm_run(&cpu, &gb, &abs(&a), &abs(&b), &abs(&c));
        let scale: Vec<f32> = bound.iter().map(|m| m + 1e-30).collect();
        within(&format!("gemm {i} {g:?}"), &got, &want, &scale, tol);
    }
}

#[test]
fn gemm_fp32_matches_cpu() {
    gemm_conformance(false, 1e-5);
}

#[test]
fn gemm_tf32_matches_cpu() {
    gemm_conformance(true, 4e-3);
}

// ---------------------------------------------------------------- elementwise layers

fn bias_resid<B: Backend>(be: &B, out: &[f32], p: &[f32], r: &[f32]) -> Vec<Vec<f32>> {
    let (rows, cols) = (13, 37);
    let (pb, rb) = (up(be, p), up(be, r));
    let mut outs = Vec::new();
    for (bias, resid) in [(true, true), (true, false), (false, true), (false, false)] {
        let mut ob = up(be, out);
        let bias = bias.then_some((&pb, 5));
        be.bias_residual(&mut ob, rows, cols, bias, resid.then_some(&rb));
        outs.push(down(be, &ob));
    }
    let mut db = up(be, p);
    be.bias_bwd(&mut db, 3, &rb, rows, cols);
    outs.push(down(be, &db));
    outs
}

#[test]
fn bias_residual_and_bias_bwd() {
    let Some(gpu) = gpu(false) else { return };
    let (out, p, r) = (rnd(1, 13 * 37, 1.0), rnd(2, 50, 1.0), rnd(3, 13 * 37, 1.0));
    let want = bias_resid(&Cpu::new(1), &out, &p, &r);
    let got = bias_resid(&*gpu, &out, &p, &r);
    for i in 0..4 {
        // exact: the same adds in the same order
        close(
            &format!("bias_residual variant {i}"),
            &got[i],
            &want[i],
            0.0,
        );
    }
    // a 13-term column sum in another order
    close("bias_bwd", &got[4], &want[4], 1e-5);
}

fn activations<B: Backend>(be: &B, x: &[f32], d: &[f32]) -> Vec<Vec<f32>> {
    let n = x.len();
    let (xb, mut out) = (up(be, x), be.alloc(n).unwrap());
    be.gelu_fwd(&mut out, &xb, n);
    let mut dg = up(be, d);
    be.gelu_bwd(&mut dg, &xb, n);
    let mut r = up(be, x);
    be.relu_fwd(&mut r, n);
    let mut dr = up(be, d);
    be.relu_bwd(&mut dr, &r, n);
    vec![down(be, &out), down(be, &dg), down(be, &r), down(be, &dr)]
}

#[test]
fn gelu_and_relu() {
    let Some(gpu) = gpu(false) else { return };
    let mut x = rnd(4, 1000, 6.0);
    x[..4].copy_from_slice(&[0.0, -0.0, 30.0, -30.0]); // relu at 0, saturated tanh
    let d = rnd(5, 1000, 1.0);
    let want = activations(&Cpu::new(1), &x, &d);
    let got = activations(&*gpu, &x, &d);
    // expf within 2 ulp vs Rust's exp: a few u, amplified ~2x by the formula
    close("gelu_fwd", &got[0], &want[0], 1e-5);
    close("gelu_bwd", &got[1], &want[1], 1e-5);
    close("relu_fwd", &got[2], &want[2], 0.0);
    close("relu_bwd", &got[3], &want[3], 0.0);
}

// ---------------------------------------------------------------- embedding

/// Embedding forward and backward with wte at `wte_off` and wpe at `wpe_off` of one
/// flat buffer (both orders occur in practice: the CPU splits the buffer either way).
fn embed<B: Backend>(
    be: &B,
    p: &[f32],
    ids: &[u32],
    dout: &[f32],
    offs: (usize, usize),
) -> Vec<Vec<f32>> {
    let (b, t, c) = (3, 7, 24);
    let (pb, ib) = (up(be, p), up_ids(be, ids));
    let mut out = be.alloc(b * t * c).unwrap();
    be.embedding_fwd(&mut out, &ib, &pb, offs.0, offs.1, b, t, c);
    let mut g = up(be, p); // accumulates into existing values
    be.embedding_bwd(&mut g, offs.0, offs.1, &up(be, dout), &ib, b, t, c);
    vec![down(be, &out), down(be, &g)]
}

#[test]
fn embedding_fwd_and_bwd() {
    let Some(gpu) = gpu(false) else { return };
    let (vocab, ctx, c) = (11, 9, 24);
    let p = rnd(6, (vocab + ctx) * c, 1.0);
    let ids = rnd_ids(7, 21, vocab as u32); // 21 tokens from 11 ids: repeats
    let dout = rnd(8, 21 * c, 1.0);
    for offs in [(0, vocab * c), (ctx * c, 0)] {
        let want = embed(&Cpu::new(1), &p, &ids, &dout, offs);
        let got = embed(&*gpu, &p, &ids, &dout, offs);
        close("embedding_fwd", &got[0], &want[0], 0.0); // one add each
                                                        // dwpe: the same serial sum (exact); dwte: atomics add repeats in any order
        close("embedding_bwd", &got[1], &want[1], 1e-5);
    }
}

// ---------------------------------------------------------------- layernorm

fn layernorm<B: Backend>(be: &B, x: &[f32], p: &[f32], dout: &[f32], dx0: &[f32]) -> Vec<Vec<f32>> {
    let (rows, c) = (13, 100);
    let (xb, pb) = (up(be, x), up(be, p));
    let (mut out, mut stats) = (be.alloc(rows * c).unwrap(), be.alloc(2 * rows).unwrap());
    be.layernorm_fwd(&mut out, &mut stats, &xb, &pb, 2, 2 + c, rows, c);
    let (mut dx, mut g) = (up(be, dx0), up(be, p));
    be.layernorm_bwd(
        &mut dx,
        &mut g,
        2,
        2 + c,
        &up(be, dout),
        &xb,
        &pb,
        &stats,
        rows,
        c,
    );
    vec![
        down(be, &out),
        down(be, &stats),
        down(be, &dx),
        down(be, &g),
    ]
}

#[test]
fn layernorm_fwd_and_bwd() {
    let Some(gpu) = gpu(false) else { return };
    let (rows, c) = (13, 100); // c not a multiple of 32
    let x: Vec<f32> = rnd(9, rows * c, 2.0).iter().map(|v| v + 0.5).collect();
    let p = rnd(10, 2 * c + 4, 1.0);
    let (dout, dx0) = (rnd(11, rows * c, 1.0), rnd(12, rows * c, 1.0));
    let want = layernorm(&Cpu::new(1), &x, &p, &dout, &dx0);
    let got = layernorm(&*gpu, &x, &p, &dout, &dx0);
    // 100-term mean/variance in another order: ~sqrt(100)·u relative, amplified by rstd
    close("layernorm out", &got[0], &want[0], 1e-5);
    close("layernorm stats", &got[1], &want[1], 1e-5);
    // dx subtracts two row means from d·w (cancellation): 1e-4 of the O(1) terms
    close("layernorm dx", &got[2], &want[2], 1e-4);
    close("layernorm dw, db", &got[3], &want[3], 1e-4);
}

// ---------------------------------------------------------------- softmax and loss

fn softmax<B: Backend>(be: &B, s: &[f32], dp: &[f32], n: usize, t: usize) -> Vec<Vec<f32>> {
    let mut att = up(be, s);
    be.softmax_causal_fwd(&mut att, n, t, 0.3);
    let mut d = up(be, dp);
    be.softmax_causal_bwd(&mut d, &att, n, t, 0.3);
    vec![down(be, &att), down(be, &d)]
}

#[test]
fn softmax_causal_fwd_and_bwd() {
    let Some(gpu) = gpu(false) else { return };
    let (n, t) = (6, 37); // rows longer than a warp
    let (s, dp) = (rnd(13, n * t * t, 8.0), rnd(14, n * t * t, 1.0));
    let want = softmax(&Cpu::new(1), &s, &dp, n, t);
    let got = softmax(&*gpu, &s, &dp, n, t);
    // probabilities <= 1 and their gradients: expf and up-to-37-term sums
    close("softmax_causal_fwd", &got[0], &want[0], 1e-5);
    close("softmax_causal_bwd", &got[1], &want[1], 1e-5);
}

fn xent<B: Backend>(be: &B, logits: &[f32], tg: &[u32], rows: usize, v: usize) -> Vec<Vec<f32>> {
    let (mut lb, tb) = (up(be, logits), up_ids(be, tg));
    let mut losses = be.alloc(rows).unwrap();
    be.crossentropy_fwd(&mut losses, &lb, &tb, rows, v);
    be.crossentropy_bwd(&mut lb, &tb, rows, v, 1.0 / rows as f32);
    vec![down(be, &losses), down(be, &lb)]
}

#[test]
fn crossentropy_fwd_and_bwd() {
    let Some(gpu) = gpu(false) else { return };
    let (rows, v) = (9, 1000); // v above the block size and not a multiple of it
    let (logits, tg) = (rnd(15, rows * v, 5.0), rnd_ids(16, rows, v as u32));
    let want = xent(&Cpu::new(1), &logits, &tg, rows, v);
    let got = xent(&*gpu, &logits, &tg, rows, v);
    // a 1000-term exp sum in another order: ~sqrt(1000)·u ≈ 2e-6 relative
    close("crossentropy_fwd", &got[0], &want[0], 1e-5);
    close("crossentropy_bwd", &got[1], &want[1], 1e-5);
}

// ---------------------------------------------------------------- layers

/// in: (19, 40), out: (19, 24); W at offset 3 of the unit, then b.
const LIN: Linear = Linear {
    w: 3,
    b: 3 + 40 * 24,
    din: 40,
    dout: 24,
};

fn linear<B: Backend>(be: &B, x: &[f32], p: &[f32], r: &[f32], dy: &[f32]) -> Vec<Vec<f32>> {
    let n = 19;
    let (xb, pb, rb, dyb) = (up(be, x), up(be, p), up(be, r), up(be, dy));
    let mut out = be.alloc(n * LIN.dout).unwrap();
    LIN.forward(be, &mut out, &xb, &pb, n, Some(&rb));
    let (mut dx_acc, mut dx, mut g) = (up(be, x), be.alloc(n * LIN.din).unwrap(), up(be, p));
    LIN.backward(be, Some((&mut dx_acc, true)), &mut g, &dyb, &xb, &pb, n);
    LIN.backward(be, Some((&mut dx, false)), &mut g, &dyb, &xb, &pb, n);
    vec![
        down(be, &out),
        down(be, &dx_acc),
        down(be, &dx),
        down(be, &g),
    ]
}

#[test]
fn linear_fwd_and_bwd() {
    let Some(gpu) = gpu(false) else { return };
    let n = 19;
    let x = rnd(17, n * LIN.din, 1.0);
    let p = rnd(18, LIN.b + LIN.dout, 1.0);
    let (r, dy) = (rnd(19, n * LIN.dout, 1.0), rnd(20, n * LIN.dout, 1.0));
    let want = linear(&Cpu::new(1), &x, &p, &r, &dy);
    let got = linear(&*gpu, &x, &p, &r, &dy);
    // fp32 GEMMs with k <= 40 on O(1) inputs: entries O(sqrt(k)), errors ~sqrt(k)·u·k;
    // 1e-5 of (1 + |value|) covers that with margin
    for (i, what) in ["out", "dx accumulated", "dx", "dW db"].iter().enumerate() {
        close(&format!("linear {what}"), &got[i], &want[i], 1e-5);
    }
}

fn attn<B: Backend>(be: &B, qkv: &[f32], dy: &[f32], d: Dims) -> Vec<Vec<f32>> {
    let (n, bh) = (d.b * d.t, d.b * d.h * d.t * d.t);
    let qb = up(be, qkv);
    let (mut y, mut att) = (be.alloc(n * d.c).unwrap(), be.alloc(bh).unwrap());
    let mut heads = attention::Heads::new(be, n, d.c).unwrap();
    attention::forward(be, &mut y, &mut att, &qb, &mut heads, d);
    let (mut dqkv, mut datt) = (be.alloc(3 * n * d.c).unwrap(), be.alloc(bh).unwrap());
    let dyb = up(be, dy);
    attention::backward(be, &mut dqkv, &mut datt, &dyb, &att, &qb, &mut heads, d);
    vec![down(be, &y), down(be, &att), down(be, &dqkv)]
}

#[test]
fn attention_fwd_and_bwd() {
    let Some(gpu) = gpu(false) else { return };
    let d = Dims {
        b: 2,
        t: 37,
        c: 32,
        h: 4,
    };
    let qkv = rnd(21, d.b * d.t * 3 * d.c, 1.0);
    let dy = rnd(22, d.b * d.t * d.c, 1.0);
    let want = attn(&Cpu::new(1), &qkv, &dy, d);
    let got = attn(&*gpu, &qkv, &dy, d);
    // GEMMs of k <= 37 around a softmax: a few 1e-6 relative on O(1) values
    close("attention y", &got[0], &want[0], 2e-5);
    close("attention probabilities", &got[1], &want[1], 2e-5);
    close("attention dqkv", &got[2], &want[2], 2e-5);
}

// ---------------------------------------------------------------- whole models

fn gpt_cfg() -> ModelConfig {
    ModelConfig {
        kind: ModelKind::Gpt,
        n_layer: 2,
        n_head: 4,
        d_model: 64,
        ctx: 32,
        vocab: 101,
        ..ModelConfig::default()
    }
}

fn mlp_cfg() -> ModelConfig {
    ModelConfig {
        kind: ModelKind::Mlp,
        inputs: 20,
        hidden: vec![48, 32],
        classes: 7,
        ..ModelConfig::default()
    }
}

fn gpt_batch() -> Batch {
    let (b, t) = (3, 32);
    let toks = rnd_ids(30, b * t + 1, 101);
    Batch::Tokens {
        b,
        t,
        inputs: toks[..b * t].to_vec(),
        targets: toks[1..].to_vec(),
    }
}

fn mlp_batch() -> Batch {
    let b = 4;
    Batch::Features {
        b,
        d: 20,
        x: rnd(31, b * 20, 2.0),
        y: rnd_ids(32, b, 7),
    }
}

/// One training step from the same initial parameters: the loss, every unit's gradient,
/// and the loss after an SGD update (params -= 0.1 grads, on the device).
fn train_step<B: Backend + 'static>(
    be: Arc<B>,
    cfg: &ModelConfig,
    batch: &Batch,
) -> (f32, Vec<Vec<f32>>, f32) {
    let mut model: Box<dyn Model<B>> = build_model(cfg, 4, be.clone()).unwrap();
    model.set_batch(batch).unwrap();
    let mut st = LocalState::new(&*be, &*model, 7).unwrap();
    let loss0 = st.forward(&mut *model).unwrap();
    st.backward(&*be, &mut *model).unwrap();
    let grads = st.grads.iter().map(|g| down(&*be, g)).collect();
    for (p, g) in st.params.iter_mut().zip(&st.grads) {
        let n = be.len(p);
        be.axpy(p, 0, -0.1, g, 0, n);
    }
    let loss1 = st.forward(&mut *model).unwrap();
    be.sync().unwrap();
    (loss0, grads, loss1)
}

/// CPU and CUDA steps agree: losses within `tol_loss` relative, each unit's gradient
/// within `tol_grad` of that unit's largest gradient magnitude.
fn model_conformance(cfg: &ModelConfig, batch: &Batch, tf32: bool, tol_loss: f32, tol_grad: f32) {
    let Some(gpu) = gpu(tf32) else { return };
    let (l0, g, l1) = train_step(Arc::new(Cpu::new(1)), cfg, batch);
    let (m0, h, m1) = train_step(gpu, cfg, batch);
    eprintln!("loss cpu {l0} -> {l1}, cuda {m0} -> {m1}");
    assert!(l1 < l0, "the SGD step lowers the loss on the CPU");
    close("loss", &[m0], &[l0], tol_loss);
    close("loss after one step", &[m1], &[l1], tol_loss);
    for (u, (got, want)) in h.iter().zip(&g).enumerate() {
        let max = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        within(
            &format!("unit {u} grads"),
            got,
            want,
            &vec![max; want.len()],
            tol_grad,
        );
    }
}

// Full fp32: every op agrees to ~1e-6 relative (above); through 2 blocks, LayerNorm and
// the loss this stays below 1e-5 on the loss and 1e-4 of each unit's largest gradient.
#[test]
fn gpt_step_fp32_matches_cpu() {
    model_conformance(&gpt_cfg(), &gpt_batch(), false, 1e-5, 1e-4);
}

// TF32 GEMMs (~1e-3 relative per product) through the same path: 1e-3 on the loss and
// 2e-2 of each unit's largest gradient; a wrong kernel is off by O(1) of that.
#[test]
fn gpt_step_tf32_matches_cpu() {
    model_conformance(&gpt_cfg(), &gpt_batch(), true, 1e-3, 2e-2);
}

// The MLP path (linear + ReLU + cross-entropy) in full fp32.
#[test]
fn mlp_step_fp32_matches_cpu() {
    model_conformance(&mlp_cfg(), &mlp_batch(), false, 1e-5, 1e-4);
}

#[test]
fn no_device_allocation_in_steady_state() {
    let Some(gpu) = gpu(true) else { return };
    let cfg = gpt_cfg();
    let mut model = build_model(&cfg, 4, gpu.clone()).unwrap();
    model.set_batch(&gpt_batch()).unwrap();
    let mut st = LocalState::new(&*gpu, &*model, 7).unwrap();
    st.forward(&mut *model).unwrap();
    st.backward(&*gpu, &mut *model).unwrap();
    gpu.sync().unwrap();
    let after_first = gpu.mem_stats();
    for _ in 0..2 {
        st.forward(&mut *model).unwrap();
        st.backward(&*gpu, &mut *model).unwrap();
    }
    gpu.sync().unwrap();
    let now = gpu.mem_stats();
    assert_eq!(
        now.allocs, after_first.allocs,
        "no device allocation after the first step"
    );
    assert_eq!(now.device_bytes, after_first.device_bytes);
    assert!(now.device_bytes > 0 && now.device_peak >= now.device_bytes);
}
