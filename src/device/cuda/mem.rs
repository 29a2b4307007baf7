//! Device buffers and the per-backend count of device memory they hold.
use crate::config::DType;
use cudarc::driver::CudaSlice;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes held by a backend's live buffers, their high-water mark and the number of
/// allocations made (a steady-state step must not add to it).
#[derive(Debug, Default)]
pub struct DeviceMemCounter {
    bytes: AtomicUsize,
    peak: AtomicUsize,
    allocs: AtomicUsize,
}

/// A snapshot of a [`DeviceMemCounter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemStats {
    /// Bytes held by live buffers now.
    pub device_bytes: usize,
    /// Highest `device_bytes` seen.
    pub device_peak: usize,
    /// Device allocations made so far.
    pub allocs: usize,
}

impl DeviceMemCounter {
    pub(super) fn add(&self, bytes: usize) {
        let now = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
        self.allocs.fetch_add(1, Ordering::Relaxed);
    }
    fn sub(&self, bytes: usize) {
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
    /// The current figures.
    pub fn stats(&self) -> MemStats {
        MemStats {
            device_bytes: self.bytes.load(Ordering::Relaxed),
            device_peak: self.peak.load(Ordering::Relaxed),
            allocs: self.allocs.load(Ordering::Relaxed),
        }
    }
}

/// A device slice of `len` elements, counted against its backend's [`DeviceMemCounter`] until
/// dropped. The slice holds at least one element (the driver rejects empty allocations),
/// so `len` is the length callers see.
#[derive(Debug)]
pub struct Counted<T> {
    pub(super) s: CudaSlice<T>,
    pub(super) len: usize,
    counter: Arc<DeviceMemCounter>,
    bytes: usize,
}

impl<T> Counted<T> {
    pub(super) fn new(s: CudaSlice<T>, len: usize, counter: &Arc<DeviceMemCounter>) -> Self {
        let bytes = s.num_bytes();
        counter.add(bytes);
        Counted {
            s,
            len,
            counter: counter.clone(),
            bytes,
        }
    }
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        self.counter.sub(self.bytes);
    }
}

/// A device buffer of f32.
pub type CudaBuf = Counted<f32>;
/// A device buffer of u32 indices.
pub type CudaIds = Counted<u32>;

/// A device buffer of one dtype (`Backend::Mem`): `len` elements kept as raw bytes
/// (f32 values, or the bits of bf16 or fp16 values), which the conversion kernels
/// (kernels/convert.cu) read and write by dtype.
#[derive(Debug)]
pub struct CudaMem {
    /// `len * dtype.bytes()` bytes (`bytes.len`).
    pub(super) bytes: Counted<u8>,
    pub(super) dtype: DType,
}

impl CudaMem {
    /// Number of elements.
    pub(super) fn len(&self) -> usize {
        self.bytes.len / self.dtype.bytes()
    }
}

/// The dtype code the kernels in kernels/convert.cu take (`DT_F32`, `DT_BF16`, `DT_F16`).
pub(super) fn dtype_code(dtype: DType) -> i32 {
    match dtype {
        DType::Fp32 => 0,
        DType::Bf16 => 1,
        DType::Fp16 => 2,
    }
}
