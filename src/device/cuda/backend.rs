//! [`Backend`] for [`Cuda`]: buffers, copies and kernel launches on the backend's stream.
//! Shapes and semantics follow the trait's documentation and the CPU backend exactly.
use super::{block_rows, col_tiles, grid1, u, warp_rows, Cuda, CudaBuf, CudaIds, CudaMem};
use crate::config::DType;
use crate::device::{Backend, DeviceCollective, Gemm, Store, Transfers};
use crate::optim::{StepHyper, UpdateRule};
use cudarc::driver::{DevicePtrMut, PushKernelArg};

impl Backend for Cuda {
    type Buf = CudaBuf;
    type Ids = CudaIds;
    type Mem = CudaMem;

    fn name(&self) -> &'static str {
        "cuda"
    }
    fn host_resident(&self) -> bool {
        false
    }
    fn transfers(&self) -> Transfers {
        self.transfers.get()
    }
    fn alloc(&self, len: usize) -> anyhow::Result<CudaBuf> {
        let s = self
            .stream
            .alloc_zeros::<f32>(len.max(1))
            .map_err(|e| anyhow::anyhow!("cannot allocate {len} f32 on the device: {e}"))?;
        Ok(CudaBuf::new(s, len, &self.mem))
    }
    fn len(&self, buf: &CudaBuf) -> usize {
        buf.len
    }
    fn upload_at(&self, dst: &mut CudaBuf, offset: usize, src: &[f32]) {
        self.transfers.h2d(std::mem::size_of_val(src));
        if src.is_empty() {
            return;
        }
        let mut v = dst.s.slice_mut(offset..offset + src.len());
        let r = self.stream.memcpy_htod(src, &mut v);
        self.record("upload", r);
    }
    fn download_at(&self, src: &CudaBuf, offset: usize, dst: &mut [f32]) {
        self.transfers.d2h(std::mem::size_of_val(dst));
        if dst.is_empty() {
            return;
        }
        let v = src.s.slice(offset..offset + dst.len());
        let r = self.stream.memcpy_dtoh(&v, dst);
        let ok = self.record("download", r).is_some()
            && self.record("download", self.stream.synchronize()).is_some();
        if !ok {
            dst.fill(f32::NAN);
        }
    }
    fn host<'a>(&self, _buf: &'a CudaBuf) -> Option<&'a [f32]> {
        None
    }
    fn host_mut<'a>(&self, _buf: &'a mut CudaBuf) -> Option<&'a mut [f32]> {
        None
    }
    fn sync(&self) -> anyhow::Result<()> {
        let r = self.stream.synchronize();
        self.record("stream synchronize", r);
        // errors cudarc could only store (e.g. in a buffer's drop)
        self.record("deferred operation", self.ctx.check_err());
        self.take_err()
    }

    fn alloc_mem(&self, dtype: DType, len: usize) -> anyhow::Result<CudaMem> {
        self.alloc_typed(dtype, len)
    }
    fn mem_len(&self, m: &CudaMem) -> usize {
        m.len()
    }
    fn mem_dtype(&self, m: &CudaMem) -> DType {
        m.dtype
    }
    fn mem_copy(&self, dst: &mut CudaMem, doff: usize, src: &CudaMem, soff: usize, len: usize) {
        self.copy_typed(dst, doff, src, soff, len);
    }
    fn mem_add(&self, dst: &mut CudaMem, doff: usize, src: &CudaMem, soff: usize, len: usize) {
        self.add_typed(dst, doff, src, soff, len);
    }
    fn mem_to_f32(&self, dst: &mut CudaBuf, doff: usize, src: &CudaMem, soff: usize, len: usize) {
        self.convert(dst, doff, src, soff, len);
    }
    fn mem_from_f32(&self, dst: &mut CudaMem, doff: usize, src: &CudaBuf, soff: usize, len: usize) {
        self.convert(dst, doff, src, soff, len);
    }
    fn mem_add_f32(&self, dst: &mut CudaMem, doff: usize, src: &CudaBuf, soff: usize, len: usize) {
        self.add_typed(dst, doff, src, soff, len);
    }
    fn mem_fill(&self, m: &mut CudaMem, off: usize, len: usize, v: f32) {
        self.fill_typed(m, off, len, v);
    }
    fn download_mem(&self, src: &CudaMem, soff: usize, dst: &mut Store, doff: usize, len: usize) {
        self.download_typed(src, soff, dst, doff, len);
    }
    fn upload_mem(&self, dst: &mut CudaMem, doff: usize, src: &Store, soff: usize, len: usize) {
        self.upload_typed(dst, doff, src, soff, len);
    }
    fn mem_ptr(&self, m: &mut CudaMem) -> *mut u8 {
        // event tracking is off (one stream), so the guard records nothing
        let (ptr, _guard) = m.bytes.s.device_ptr_mut(&self.stream);
        ptr as *mut u8
    }
    fn buf_ptr(&self, b: &mut CudaBuf) -> *mut f32 {
        let (ptr, _guard) = b.s.device_ptr_mut(&self.stream);
        ptr as *mut f32
    }

    fn device_collectives(&self) -> Result<(), String> {
        self.nccl_available()
    }
    fn comm_id(&self) -> anyhow::Result<[u8; 128]> {
        self.nccl_id()
    }
    fn comm_join(&self, id: &[u8; 128], rank: usize, size: usize) -> anyhow::Result<usize> {
        self.nccl_join(id, rank, size)
    }
    unsafe fn comm_run(
        &self,
        comm: usize,
        what: DeviceCollective,
        dtype: DType,
        send: *const u8,
        recv: *mut u8,
        count: usize,
    ) -> anyhow::Result<()> {
        self.nccl_run(comm, what, dtype, send, recv, count)
    }
    fn sum_squares(&self, x: &CudaBuf, off: usize, len: usize) -> anyhow::Result<f64> {
        self.sum_squares_dev(x, off, len)
    }
    fn optimizer_update(
        &self,
        rule: &UpdateRule,
        hp: &StepHyper,
        decay: bool,
        params: &mut CudaBuf,
        poff: usize,
        grads: &CudaBuf,
        goff: usize,
        states: &mut [CudaBuf],
        soff: usize,
        len: usize,
    ) {
        self.update_dev(
            rule, hp, decay, params, poff, grads, goff, states, soff, len,
        );
    }
    fn alloc_ids(&self, len: usize) -> anyhow::Result<CudaIds> {
        let s = self
            .stream
            .alloc_zeros::<u32>(len.max(1))
            .map_err(|e| anyhow::anyhow!("cannot allocate {len} ids on the device: {e}"))?;
        Ok(CudaIds::new(s, len, &self.mem))
    }
    fn upload_ids(&self, dst: &mut CudaIds, src: &[u32]) {
        self.transfers.h2d(std::mem::size_of_val(src));
        if src.is_empty() {
            return;
        }
        let mut v = dst.s.slice_mut(..src.len());
        let r = self.stream.memcpy_htod(src, &mut v);
        self.record("upload_ids", r);
    }

    fn fill(&self, x: &mut CudaBuf, off: usize, len: usize, v: f32) {
        if len == 0 {
            return;
        }
        let mut xv = x.s.slice_mut(off..off + len);
        let n64 = u(len);
        launch!(self, fill, grid1(len), &mut xv, &n64, &v);
    }
    fn scale(&self, x: &mut CudaBuf, off: usize, len: usize, a: f32) {
        if len == 0 {
            return;
        }
        let mut xv = x.s.slice_mut(off..off + len);
        let n64 = u(len);
        launch!(self, scale, grid1(len), &mut xv, &n64, &a);
    }
    fn axpy(&self, y: &mut CudaBuf, yoff: usize, a: f32, x: &CudaBuf, xoff: usize, len: usize) {
        if len == 0 {
            return;
        }
        let mut yv = y.s.slice_mut(yoff..yoff + len);
        let xv = x.s.slice(xoff..xoff + len);
        let n64 = u(len);
        launch!(self, axpy, grid1(len), &mut yv, &xv, &n64, &a);
    }
    fn copy(&self, dst: &mut CudaBuf, doff: usize, src: &CudaBuf, soff: usize, len: usize) {
        if len == 0 {
            return;
        }
        let sv = src.s.slice(soff..soff + len);
        let mut dv = dst.s.slice_mut(doff..doff + len);
        let r = self.stream.memcpy_dtod(&sv, &mut dv);
        self.record("copy", r);
    }
    fn gemm(&self, g: &Gemm, a: &CudaBuf, b: &CudaBuf, c: &mut CudaBuf) {
        let r = self.ctx.bind_to_thread();
        if self.record("bind context", r).is_some() {
            let r = super::blas::sgemm(&self.blas, g, &a.s, &b.s, &mut c.s);
            self.record("cuBLAS sgemm", r);
        }
    }
    fn bias_residual(
        &self,
        out: &mut CudaBuf,
        rows: usize,
        cols: usize,
        bias: Option<(&CudaBuf, usize)>,
        resid: Option<&CudaBuf>,
    ) {
        let n = rows * cols;
        if n == 0 || (bias.is_none() && resid.is_none()) {
            return;
        }
        let mut ov = out.s.slice_mut(..n);
        let bv = match bias {
            Some((b, off)) => b.s.slice(off..off + cols),
            None => self.dummy.slice(..),
        };
        let rv = match resid {
            Some(r) => r.s.slice(..n),
            None => self.dummy.slice(..),
        };
        let (hb, hr) = (bias.is_some() as i32, resid.is_some() as i32);
        let (r64, c64) = (u(rows), u(cols));
        launch!(
            self,
            bias_residual,
            grid1(n),
            &mut ov,
            &bv,
            &rv,
            &r64,
            &c64,
            &hb,
            &hr
        );
    }
    fn bias_bwd(&self, db: &mut CudaBuf, dboff: usize, dout: &CudaBuf, rows: usize, cols: usize) {
        if cols == 0 {
            return;
        }
        let mut dv = db.s.slice_mut(dboff..dboff + cols);
        let ov = dout.s.slice(..rows * cols);
        let (r64, c64) = (u(rows), u(cols));
        launch!(self, colsum_add, col_tiles(cols), &mut dv, &ov, &r64, &c64);
    }
    fn embedding_fwd(
        &self,
        out: &mut CudaBuf,
        ids: &CudaIds,
        params: &CudaBuf,
        wte_off: usize,
        wpe_off: usize,
        b: usize,
        t: usize,
        c: usize,
    ) {
        let n = b * t;
        if n * c == 0 {
            return;
        }
        // wte holds the rows from wte_off to the end of params (the CPU's view); an id
        // past them yields NaN instead of reading out of bounds.
        let vocab = (params.len - wte_off) / c;
        let mut ov = out.s.slice_mut(..n * c);
        let iv = ids.s.slice(..n);
        let wte = params.s.slice(wte_off..);
        let wpe = params.s.slice(wpe_off..wpe_off + t * c);
        let (n64, t64, c64, v64) = (u(n), u(t), u(c), u(vocab));
        launch!(
            self,
            embedding_fwd,
            grid1(n * c),
            &mut ov,
            &iv,
            &wte,
            &wpe,
            &n64,
            &t64,
            &c64,
            &v64
        );
    }
    fn embedding_bwd(
        &self,
        grads: &mut CudaBuf,
        wte_off: usize,
        wpe_off: usize,
        dout: &CudaBuf,
        ids: &CudaIds,
        b: usize,
        t: usize,
        c: usize,
    ) {
        let n = b * t;
        if n * c == 0 {
            return;
        }
        // dwte runs from wte_off to wpe_off (or the end when wpe comes first), as the CPU's
        // disjoint split of the gradient buffer.
        let wte_end = if wte_off < wpe_off {
            wpe_off
        } else {
            grads.len
        };
        let vocab = (wte_end - wte_off) / c;
        let ov = dout.s.slice(..n * c);
        let iv = ids.s.slice(..n);
        let (n64, b64, t64, c64, v64) = (u(n), u(b), u(t), u(c), u(vocab));
        {
            let mut dwte = grads.s.slice_mut(wte_off..wte_end);
            launch!(
                self,
                embedding_bwd_wte,
                grid1(n * c),
                &mut dwte,
                &ov,
                &iv,
                &n64,
                &c64,
                &v64
            );
        }
        let mut dwpe = grads.s.slice_mut(wpe_off..wpe_off + t * c);
        launch!(
            self,
            embedding_bwd_wpe,
            grid1(t * c),
            &mut dwpe,
            &ov,
            &b64,
            &t64,
            &c64
        );
    }
    fn layernorm_fwd(
        &self,
        out: &mut CudaBuf,
        stats: &mut CudaBuf,
        x: &CudaBuf,
        params: &CudaBuf,
        w_off: usize,
        b_off: usize,
        rows: usize,
        c: usize,
    ) {
        if rows * c == 0 {
            return;
        }
        let mut ov = out.s.slice_mut(..rows * c);
        let mut sv = stats.s.slice_mut(..2 * rows);
        let (mut mean, mut rstd) = sv.split_at_mut(rows);
        let xv = x.s.slice(..rows * c);
        let wv = params.s.slice(w_off..w_off + c);
        let bv = params.s.slice(b_off..b_off + c);
        let (r64, c64) = (u(rows), u(c));
        launch!(
            self,
            layernorm_fwd,
            warp_rows(rows),
            &mut ov,
            &mut mean,
            &mut rstd,
            &xv,
            &wv,
            &bv,
            &r64,
            &c64
        );
    }
    fn layernorm_bwd(
        &self,
        dx: &mut CudaBuf,
        grads: &mut CudaBuf,
        w_off: usize,
        b_off: usize,
        dout: &CudaBuf,
        x: &CudaBuf,
        params: &CudaBuf,
        stats: &CudaBuf,
        rows: usize,
        c: usize,
    ) {
        if rows * c == 0 {
            return;
        }
        let n = rows * c;
        let sv = stats.s.slice(..2 * rows);
        let (mean, rstd) = sv.split_at(rows);
        let (dv, xv) = (dout.s.slice(..n), x.s.slice(..n));
        let wv = params.s.slice(w_off..w_off + c);
        let (r64, c64) = (u(rows), u(c));
        {
            let mut dxv = dx.s.slice_mut(..n);
            launch!(
                self,
                layernorm_bwd_dx,
                warp_rows(rows),
                &mut dxv,
                &dv,
                &xv,
                &wv,
                &mean,
                &rstd,
                &r64,
                &c64
            );
        }
        // dw and db are disjoint views of one buffer: take the lower one first
        let (lo, hi) = (w_off.min(b_off), w_off.max(b_off));
        assert!(lo + c <= hi, "layernorm weight and bias gradients overlap");
        let mut gv = grads.s.slice_mut(lo..hi + c);
        // first: (hi - lo >= c), the kernel reads its leading c; rest: (c)
        let (mut first, mut rest) = gv.split_at_mut(hi - lo);
        let (dw, db) = if w_off < b_off {
            (&mut first, &mut rest)
        } else {
            (&mut rest, &mut first)
        };
        launch!(
            self,
            layernorm_bwd_params,
            col_tiles(c),
            dw,
            db,
            &dv,
            &xv,
            &mean,
            &rstd,
            &r64,
            &c64
        );
    }
    fn gelu_fwd(&self, out: &mut CudaBuf, x: &CudaBuf, len: usize) {
        if len == 0 {
            return;
        }
        let (mut ov, xv) = (out.s.slice_mut(..len), x.s.slice(..len));
        let n64 = u(len);
        launch!(self, gelu_fwd, grid1(len), &mut ov, &xv, &n64);
    }
    fn gelu_bwd(&self, d: &mut CudaBuf, x: &CudaBuf, len: usize) {
        if len == 0 {
            return;
        }
        let (mut dv, xv) = (d.s.slice_mut(..len), x.s.slice(..len));
        let n64 = u(len);
        launch!(self, gelu_bwd, grid1(len), &mut dv, &xv, &n64);
    }
    fn heads_split(
        &self,
        out: &mut CudaBuf,
        out_off: usize,
        x: &CudaBuf,
        b: usize,
        t: usize,
        c: usize,
        h: usize,
        x_cols: usize,
        x_col: usize,
    ) {
        let n = b * t * c;
        if n == 0 {
            return;
        }
        let (mut ov, xv) = (
            out.s.slice_mut(out_off..out_off + n),
            x.s.slice(..b * t * x_cols),
        );
        let d = [u(b), u(t), u(c), u(h), u(x_cols), u(x_col)];
        launch!(
            self,
            heads_split,
            grid1(n),
            &mut ov,
            &xv,
            &d[0],
            &d[1],
            &d[2],
            &d[3],
            &d[4],
            &d[5]
        );
    }
    fn heads_merge(
        &self,
        out: &mut CudaBuf,
        x: &CudaBuf,
        x_off: usize,
        b: usize,
        t: usize,
        c: usize,
        h: usize,
        out_cols: usize,
        out_col: usize,
    ) {
        let n = b * t * c;
        if n == 0 {
            return;
        }
        let (mut ov, xv) = (
            out.s.slice_mut(..b * t * out_cols),
            x.s.slice(x_off..x_off + n),
        );
        let d = [u(b), u(t), u(c), u(h), u(out_cols), u(out_col)];
        launch!(
            self,
            heads_merge,
            grid1(n),
            &mut ov,
            &xv,
            &d[0],
            &d[1],
            &d[2],
            &d[3],
            &d[4],
            &d[5]
        );
    }
    fn relu_fwd(&self, x: &mut CudaBuf, len: usize) {
        if len == 0 {
            return;
        }
        let mut xv = x.s.slice_mut(..len);
        let n64 = u(len);
        launch!(self, relu_fwd, grid1(len), &mut xv, &n64);
    }
    fn relu_bwd(&self, d: &mut CudaBuf, y: &CudaBuf, len: usize) {
        if len == 0 {
            return;
        }
        let (mut dv, yv) = (d.s.slice_mut(..len), y.s.slice(..len));
        let n64 = u(len);
        launch!(self, relu_bwd, grid1(len), &mut dv, &yv, &n64);
    }
    fn softmax_causal_fwd(&self, att: &mut CudaBuf, n: usize, t: usize, scale: f32) {
        if n * t == 0 {
            return;
        }
        let mut av = att.s.slice_mut(..n * t * t);
        let (n64, t64) = (u(n), u(t));
        launch!(
            self,
            softmax_causal_fwd,
            warp_rows(n * t),
            &mut av,
            &n64,
            &t64,
            &scale
        );
    }
    fn softmax_causal_bwd(&self, d: &mut CudaBuf, p: &CudaBuf, n: usize, t: usize, scale: f32) {
        if n * t == 0 {
            return;
        }
        let len = n * t * t;
        let (mut dv, pv) = (d.s.slice_mut(..len), p.s.slice(..len));
        let (n64, t64) = (u(n), u(t));
        launch!(
            self,
            softmax_causal_bwd,
            warp_rows(n * t),
            &mut dv,
            &pv,
            &n64,
            &t64,
            &scale
        );
    }
    fn crossentropy_fwd(
        &self,
        losses: &mut CudaBuf,
        logits: &CudaBuf,
        targets: &CudaIds,
        rows: usize,
        v: usize,
    ) {
        if rows == 0 {
            return;
        }
        let mut lv = losses.s.slice_mut(..rows);
        let xv = logits.s.slice(..rows * v);
        let tv = targets.s.slice(..rows);
        let (r64, v64) = (u(rows), u(v));
        launch!(
            self,
            crossentropy_fwd,
            block_rows(rows),
            &mut lv,
            &xv,
            &tv,
            &r64,
            &v64
        );
    }
    fn crossentropy_bwd(
        &self,
        logits: &mut CudaBuf,
        targets: &CudaIds,
        rows: usize,
        v: usize,
        scale: f32,
    ) {
        if rows * v == 0 {
            return;
        }
        let mut xv = logits.s.slice_mut(..rows * v);
        let tv = targets.s.slice(..rows);
        let (r64, v64) = (u(rows), u(v));
        launch!(
            self,
            crossentropy_bwd,
            block_rows(rows),
            &mut xv,
            &tv,
            &r64,
            &v64,
            &scale
        );
    }
}
