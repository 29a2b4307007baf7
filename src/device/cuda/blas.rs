//! Row-major [`Gemm`]s on cuBLAS (column-major): a row-major (m, n) C is the column-major
//! (n, m) matrix Cᵀ = op(B)ᵀ op(A)ᵀ, so cuBLAS gets B as its first operand and A as its
//! second, with m and n swapped and the same leading dimensions.
use crate::device::Gemm;
use cudarc::cublas::sys::{cublasMath_t, cublasOperation_t, cublasStatus_t};
use cudarc::cublas::{CudaBlas, Gemm as _, GemmConfig, StridedBatchedConfig};
use cudarc::driver::CudaSlice;
use std::os::raw::{c_int, c_longlong};

/// TF32 tensor-core math on or off for fp32 products on `blas`.
pub fn set_tf32(blas: &CudaBlas, on: bool) -> anyhow::Result<()> {
    let mode = if on {
        cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH
    } else {
        cublasMath_t::CUBLAS_DEFAULT_MATH
    };
    // SAFETY: the handle is live for as long as `blas`.
    let st = unsafe { cudarc::cublas::sys::cublasSetMathMode(*blas.handle(), mode) };
    anyhow::ensure!(
        st == cublasStatus_t::CUBLAS_STATUS_SUCCESS,
        "cublasSetMathMode: {st:?}"
    );
    Ok(())
}

fn int(x: usize) -> c_int {
    // Shapes come from validated configs; anything this large is a bug, not input.
    assert!(
        x <= c_int::MAX as usize,
        "gemm dimension {x} exceeds the cuBLAS int range"
    );
    x as c_int
}

fn op(t: bool) -> cublasOperation_t {
    if t {
        cublasOperation_t::CUBLAS_OP_T
    } else {
        cublasOperation_t::CUBLAS_OP_N
    }
}

/// Enqueues `g` on `blas`'s stream. Panics (a programming error, as on the CPU) when a
/// buffer is too short for the described views: the check keeps cuBLAS in bounds.
pub fn sgemm(
    blas: &CudaBlas,
    g: &Gemm,
    a: &CudaSlice<f32>,
    b: &CudaSlice<f32>,
    c: &mut CudaSlice<f32>,
) -> Result<(), cudarc::cublas::result::CublasError> {
    if g.m == 0 || g.n == 0 || g.batch == 0 {
        return Ok(());
    }
    let (na, nb, nc) = g.checked_lens(a.len(), b.len(), c.len());
    let av = a.slice(g.a_off..na);
    let bv = b.slice(g.b_off..nb);
    let mut cv = c.slice_mut(g.c_off..nc);
    // Column-major view: first operand B' = B as (n, k) or its transpose, second A' = A.
    // Leading dimensions are raised to cuBLAS's minimum only when k = 0 (nothing is read).
    let ld_b = g.ldb.max(if g.trans_b { g.k } else { g.n }).max(1);
    let ld_a = g.lda.max(if g.trans_a { g.m } else { g.k }).max(1);
    let cfg = GemmConfig {
        transa: op(g.trans_b),
        transb: op(g.trans_a),
        m: int(g.n),
        n: int(g.m),
        k: int(g.k),
        alpha: g.alpha,
        lda: int(ld_b),
        ldb: int(ld_a),
        beta: g.beta,
        ldc: int(g.ldc.max(g.n)),
    };
    // SAFETY: required_lens bounds every element each matrix of the batch touches, and
    // the views start at the offsets, so cuBLAS stays inside the three buffers.
    unsafe {
        if g.batch == 1 {
            blas.gemm(cfg, &bv, &av, &mut cv)
        } else {
            let sb = StridedBatchedConfig {
                gemm: cfg,
                batch_size: int(g.batch),
                stride_a: g.stride_b as c_longlong,
                stride_b: g.stride_a as c_longlong,
                stride_c: g.stride_c as c_longlong,
            };
            blas.gemm_strided_batched(sb, &bv, &av, &mut cv)
        }
    }
}
