//! Building blocks for the CPU kernels: run-time dispatch to AVX-512 or AVX2 builds of a
//! plain Rust loop, a branch-free `exp` the compiler can vectorise, and reductions with
//! one accumulator per vector lane (float sums do not vectorise otherwise, as the
//! compiler may not reorder them).
//!
//! The crate is compiled for baseline x86-64 (SSE2); [`multiversion!`] compiles a kernel
//! body two more times with wider vector features enabled and picks the best build the
//! CPU supports at run time (the feature check is a cached atomic load).

/// Lanes of the per-lane accumulators: one AVX-512 register of f32.
pub const LANES: usize = 16;

/// Defines `fn name(args)` whose body is compiled for AVX-512, AVX2+FMA and the baseline,
/// and dispatches at run time. Arguments must be plain identifiers with types.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                if $crate::device::cpu::simd::has_avx512() {
                    // SAFETY: the CPU supports every feature avx512() was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if $crate::device::cpu::simd::has_avx2() {
                    // SAFETY: the CPU supports every feature avx2() was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// Whether the AVX-512 build of a kernel may run here.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn has_avx512() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vl")
        && std::is_x86_feature_detected!("avx512dq")
        && has_avx2()
}

/// Whether the AVX2 build of a kernel may run here.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn has_avx2() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// e^x without branches (so loops over it vectorise): x = n ln2 + r with |r| <= ln2/2,
/// e^r from Cephes' degree-7 polynomial, 2^n built in the exponent bits. Relative error
/// about 2e-7 over the clamped range [-87.3, 88.3]; inputs below it give ~1e-38 instead
/// of a denormal or 0, inputs above give ~2e38 instead of overflowing.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let t = x.mul_add(LOG2E, MAGIC);
    let n = t - MAGIC;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_2e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let er = p.mul_add(r * r, r) + 1.0;
    // t's low bits hold n (two's complement); shifting them into the exponent field
    // drops the magic's bits.
    let pow2 = f32::from_bits((t.to_bits().wrapping_add(127)) << 23);
    er * pow2
}

/// Sum of the lanes of an accumulator.
#[inline(always)]
fn hsum(acc: [f32; LANES]) -> f32 {
    let mut h = [0.0f32; LANES / 2];
    for (i, v) in h.iter_mut().enumerate() {
        *v = acc[i] + acc[i + LANES / 2];
    }
    h.iter().sum()
}

/// Σ f(x[i]) with per-lane accumulators.
#[inline(always)]
pub fn sum_map(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut ch = x.chunks_exact(LANES);
    for c in &mut ch {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    let tail: f32 = ch.remainder().iter().map(|&v| f(v)).sum();
    hsum(acc) + tail
}

/// Σ f(a[i], b[i]) with per-lane accumulators (a and b the same length).
#[inline(always)]
pub fn sum_map2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for ((s, &u), &v) in acc.iter_mut().zip(x).zip(y) {
            *s += f(u, v);
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&u, &v)| f(u, v))
        .sum();
    hsum(acc) + tail
}

/// max of x (−inf when empty), per-lane.
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut ch = x.chunks_exact(LANES);
    for c in &mut ch {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    let m = ch
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    acc.iter().fold(m, |m, &v| m.max(v))
}

/// In place x = e^{(x - shift) * scale}; returns the sum of the new values.
#[inline(always)]
pub fn exp_inplace_sum(x: &mut [f32], shift: f32, scale: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut ch = x.chunks_exact_mut(LANES);
    for c in &mut ch {
        for (a, v) in acc.iter_mut().zip(c.iter_mut()) {
            *v = exp((*v - shift) * scale);
            *a += *v;
        }
    }
    let mut tail = 0.0;
    for v in ch.into_remainder() {
        *v = exp((*v - shift) * scale);
        tail += *v;
    }
    hsum(acc) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((a - b) / b).abs());
            x += 0.0137;
        }
        assert!(worst < 1e-6, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37 && exp(1000.0) > 1e38);
    }

    #[test]
    fn reductions() {
        let x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let s: f32 = x.iter().sum();
        assert!((sum_map(&x, |v| v) - s).abs() < 1e-5);
        let d: f32 = x.iter().map(|v| v * v).sum();
        assert!((sum_map2(&x, &x, |a, b| a * b) - d).abs() < 1e-5);
        assert_eq!(max(&x), x.iter().cloned().fold(f32::NEG_INFINITY, f32::max));
        assert_eq!(max(&[]), f32::NEG_INFINITY);
    }
}
