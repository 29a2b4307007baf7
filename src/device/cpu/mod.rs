//! The CPU backend: host vectors as buffers, kernels run at once on the calling thread,
//! matrix products through OpenBLAS with a configurable thread count.
//!
//! The same kernels also make the simulated device (`Cpu::sim`, `system.device = "sim"`),
//! a test instrument and debugging aid: its memory is treated as device memory the host
//! may not read (no host views, `host_resident` false), so the engine must reach it
//! through explicit, counted copies or hand it to a device-aware transport, exactly as
//! on a GPU. It runs the engine's GPU data path in CI, where there is no GPU. It also
//! checks the one ordering rule a GPU imposes that a synchronous CPU would hide: memory
//! handed to a device-aware transport (`mem_ptr`, `buf_ptr`) while kernels or uploads are
//! still queued, i.e. without a `sync` since they were issued, is an error that the next
//! `sync` reports (downloads wait for queued work, as a CUDA copy to the host does).
mod blas;
pub use blas::check_room as check_blas_room;
pub use norm::EPS as LAYERNORM_EPS;
mod elementwise;
mod embed;
mod heads;
mod norm;
mod simd;
mod softmax;

use super::{Backend, Gemm, Store, TransferCounter, Transfers};
use crate::config::DType;
use crate::optim::{StepHyper, UpdateRule};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// A host buffer of f32.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuBuf(Vec<f32>);

/// A host buffer of u32 indices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuIds(Vec<u32>);

/// A host buffer of one dtype (model states, communication buffers).
#[derive(Debug, Clone, PartialEq)]
pub struct CpuMem(Store);

/// The CPU backend (or, with `sim`, the simulated device).
#[derive(Debug)]
pub struct Cpu {
    threads: usize,
    /// The simulated device: no host views, memory not host-resident.
    sim: bool,
    transfers: TransferCounter,
    /// Simulated device: kernels or uploads issued since the last wait (a GPU would still
    /// have them queued).
    queued: AtomicBool,
    /// The first error since the last `sync` (the simulated device's ordering check, or
    /// an engine bug a kernel met).
    err: Mutex<Option<String>>,
}

impl Cpu {
    /// A CPU backend whose matrix products use `threads` threads (at least 1). The BLAS
    /// thread count is process-wide: the last `Cpu` created sets it.
    pub fn new(threads: usize) -> Cpu {
        let threads = threads.max(1);
        blas::set_threads(threads);
        Cpu {
            threads,
            sim: false,
            transfers: TransferCounter::default(),
            queued: AtomicBool::new(false),
            err: Mutex::new(None),
        }
    }
    /// The simulated device on the CPU kernels (see the module documentation).
    pub fn sim(threads: usize) -> Cpu {
        Cpu {
            sim: true,
            ..Cpu::new(threads)
        }
    }
    /// Notes work a GPU would queue (simulated device only).
    fn enqueued(&self) {
        if self.sim {
            self.queued.store(true, Ordering::Relaxed);
        }
    }
    /// Notes that the host waited for all queued work.
    fn waited(&self) {
        self.queued.store(false, Ordering::Relaxed);
    }
    /// Keeps the first error since the last `sync`, for `sync` to report (kernels
    /// cannot return errors through the trait).
    fn fail(&self, msg: String) {
        let mut err = self.err.lock().unwrap_or_else(|e| e.into_inner());
        err.get_or_insert(msg);
    }
    /// Memory is handed to a transport: on the simulated device, queued work means a
    /// missing sync, kept for the next `sync` to report.
    fn handed_out(&self, what: &str) {
        if self.sim && self.queued.load(Ordering::Relaxed) {
            self.fail(format!("{what}: device memory handed to a transport with kernels still queued (a sync is missing before the collective)"));
        }
    }
    /// Threads used by matrix products.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

/// Two disjoint mutable tails of `s`, starting at `a` and at `b` (a != b); each ends where
/// the other begins or at the end of `s`.
fn split2(s: &mut [f32], a: usize, b: usize) -> (&mut [f32], &mut [f32]) {
    if a < b {
        let (lo, hi) = s.split_at_mut(b);
        (&mut lo[a..], hi)
    } else {
        let (lo, hi) = s.split_at_mut(a);
        (hi, &mut lo[b..])
    }
}

/// `len` zeroed elements, or an error (not an abort) when the host cannot hold them.
fn zeroed<T: Clone + Default>(len: usize, what: &str) -> anyhow::Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|e| anyhow::anyhow!("cannot allocate {len} {what} on the host: {e}"))?;
    v.resize(len, T::default());
    Ok(v)
}

