//! The `device` part (see docs/architecture.md): compute backends behind one trait.
//!
//! The trait is shaped for an asynchronous GPU: buffers are opaque, kernels are enqueued
//! and take buffers plus offsets and shapes (never host slices), `download` and `sync`
//! are the only points where the host waits. The CPU backend runs everything at once.
//!
//! Conventions for every kernel: matrices are row-major; activation arguments start at
//! offset 0 of their own buffer; parameter and gradient arguments carry offsets because
//! a unit's tensors share one flat buffer. Kernels named `*_bwd` that produce parameter
//! gradients ACCUMULATE (+=) into them; what they write for activations is stated.
mod cpu;
// The CUDA backend, or a stand-in with the same functions when the feature is off: the
// only `cfg` on the feature outside src/device/cuda.
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(not(feature = "cuda"))]
#[path = "cuda_standin.rs"]
pub mod cuda;
pub mod cuda_source;
pub mod dispatch;
mod gemm;
pub mod select;
mod store;
mod transfers;

pub use cpu::{check_blas_room, Cpu, CpuBuf, CpuIds, CpuMem};
pub use gemm::Gemm;
pub use store::Store;
/// LayerNorm's variance epsilon in every backend's kernels (GPT-2's and PyTorch's).
pub const LAYERNORM_EPS: f32 = cpu::LAYERNORM_EPS;
pub use transfers::{TransferCounter, Transfers};

use crate::config::DType;
use crate::optim::{StepHyper, UpdateRule};

/// A collective a backend's own communication library (NCCL) runs on its memory, as a
/// sum where it reduces: the same four as `dist::RawCollective`, with the same `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceCollective {
    /// `count` elements at `recv`, in place.
    AllReduceInPlace,
    /// `send` holds `count * size`; this rank's block of `count` lands in `recv`.
    ReduceScatter,
    /// `send` holds `count`; `recv` gets every rank's block (`count * size`).
    AllGather,
    /// `recv` holds `count * size` with this rank's block at `rank * count`.
    AllGatherInPlace,
}

/// A compute backend: buffer management plus the kernels the layers need.
pub trait Backend: Send {
    /// An opaque f32 device buffer.
    type Buf: Send;
    /// An opaque device buffer of u32 indices (token ids, class ids).
    type Ids: Send;
    /// An opaque device buffer of one dtype (fp32, bf16 or fp16): where the ZeRO engine
    /// keeps parameters, gradients and communication buffers in the run's dtype.
    type Mem: Send;

