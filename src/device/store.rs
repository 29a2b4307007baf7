//! Typed host storage: a flat vector of f32, bf16 or fp16. The CPU backend keeps model
//! states in it, and device transports stage through it; values are converted to f32
//! only where a kernel computes.
use crate::config::DType;
use half::{bf16, f16};
use std::ops::Range;

/// A flat host buffer of one dtype.
#[derive(Debug, Clone, PartialEq)]
pub enum Store {
    F32(Vec<f32>),
    Bf16(Vec<bf16>),
    F16(Vec<f16>),
}

/// Runs `$body` with `$v` bound to the typed vector inside a `Store` (shared or mutable).
#[macro_export]
macro_rules! with_store {
    ($store:expr, $v:ident => $body:expr) => {
        match $store {
            $crate::device::Store::F32($v) => $body,
            $crate::device::Store::Bf16($v) => $body,
            $crate::device::Store::F16($v) => $body,
        }
    };
}

impl Store {
    pub fn zeros(dtype: DType, len: usize) -> Store {
        match dtype {
            DType::Fp32 => Store::F32(vec![0.0; len]),
            DType::Bf16 => Store::Bf16(vec![bf16::ZERO; len]),
            DType::Fp16 => Store::F16(vec![f16::ZERO; len]),
        }
    }
    pub fn dtype(&self) -> DType {
        match self {
            Store::F32(_) => DType::Fp32,
            Store::Bf16(_) => DType::Bf16,
            Store::F16(_) => DType::Fp16,
        }
    }
    pub fn len(&self) -> usize {
        with_store!(self, v => v.len())
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn bytes(&self) -> usize {
        self.len() * self.dtype().bytes()
    }
    /// `out[i] = self[range.start + i]` as f32.
    pub fn read_f32(&self, range: Range<usize>, out: &mut [f32]) {
        match self {
            Store::F32(v) => out.copy_from_slice(&v[range]),
            Store::Bf16(v) => v[range].iter().zip(out).for_each(|(s, o)| *o = s.to_f32()),
            Store::F16(v) => v[range].iter().zip(out).for_each(|(s, o)| *o = s.to_f32()),
        }
    }
    /// `self[start + i] = src[i]`, rounded to the dtype.
    pub fn write_f32(&mut self, start: usize, src: &[f32]) {
        let end = start + src.len();
        match self {
            Store::F32(v) => v[start..end].copy_from_slice(src),
            Store::Bf16(v) => v[start..end]
                .iter_mut()
                .zip(src)
                .for_each(|(d, s)| *d = bf16::from_f32(*s)),
            Store::F16(v) => v[start..end]
                .iter_mut()
                .zip(src)
                .for_each(|(d, s)| *d = f16::from_f32(*s)),
        }
    }
    /// `self[start + i] += src[i]` (the sum rounded once to the dtype).
    pub fn add_f32(&mut self, start: usize, src: &[f32]) {
        let end = start + src.len();
        match self {
            Store::F32(v) => v[start..end]
                .iter_mut()
                .zip(src)
                .for_each(|(d, s)| *d += *s),
            Store::Bf16(v) => v[start..end]
                .iter_mut()
                .zip(src)
                .for_each(|(d, s)| *d = bf16::from_f32(d.to_f32() + *s)),
            Store::F16(v) => v[start..end]
                .iter_mut()
                .zip(src)
                .for_each(|(d, s)| *d = f16::from_f32(d.to_f32() + *s)),
        }
    }
    /// Copies `src[range]` of another store (any dtype) to `self[start..]`.
    pub fn copy_from(&mut self, start: usize, src: &Store, range: Range<usize>) {
        match (self, src) {
            (Store::F32(d), Store::F32(s)) => {
                d[start..start + range.len()].copy_from_slice(&s[range])
            }
            (Store::Bf16(d), Store::Bf16(s)) => {
                d[start..start + range.len()].copy_from_slice(&s[range])
            }
            (Store::F16(d), Store::F16(s)) => {
                d[start..start + range.len()].copy_from_slice(&s[range])
            }
            // Mixed dtypes go through f32.
            (d, s) => s.for_f32_chunks(range, |i, chunk| d.write_f32(start + i, chunk)),
        }
    }
    /// `self[start + i] += src[range][i]` for a store of any dtype (through f32 chunks).
    pub fn add_from(&mut self, start: usize, src: &Store, range: Range<usize>) {
        src.for_f32_chunks(range, |i, chunk| self.add_f32(start + i, chunk));
    }
    /// Calls `f(i, chunk)` over `self[range]` read as f32 in chunks on the stack (no
    /// allocation), `i` being the chunk's offset from `range.start`.
    fn for_f32_chunks(&self, range: Range<usize>, mut f: impl FnMut(usize, &[f32])) {
        let mut tmp = [0f32; 256];
        let mut at = range.start;
        while at < range.end {
            let n = (range.end - at).min(tmp.len());
            self.read_f32(at..at + n, &mut tmp[..n]);
            f(at - range.start, &tmp[..n]);
            at += n;
        }
    }
    /// Sets the length to `len`, zero-filling growth; never reallocates within capacity,
    /// so buffers sized once for the largest use are reused without allocation.
    pub fn set_len(&mut self, len: usize) {
        match self {
            Store::F32(v) => v.resize(len, 0.0),
            Store::Bf16(v) => v.resize(len, bf16::ZERO),
            Store::F16(v) => v.resize(len, f16::ZERO),
        }
    }
    /// `self[range] = v`, rounded to the dtype.
    pub fn fill(&mut self, range: Range<usize>, v: f32) {
        match self {
            Store::F32(x) => x[range].fill(v),
            Store::Bf16(x) => x[range].fill(bf16::from_f32(v)),
            Store::F16(x) => x[range].fill(f16::from_f32(v)),
        }
    }
    /// Reserves room for `extra` more elements, or says why the host cannot.
    pub fn try_reserve(&mut self, extra: usize) -> Result<(), std::collections::TryReserveError> {
        with_store!(self, v => v.try_reserve_exact(extra))
    }
    /// The bytes of `self[range]` (each element's native bits), for copies to a device.
    pub fn bytes_of(&self, range: Range<usize>) -> &[u8] {
        with_store!(self, v => bytemuck::cast_slice(&v[range]))
    }
    /// The bytes of `self[range]`, mutable, for copies from a device.
    pub fn bytes_of_mut(&mut self, range: Range<usize>) -> &mut [u8] {
        with_store!(self, v => bytemuck::cast_slice_mut(&mut v[range]))
    }
    /// The first byte of the elements, for handing to a communication library.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        with_store!(self, v => v.as_mut_ptr() as *mut u8)
    }
    pub fn fill_zero(&mut self) {
        match self {
            Store::F32(v) => v.fill(0.0),
            Store::Bf16(v) => v.fill(bf16::ZERO),
            Store::F16(v) => v.fill(f16::ZERO),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_round_trip_and_add() {
        for dt in [DType::Fp32, DType::Bf16, DType::Fp16] {
            let mut s = Store::zeros(dt, 4);
            s.write_f32(1, &[1.0, 2.5]);
            s.add_f32(1, &[1.0, 0.5]);
            let mut out = [0.0; 4];
            s.read_f32(0..4, &mut out);
            assert_eq!(out, [0.0, 2.0, 3.0, 0.0], "{dt:?}");
            assert_eq!(s.bytes(), 4 * dt.bytes());
            assert_eq!(s.bytes_of(1..3).len(), 2 * dt.bytes());
            let mut t = Store::zeros(dt, 3);
            t.bytes_of_mut(1..3).copy_from_slice(s.bytes_of(1..3));
            t.read_f32(0..3, &mut out[..3]);
            assert_eq!(out[..3], [0.0, 2.0, 3.0], "{dt:?} bytes");
            let mut f = Store::zeros(DType::Fp32, 2);
            f.copy_from(0, &s, 1..3);
            assert_eq!(f, Store::F32(vec![2.0, 3.0]));
        }
    }
}
