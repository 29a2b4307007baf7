//! Typed memory on the device ([`CudaMem`], the backend's `Mem`): allocation, conversion
//! between dtypes, adds summed in f32, fills and counted copies to and from host
//! [`Store`]s. One conversion kernel serves every pair of dtypes, f32 buffers included.
use super::mem::{dtype_code, Counted, CudaMem};
use super::{grid1, u, Cuda, CudaBuf};
use crate::config::DType;
use crate::device::Store;
use cudarc::driver::{CudaView, CudaViewMut, DeviceRepr, PushKernelArg};

/// Device memory the typed operations take: a [`CudaMem`] or an f32 [`CudaBuf`], viewed
/// as elements `off..off + len` of its dtype (the kernels only see the address).
pub(super) trait Elems {
    type E: DeviceRepr;
    fn dtype(&self) -> DType;
    fn view(&self, off: usize, len: usize) -> CudaView<'_, Self::E>;
    fn view_mut(&mut self, off: usize, len: usize) -> CudaViewMut<'_, Self::E>;
}

impl Elems for CudaMem {
    type E = u8;
    fn dtype(&self) -> DType {
        self.dtype
    }
    fn view(&self, off: usize, len: usize) -> CudaView<'_, u8> {
        let b = self.dtype.bytes();
        self.bytes.s.slice(off * b..(off + len) * b)
    }
    fn view_mut(&mut self, off: usize, len: usize) -> CudaViewMut<'_, u8> {
        let b = self.dtype.bytes();
        self.bytes.s.slice_mut(off * b..(off + len) * b)
    }
}

impl Elems for CudaBuf {
    type E = f32;
    fn dtype(&self) -> DType {
        DType::Fp32
    }
    fn view(&self, off: usize, len: usize) -> CudaView<'_, f32> {
        self.s.slice(off..off + len)
    }
    fn view_mut(&mut self, off: usize, len: usize) -> CudaViewMut<'_, f32> {
        self.s.slice_mut(off..off + len)
    }
}

impl Cuda {
    /// A zero-filled buffer of `len` elements of `dtype` (all-zero bits are +0 in each).
    pub(super) fn alloc_typed(&self, dtype: DType, len: usize) -> anyhow::Result<CudaMem> {
        let bytes = len * dtype.bytes();
        let s = self.stream.alloc_zeros::<u8>(bytes.max(1)).map_err(|e| {
            anyhow::anyhow!("cannot allocate {len} {} on the device: {e}", dtype.name())
        })?;
        Ok(CudaMem {
            bytes: Counted::new(s, bytes, &self.mem),
            dtype,
        })
    }

    /// `dst[doff + i] = src[soff + i]` for `i < len`, rounded to dst's dtype (a plain move
    /// when the dtypes match: f32 loads and stores keep every bit).
    pub(super) fn convert<D: Elems, S: Elems>(
        &self,
        dst: &mut D,
        doff: usize,
        src: &S,
        soff: usize,
        len: usize,
    ) {
        if len == 0 {
            return;
        }
        let (dd, sd) = (dtype_code(dst.dtype()), dtype_code(src.dtype()));
        let (mut dv, sv, n) = (dst.view_mut(doff, len), src.view(soff, len), u(len));
        launch!(self, mem_convert, grid1(len), &mut dv, &dd, &sv, &sd, &n);
    }

    /// As [`Cuda::convert`] between typed buffers, except that the same dtype copies the
    /// bits as they are (a bf16 or fp16 NaN keeps its payload).
    pub(super) fn copy_typed(
        &self,
        dst: &mut CudaMem,
        doff: usize,
        src: &CudaMem,
        soff: usize,
        len: usize,
    ) {
        if dst.dtype != src.dtype {
            return self.convert(dst, doff, src, soff, len);
        }
        if len == 0 {
            return;
        }
        let (sv, mut dv) = (src.view(soff, len), dst.view_mut(doff, len));
        let r = self.stream.memcpy_dtod(&sv, &mut dv);
        self.record("mem_copy", r);
    }

    /// `dst[doff + i] += src[soff + i]`, summed in f32 and rounded once to dst's dtype.
    pub(super) fn add_typed<S: Elems>(
        &self,
        dst: &mut CudaMem,
        doff: usize,
        src: &S,
        soff: usize,
        len: usize,
    ) {
        if len == 0 {
            return;
        }
        let (dd, sd) = (dtype_code(dst.dtype), dtype_code(src.dtype()));
        let (mut dv, sv, n) = (dst.view_mut(doff, len), src.view(soff, len), u(len));
        launch!(self, mem_add, grid1(len), &mut dv, &dd, &sv, &sd, &n);
    }

    /// `m[off..off + len] = v` rounded to m's dtype.
    pub(super) fn fill_typed(&self, m: &mut CudaMem, off: usize, len: usize, v: f32) {
        if len == 0 {
            return;
        }
        let dt = dtype_code(m.dtype);
        let (mut mv, n) = (m.view_mut(off, len), u(len));
        launch!(self, mem_fill, grid1(len), &mut mv, &dt, &n, &v);
    }

    /// Device -> host: `dst[doff..doff + len] = src[soff..]`, the same dtype (waits; NaN
    /// everywhere after a failure, which the next `sync` reports).
    pub(super) fn download_typed(
        &self,
        src: &CudaMem,
        soff: usize,
        dst: &mut Store,
        doff: usize,
        len: usize,
    ) {
        same_dtype("download_mem", src.dtype, dst.dtype());
        let out = dst.bytes_of_mut(doff..doff + len);
        self.transfers.d2h(out.len());
        if len == 0 {
            return;
        }
        let r = self.stream.memcpy_dtoh(&src.view(soff, len), out);
        let ok = self.record("download_mem", r).is_some()
            && self
                .record("download_mem", self.stream.synchronize())
                .is_some();
        if !ok {
            out.fill(0xff); // all-ones bits are NaN in every dtype
        }
    }

    /// Host -> device: `dst[doff..doff + len] = src[soff..]`, the same dtype (enqueued).
    pub(super) fn upload_typed(
        &self,
        dst: &mut CudaMem,
        doff: usize,
        src: &Store,
        soff: usize,
        len: usize,
    ) {
        same_dtype("upload_mem", dst.dtype, src.dtype());
        let bytes = src.bytes_of(soff..soff + len);
        self.transfers.h2d(bytes.len());
        if len == 0 {
            return;
        }
        let r = self.stream.memcpy_htod(bytes, &mut dst.view_mut(doff, len));
        self.record("upload_mem", r);
    }
}

/// Host copies move bits and never convert: a dtype mismatch is an engine bug.
fn same_dtype(what: &str, device: DType, host: DType) {
    assert_eq!(
        device, host,
        "internal error: {what} between {device:?} device memory and a {host:?} host store"
    );
}