    /// Short name for logs and benchmarks ("cpu", "sim", "cuda").
    fn name(&self) -> &'static str;
    /// True when buffers are ordinary host memory that any MPI can read and write (the
    /// CPU backend); false for device memory, which only a device-aware transport
    /// (CUDA-aware MPI, NCCL) may be handed, and which is otherwise staged through host
    /// buffers.
    fn host_resident(&self) -> bool;
    /// Bytes copied host -> device and device -> host so far (every upload and download,
    /// scalars included).
    fn transfers(&self) -> Transfers;
    /// A zero-filled buffer of `len` f32.
    fn alloc(&self, len: usize) -> anyhow::Result<Self::Buf>;
    /// Number of f32 in `buf`.
    fn len(&self, buf: &Self::Buf) -> usize;
    /// Host -> device into `dst[offset..offset + src.len()]` (enqueued).
    fn upload_at(&self, dst: &mut Self::Buf, offset: usize, src: &[f32]);
    /// Host -> device into the start of `dst` (enqueued).
    fn upload(&self, dst: &mut Self::Buf, src: &[f32]) {
        self.upload_at(dst, 0, src)
    }
    /// Device -> host from `src[offset..offset + dst.len()]` (waits for the result).
    fn download_at(&self, src: &Self::Buf, offset: usize, dst: &mut [f32]);
    /// Device -> host from the start of `src` (waits for the result).
    fn download(&self, src: &Self::Buf, dst: &mut [f32]) {
        self.download_at(src, 0, dst)
    }
    /// Zero-copy host view (CPU: `Some`; GPU: `None`).
    fn host<'a>(&self, buf: &'a Self::Buf) -> Option<&'a [f32]>;
    /// Zero-copy mutable host view (CPU: `Some`; GPU: `None`).
    fn host_mut<'a>(&self, buf: &'a mut Self::Buf) -> Option<&'a mut [f32]>;
    /// Waits for every enqueued kernel and copy.
    fn sync(&self) -> anyhow::Result<()>;

    // ---- typed memory for model states (see `Self::Mem`) ----
    /// A zero-filled buffer of `len` elements of `dtype`.
    fn alloc_mem(&self, dtype: DType, len: usize) -> anyhow::Result<Self::Mem>;
    /// Number of elements of `m`.
    fn mem_len(&self, m: &Self::Mem) -> usize;
    /// The dtype of `m`.
    fn mem_dtype(&self, m: &Self::Mem) -> DType;
    /// `dst[doff + i] = src[soff + i]` for `i < len`, converted (rounded to nearest even)
    /// when the dtypes differ.
    fn mem_copy(&self, dst: &mut Self::Mem, doff: usize, src: &Self::Mem, soff: usize, len: usize);
    /// `dst[doff + i] += src[soff + i]`, summed in f32 and rounded once to dst's dtype.
    fn mem_add(&self, dst: &mut Self::Mem, doff: usize, src: &Self::Mem, soff: usize, len: usize);
    /// `dst[doff + i] = src[soff + i]` as f32.
    fn mem_to_f32(
        &self,
        dst: &mut Self::Buf,
        doff: usize,
        src: &Self::Mem,
        soff: usize,
        len: usize,
    );
    /// `dst[doff + i] = src[soff + i]` rounded to dst's dtype.
    fn mem_from_f32(
        &self,
        dst: &mut Self::Mem,
        doff: usize,
        src: &Self::Buf,
        soff: usize,
        len: usize,
    );
    /// `dst[doff + i] += src[soff + i]`, summed in f32 and rounded once to dst's dtype.
    fn mem_add_f32(
        &self,
        dst: &mut Self::Mem,
        doff: usize,
        src: &Self::Buf,
        soff: usize,
        len: usize,
    );
    /// `m[off..off + len] = v` (rounded to m's dtype).
    fn mem_fill(&self, m: &mut Self::Mem, off: usize, len: usize, v: f32);
    /// Device -> host: `dst[doff..doff + len] = src[soff..]` (same dtype; waits).
    fn download_mem(&self, src: &Self::Mem, soff: usize, dst: &mut Store, doff: usize, len: usize);
    /// Host -> device: `dst[doff..doff + len] = src[soff..]` (same dtype; enqueued).
    fn upload_mem(&self, dst: &mut Self::Mem, doff: usize, src: &Store, soff: usize, len: usize);
    /// The address of `m`'s memory where it lives (device memory on a GPU), valid until
    /// `m` is dropped, for a device-aware transport to hand to the communication
    /// library. The host never dereferences it. Handing it to MPI needs a `sync` first
    /// (MPI does not follow the stream); the backend's own collectives
    /// ([`Backend::comm_run`]) are enqueued in stream order and need none.
    fn mem_ptr(&self, m: &mut Self::Mem) -> *mut u8;
    /// As [`Backend::mem_ptr`], for an f32 buffer.
    fn buf_ptr(&self, b: &mut Self::Buf) -> *mut f32;

    // ---- optimizer ----
    /// Σ x² over `x[off..off + len]`, accumulated in f64 (a gradient-norm partial; the
    /// result is read on the host, so this waits).
    fn sum_squares(&self, x: &Self::Buf, off: usize, len: usize) -> anyhow::Result<f64>;
    /// The fused optimizer update of `rule` over `len` elements: fp32 parameters
    /// `params[poff..]` from gradients `grads[goff..]`, with `states[k][soff..]` one
    /// buffer per [`UpdateRule::state_names`] entry.
    #[allow(clippy::too_many_arguments)]
    fn optimizer_update(
        &self,
        rule: &UpdateRule,
        hp: &StepHyper,
        decay: bool,
        params: &mut Self::Buf,
        poff: usize,
        grads: &Self::Buf,
        goff: usize,
        states: &mut [Self::Buf],
        soff: usize,
        len: usize,
    );

    // ---- device collectives: a communication library of the backend's own (NCCL) ----
    /// Ok when the backend can run collectives on its memory itself, else why not.
    fn device_collectives(&self) -> Result<(), String> {
        Err(format!(
            "the {} backend has no collective library of its own",
            self.name()
        ))
    }
    /// A fresh communicator id, made on one rank of a group and sent to the others.
    fn comm_id(&self) -> anyhow::Result<[u8; 128]> {
        Err(anyhow::anyhow!(self.device_collectives().unwrap_err()))
    }
    /// Joins communicator `id` as `rank` of `size` ranks (every rank of the group calls
    /// this; it returns when all have); returns the communicator's handle.
    fn comm_join(&self, id: &[u8; 128], rank: usize, size: usize) -> anyhow::Result<usize> {
        let _ = (id, rank, size);
        Err(anyhow::anyhow!(self.device_collectives().unwrap_err()))
    }
    /// Enqueues `what` over communicator `comm` in stream order: every later kernel and
    /// copy sees its result.
    ///
    /// # Safety
    /// `send`/`recv` are addresses from [`Backend::mem_ptr`] of the sizes `what` states,
    /// whose buffers outlive the collective.
    #[allow(clippy::too_many_arguments)]
    unsafe fn comm_run(
        &self,
        comm: usize,
        what: DeviceCollective,
        dtype: DType,
        send: *const u8,
        recv: *mut u8,
        count: usize,
    ) -> anyhow::Result<()> {
        let _ = (comm, what, dtype, send, recv, count);
        Err(anyhow::anyhow!(self.device_collectives().unwrap_err()))
    }

    /// A zero-filled index buffer of `len` u32.
    fn alloc_ids(&self, len: usize) -> anyhow::Result<Self::Ids>;
    /// Host -> device into the start of `dst`.
    fn upload_ids(&self, dst: &mut Self::Ids, src: &[u32]);

    // ---- elementwise and BLAS-1 ----
    /// `x[off..off+len] = v`.
    fn fill(&self, x: &mut Self::Buf, off: usize, len: usize, v: f32);
    /// `x[off..off+len] *= a`.
    fn scale(&self, x: &mut Self::Buf, off: usize, len: usize, a: f32);
    /// `y[yoff..yoff+len] += a * x[xoff..xoff+len]`.
    fn axpy(&self, y: &mut Self::Buf, yoff: usize, a: f32, x: &Self::Buf, xoff: usize, len: usize);
    /// `dst[doff..doff+len] = src[soff..soff+len]`.
    fn copy(&self, dst: &mut Self::Buf, doff: usize, src: &Self::Buf, soff: usize, len: usize);

    // ---- matrix products ----
    /// `C = alpha * op(A) * op(B) + beta * C`, possibly strided-batched (see [`Gemm`]).
    fn gemm(&self, g: &Gemm, a: &Self::Buf, b: &Self::Buf, c: &mut Self::Buf);

    // ---- layers ----
    /// out: (rows, cols); `out[r, :] += bias[boff..boff+cols] + resid[r, :]` (each optional).
    fn bias_residual(
        &self,
        out: &mut Self::Buf,
        rows: usize,
        cols: usize,
        bias: Option<(&Self::Buf, usize)>,
        resid: Option<&Self::Buf>,
    );
    /// out: (rows, cols); `out[r, :] = bias[boff..boff+cols] + resid[r, :]` (resid
    /// optional): a linear layer's output before its GEMM with beta = 1 adds `x W`.
    fn bias_residual_set(
        &self,
        out: &mut Self::Buf,
        rows: usize,
        cols: usize,
        bias: (&Self::Buf, usize),
        resid: Option<&Self::Buf>,
    ) {
        self.fill(out, 0, rows * cols, 0.0);
        self.bias_residual(out, rows, cols, Some(bias), resid);
    }
    /// dout: (rows, cols); `db[dboff..dboff+cols] += column sums of dout`.
    fn bias_bwd(
        &self,
        db: &mut Self::Buf,
        dboff: usize,
        dout: &Self::Buf,
        rows: usize,
        cols: usize,
    );
    /// out: (b, t, c) = wte[ids[b, t], :] + wpe[t, :]; wte (vocab, c) at `wte_off` and
    /// wpe (ctx, c) at `wpe_off` in `params`.
    #[allow(clippy::too_many_arguments)]
    fn embedding_fwd(
        &self,
        out: &mut Self::Buf,
        ids: &Self::Ids,
        params: &Self::Buf,
        wte_off: usize,
        wpe_off: usize,
        b: usize,
        t: usize,
        c: usize,
    );
    /// dwte[ids[b, t], :] += dout[b, t, :]; dwpe[t, :] += dout[b, t, :].
    #[allow(clippy::too_many_arguments)]
    fn embedding_bwd(
        &self,
        grads: &mut Self::Buf,
        wte_off: usize,
        wpe_off: usize,
        dout: &Self::Buf,
        ids: &Self::Ids,
        b: usize,
        t: usize,
        c: usize,
    );
    /// x, out: (rows, c); stats: (2, rows) = mean then 1/std. Weight and bias (c) at
    /// `w_off`, `b_off` in `params`. eps = 1e-5.
    #[allow(clippy::too_many_arguments)]
    fn layernorm_fwd(
        &self,
        out: &mut Self::Buf,
        stats: &mut Self::Buf,
        x: &Self::Buf,
        params: &Self::Buf,
        w_off: usize,
        b_off: usize,
        rows: usize,
        c: usize,
    );
    /// dx (rows, c) += d x; grads[w_off..] += d weight; grads[b_off..] += d bias.
    #[allow(clippy::too_many_arguments)]
    fn layernorm_bwd(
        &self,
        dx: &mut Self::Buf,
        grads: &mut Self::Buf,
        w_off: usize,
        b_off: usize,
        dout: &Self::Buf,
        x: &Self::Buf,
        params: &Self::Buf,
        stats: &Self::Buf,
        rows: usize,
        c: usize,
    );
    /// out[i] = gelu(x[i]) (tanh approximation), i < len.
    fn gelu_fwd(&self, out: &mut Self::Buf, x: &Self::Buf, len: usize);
    /// In place: d[i] = d[i] * gelu'(x[i]).
    fn gelu_bwd(&self, d: &mut Self::Buf, x: &Self::Buf, len: usize);
    /// In place: x[i] = max(x[i], 0).
    fn relu_fwd(&self, x: &mut Self::Buf, len: usize);
    /// In place: d[i] = 0 where y[i] <= 0 (y = relu output).
    fn relu_bwd(&self, d: &mut Self::Buf, y: &Self::Buf, len: usize);
    /// out[out_off..]: (b, h, t, c/h) = the `c` columns at `x_col` of x: (b, t, x_cols)
    /// (attention heads to the head-major layout).
    #[allow(clippy::too_many_arguments)]
    fn heads_split(
        &self,
        out: &mut Self::Buf,
        out_off: usize,
        x: &Self::Buf,
        b: usize,
        t: usize,
        c: usize,
        h: usize,
        x_cols: usize,
        x_col: usize,
    );
    /// The inverse of [`Backend::heads_split`]: x[x_off..] (b, h, t, c/h) into the `c`
    /// columns at `out_col` of out (b, t, out_cols); the other columns are left alone.
    #[allow(clippy::too_many_arguments)]
    fn heads_merge(
        &self,
        out: &mut Self::Buf,
        x: &Self::Buf,
        x_off: usize,
        b: usize,
        t: usize,
        c: usize,
        h: usize,
        out_cols: usize,
        out_col: usize,
    );
    /// In place over att: (n, t, t): scores -> causal softmax(scale * scores); entries
    /// above the diagonal become 0.
    fn softmax_causal_fwd(&self, att: &mut Self::Buf, n: usize, t: usize, scale: f32);
    /// In place: d holds dP (n, t, t) and becomes d(scores) given P = the forward output.
    fn softmax_causal_bwd(&self, d: &mut Self::Buf, p: &Self::Buf, n: usize, t: usize, scale: f32);
    /// logits: (rows, v); losses[r] = -log softmax(logits[r])[targets[r]].
    fn crossentropy_fwd(
        &self,
        losses: &mut Self::Buf,
        logits: &Self::Buf,
        targets: &Self::Ids,
        rows: usize,
        v: usize,
    );
    /// In place: logits (rows, v) become scale * (softmax(logits) - onehot(targets)).
    fn crossentropy_bwd(
        &self,
        logits: &mut Self::Buf,
        targets: &Self::Ids,
        rows: usize,
        v: usize,
        scale: f32,
    );
}
