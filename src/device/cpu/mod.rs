//! The CPU backend: host vectors as buffers, kernels run at once on the calling thread,
//! matrix products through OpenBLAS with a configurable thread count.
mod blas;
mod elementwise;
mod embed;
mod norm;
mod simd;
mod softmax;

use super::{Backend, Gemm};

/// A host buffer of f32.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuBuf(Vec<f32>);

/// A host buffer of u32 indices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuIds(Vec<u32>);

/// The CPU backend.
#[derive(Debug)]
pub struct Cpu {
    threads: usize,
}

impl Cpu {
    /// A CPU backend whose matrix products use `threads` threads (at least 1). The BLAS
    /// thread count is process-wide: the last `Cpu` created sets it.
    pub fn new(threads: usize) -> Cpu {
        let threads = threads.max(1);
        blas::set_threads(threads);
        Cpu { threads }
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

    fn name(&self) -> &'static str {
        "cpu"
    }
    fn alloc(&self, len: usize) -> anyhow::Result<CpuBuf> {
        Ok(CpuBuf(zeroed(len, "f32")?))
    }
    fn len(&self, buf: &CpuBuf) -> usize {
        buf.0.len()
    }
    fn upload_at(&self, dst: &mut CpuBuf, offset: usize, src: &[f32]) {
        dst.0[offset..offset + src.len()].copy_from_slice(src);
    }
    fn download_at(&self, src: &CpuBuf, offset: usize, dst: &mut [f32]) {
        dst.copy_from_slice(&src.0[offset..offset + dst.len()]);
    }
    fn host<'a>(&self, buf: &'a CpuBuf) -> Option<&'a [f32]> {
        Some(&buf.0)
    }
    fn host_mut<'a>(&self, buf: &'a mut CpuBuf) -> Option<&'a mut [f32]> {
        Some(&mut buf.0)
    }
    fn sync(&self) -> anyhow::Result<()> {
        Ok(())
    }
    fn alloc_ids(&self, len: usize) -> anyhow::Result<CpuIds> {
        Ok(CpuIds(zeroed(len, "ids")?))
    }
    fn upload_ids(&self, dst: &mut CpuIds, src: &[u32]) {
        dst.0[..src.len()].copy_from_slice(src);
    }

    fn fill(&self, x: &mut CpuBuf, off: usize, len: usize, v: f32) {
        x.0[off..off + len].fill(v);
    }
    fn scale(&self, x: &mut CpuBuf, off: usize, len: usize, a: f32) {
        x.0[off..off + len].iter_mut().for_each(|v| *v *= a);
    }
    fn axpy(&self, y: &mut CpuBuf, yoff: usize, a: f32, x: &CpuBuf, xoff: usize, len: usize) {
        let x = &x.0[xoff..xoff + len];
        for (y, x) in y.0[yoff..yoff + len].iter_mut().zip(x) {
            *y += a * x;
        }
    }
    fn copy(&self, dst: &mut CpuBuf, doff: usize, src: &CpuBuf, soff: usize, len: usize) {
        dst.0[doff..doff + len].copy_from_slice(&src.0[soff..soff + len]);
    }
    fn gemm(&self, g: &Gemm, a: &CpuBuf, b: &CpuBuf, c: &mut CpuBuf) {
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