impl Backend for Cpu {
    type Buf = CpuBuf;
    type Ids = CpuIds;
    type Mem = CpuMem;

    fn name(&self) -> &'static str {
        if self.sim {
            "sim"
        } else {
            "cpu"
        }
    }
    fn host_resident(&self) -> bool {
        !self.sim
    }
    fn transfers(&self) -> Transfers {
        self.transfers.get()
    }
    fn alloc(&self, len: usize) -> anyhow::Result<CpuBuf> {
        Ok(CpuBuf(zeroed(len, "f32")?))
    }
    fn len(&self, buf: &CpuBuf) -> usize {
        buf.0.len()
    }
    fn upload_at(&self, dst: &mut CpuBuf, offset: usize, src: &[f32]) {
        self.enqueued();
        self.transfers.h2d(std::mem::size_of_val(src));
        dst.0[offset..offset + src.len()].copy_from_slice(src);
    }
    fn download_at(&self, src: &CpuBuf, offset: usize, dst: &mut [f32]) {
        self.waited();
        self.transfers.d2h(std::mem::size_of_val(dst));
        dst.copy_from_slice(&src.0[offset..offset + dst.len()]);
    }
    fn host<'a>(&self, buf: &'a CpuBuf) -> Option<&'a [f32]> {
        (!self.sim).then_some(&buf.0[..])
    }
    fn host_mut<'a>(&self, buf: &'a mut CpuBuf) -> Option<&'a mut [f32]> {
        (!self.sim).then_some(&mut buf.0[..])
    }
    fn sync(&self) -> anyhow::Result<()> {
        self.waited();
        match self.err.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(e) => Err(anyhow::anyhow!(e)),
            None => Ok(()),
        }
    }

    fn alloc_mem(&self, dtype: DType, len: usize) -> anyhow::Result<CpuMem> {
        let mut s = Store::zeros(dtype, 0);
        s.try_reserve(len)
            .map_err(|e| anyhow::anyhow!("cannot allocate {len} {dtype:?} on the host: {e}"))?;
        s.set_len(len);
        Ok(CpuMem(s))
    }
    fn mem_len(&self, m: &CpuMem) -> usize {
        m.0.len()
    }
    fn mem_dtype(&self, m: &CpuMem) -> DType {
        m.0.dtype()
    }
    fn mem_copy(&self, dst: &mut CpuMem, doff: usize, src: &CpuMem, soff: usize, len: usize) {
        self.enqueued();
        dst.0.copy_from(doff, &src.0, soff..soff + len);
    }
    fn mem_add(&self, dst: &mut CpuMem, doff: usize, src: &CpuMem, soff: usize, len: usize) {
        self.enqueued();
        dst.0.add_from(doff, &src.0, soff..soff + len);
    }
    fn mem_to_f32(&self, dst: &mut CpuBuf, doff: usize, src: &CpuMem, soff: usize, len: usize) {
        self.enqueued();
        src.0
            .read_f32(soff..soff + len, &mut dst.0[doff..doff + len]);
    }
    fn mem_from_f32(&self, dst: &mut CpuMem, doff: usize, src: &CpuBuf, soff: usize, len: usize) {
        self.enqueued();
        dst.0.write_f32(doff, &src.0[soff..soff + len]);
    }
    fn mem_add_f32(&self, dst: &mut CpuMem, doff: usize, src: &CpuBuf, soff: usize, len: usize) {
        self.enqueued();
        dst.0.add_f32(doff, &src.0[soff..soff + len]);
    }
    fn mem_fill(&self, m: &mut CpuMem, off: usize, len: usize, v: f32) {
        self.enqueued();
        m.0.fill(off..off + len, v);
    }
    fn download_mem(&self, src: &CpuMem, soff: usize, dst: &mut Store, doff: usize, len: usize) {
        self.waited();
        self.transfers.d2h(len * src.0.dtype().bytes());
        dst.copy_from(doff, &src.0, soff..soff + len);
    }
    fn upload_mem(&self, dst: &mut CpuMem, doff: usize, src: &Store, soff: usize, len: usize) {
        self.enqueued();
        self.transfers.h2d(len * src.dtype().bytes());
        dst.0.copy_from(doff, src, soff..soff + len);
    }
    fn mem_ptr(&self, m: &mut CpuMem) -> *mut u8 {
        self.handed_out("mem_ptr");
        m.0.as_mut_ptr()
    }
    fn buf_ptr(&self, b: &mut CpuBuf) -> *mut f32 {
        self.handed_out("buf_ptr");
        b.0.as_mut_ptr()
    }

    fn sum_squares(&self, x: &CpuBuf, off: usize, len: usize) -> anyhow::Result<f64> {
        self.waited(); // the result is read on the host
        self.transfers.d2h(std::mem::size_of::<f64>());
        Ok(crate::optim::sum_squares(&x.0[off..off + len]))
    }
    fn optimizer_update(
        &self,
        rule: &UpdateRule,
        hp: &StepHyper,
        decay: bool,
        params: &mut CpuBuf,
        poff: usize,
        grads: &CpuBuf,
        goff: usize,
        states: &mut [CpuBuf],
        soff: usize,
        len: usize,
    ) {
        self.enqueued();
        let p = &mut params.0[poff..poff + len];
        let g = &grads.0[goff..goff + len];
        let s = soff..soff + len;
        let r = match states {
            [] => rule.apply(p, g, &mut [], decay, hp),
            [a] => rule.apply(p, g, &mut [&mut a.0[s]], decay, hp),
            [a, b] => rule.apply(p, g, &mut [&mut a.0[s.clone()], &mut b.0[s]], decay, hp),
            _ => Err(crate::optim::state_count_error(rule, states.len())),
        };
        if let Err(e) = r {
            self.fail(e);
        }
    }

    fn alloc_ids(&self, len: usize) -> anyhow::Result<CpuIds> {
        Ok(CpuIds(zeroed(len, "ids")?))
    }
    fn upload_ids(&self, dst: &mut CpuIds, src: &[u32]) {
        self.enqueued();
        self.transfers.h2d(std::mem::size_of_val(src));
        dst.0[..src.len()].copy_from_slice(src);
    }

    fn fill(&self, x: &mut CpuBuf, off: usize, len: usize, v: f32) {
        self.enqueued();
        x.0[off..off + len].fill(v);
    }
    fn scale(&self, x: &mut CpuBuf, off: usize, len: usize, a: f32) {
        self.enqueued();
        x.0[off..off + len].iter_mut().for_each(|v| *v *= a);
    }
    fn axpy(&self, y: &mut CpuBuf, yoff: usize, a: f32, x: &CpuBuf, xoff: usize, len: usize) {
        self.enqueued();
        let x = &x.0[xoff..xoff + len];
        for (y, x) in y.0[yoff..yoff + len].iter_mut().zip(x) {
            *y += a * x;
        }
    }
    fn copy(&self, dst: &mut CpuBuf, doff: usize, src: &CpuBuf, soff: usize, len: usize) {
        self.enqueued();
        dst.0[doff..doff + len].copy_from_slice(&src.0[soff..soff + len]);
    }
    fn gemm(&self, g: &Gemm, a: &CpuBuf, b: &CpuBuf, c: &mut CpuBuf) {
        self.enqueued();
        blas::sgemm(g, &a.0, &b.0, &mut c.0);
    }
    fn bias_residual(
        &self,
        out: &mut CpuBuf,
        rows: usize,
        cols: usize,
        bias: Option<(&CpuBuf, usize)>,
        resid: Option<&CpuBuf>,
    ) {
        let n = rows * cols;
        elementwise::bias_residual(
            &mut out.0[..n],
            cols,
            bias.map(|(b, off)| &b.0[off..off + cols]),
            resid.map(|r| &r.0[..n]),
        );
    }
    fn bias_residual_set(
        &self,
        out: &mut CpuBuf,
        rows: usize,
        cols: usize,
        bias: (&CpuBuf, usize),
        resid: Option<&CpuBuf>,
    ) {
        let n = rows * cols;
        let (b, off) = bias;
        elementwise::bias_residual_set(
            &mut out.0[..n],
            cols,
            &b.0[off..off + cols],
            resid.map(|r| &r.0[..n]),
        );
    }
    fn bias_bwd(&self, db: &mut CpuBuf, dboff: usize, dout: &CpuBuf, rows: usize, cols: usize) {
        elementwise::bias_bwd(&mut db.0[dboff..dboff + cols], &dout.0[..rows * cols], cols);
    }
    fn embedding_fwd(
        &self,
        out: &mut CpuBuf,
        ids: &CpuIds,
        params: &CpuBuf,
        wte_off: usize,
        wpe_off: usize,
        b: usize,
        t: usize,
        c: usize,
    ) {
        let n = b * t;
        embed::embedding_fwd(
            &mut out.0[..n * c],
            &ids.0[..n],
            &params.0[wte_off..],
            &params.0[wpe_off..wpe_off + t * c],
            t,
            c,
        );
    }
    fn embedding_bwd(
        &self,
        grads: &mut CpuBuf,
        wte_off: usize,
        wpe_off: usize,
        dout: &CpuBuf,
        ids: &CpuIds,
        b: usize,
        t: usize,
        c: usize,
    ) {
        let n = b * t;
        let (dwte, dwpe) = split2(&mut grads.0, wte_off, wpe_off);
        embed::embedding_bwd(dwte, dwpe, &dout.0[..n * c], &ids.0[..n], t, c);
    }
    fn layernorm_fwd(
        &self,
        out: &mut CpuBuf,
        stats: &mut CpuBuf,
        x: &CpuBuf,
        params: &CpuBuf,
        w_off: usize,
        b_off: usize,
        rows: usize,
        c: usize,
    ) {
        let (mean, rstd) = stats.0[..2 * rows].split_at_mut(rows);
        norm::layernorm_fwd(
            &mut out.0[..rows * c],
            mean,
            rstd,
            &x.0[..rows * c],
            &params.0[w_off..w_off + c],
            &params.0[b_off..b_off + c],
            c,
        );
    }
    fn layernorm_bwd(
        &self,
        dx: &mut CpuBuf,
        grads: &mut CpuBuf,
        w_off: usize,
        b_off: usize,
        dout: &CpuBuf,
        x: &CpuBuf,
        params: &CpuBuf,
        stats: &CpuBuf,
        rows: usize,
        c: usize,
    ) {
        let (mean, rstd) = stats.0[..2 * rows].split_at(rows);
        let (dw, db) = split2(&mut grads.0, w_off, b_off);
        norm::layernorm_bwd(
            &mut dx.0[..rows * c],
            dw,
            db,
            &dout.0[..rows * c],
            &x.0[..rows * c],
            &params.0[w_off..w_off + c],
            mean,
            rstd,
            c,
        );
    }
    fn gelu_fwd(&self, out: &mut CpuBuf, x: &CpuBuf, len: usize) {
        elementwise::gelu_fwd(&mut out.0[..len], &x.0[..len]);
    }
    fn gelu_bwd(&self, d: &mut CpuBuf, x: &CpuBuf, len: usize) {
        elementwise::gelu_bwd(&mut d.0[..len], &x.0[..len]);
    }
    fn relu_fwd(&self, x: &mut CpuBuf, len: usize) {
        elementwise::relu_fwd(&mut x.0[..len]);
    }
    fn relu_bwd(&self, d: &mut CpuBuf, y: &CpuBuf, len: usize) {
        elementwise::relu_bwd(&mut d.0[..len], &y.0[..len]);
    }
    fn heads_split(
        &self,
        out: &mut CpuBuf,
        out_off: usize,
        x: &CpuBuf,
        b: usize,
        t: usize,
        c: usize,
        h: usize,
        x_cols: usize,
        x_col: usize,
    ) {
        self.enqueued();
        let o = &mut out.0[out_off..out_off + b * t * c];
        heads::heads_split(o, &x.0, b, t, c, h, x_cols, x_col);
    }
    fn heads_merge(
        &self,
        out: &mut CpuBuf,
        x: &CpuBuf,
        x_off: usize,
        b: usize,
        t: usize,
        c: usize,
        h: usize,
        out_cols: usize,
        out_col: usize,
    ) {
        self.enqueued();
        let xs = &x.0[x_off..x_off + b * t * c];
        heads::heads_merge(&mut out.0, xs, b, t, c, h, out_cols, out_col);
    }
    fn softmax_causal_fwd(&self, att: &mut CpuBuf, n: usize, t: usize, scale: f32) {
        softmax::softmax_causal_fwd(&mut att.0[..n * t * t], t, scale);
    }
    fn softmax_causal_bwd(&self, d: &mut CpuBuf, p: &CpuBuf, n: usize, t: usize, scale: f32) {
        let len = n * t * t;
        softmax::softmax_causal_bwd(&mut d.0[..len], &p.0[..len], t, scale);
    }
    fn crossentropy_fwd(
        &self,
        losses: &mut CpuBuf,
        logits: &CpuBuf,
        targets: &CpuIds,
        rows: usize,
        v: usize,
    ) {
        softmax::crossentropy_fwd(
            &mut losses.0[..rows],
            &logits.0[..rows * v],
            &targets.0[..rows],
            v,
        );
    }
    fn crossentropy_bwd(
        &self,
        logits: &mut CpuBuf,
        targets: &CpuIds,
        rows: usize,
        v: usize,
        scale: f32,
    ) {
        softmax::crossentropy_bwd(&mut logits.0[..rows * v], &targets.0[..rows], v, scale);
    }
}

#[cfg(test)]
mod sim_tests {
    use super::*;

    #[test]
    fn handing_out_memory_with_queued_kernels_is_an_error_at_the_next_sync() {
        for sim in [false, true] {
            let be = if sim { Cpu::sim(1) } else { Cpu::new(1) };
            let mut m = be.alloc_mem(DType::Bf16, 8).unwrap();
            be.mem_fill(&mut m, 0, 8, 1.0);
            be.mem_ptr(&mut m); // no sync since the fill
            let r = be.sync();
            assert_eq!(r.is_err(), sim, "sim {sim}: {r:?}");
            // After a sync (or a download, which waits) it may be handed out.
            be.mem_fill(&mut m, 0, 8, 2.0);
            be.sync().unwrap();
            be.mem_ptr(&mut m);
            let mut b = be.alloc(4).unwrap();
            be.fill(&mut b, 0, 4, 1.0);
            be.download(&b, &mut [0.0; 4]);
            be.buf_ptr(&mut b);
            be.sync().unwrap();
        }
    }
}
