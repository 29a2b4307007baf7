//! SGEMM through OpenBLAS's CBLAS interface (Debian: libopenblas-dev).
//!
//! Chosen by measurement (`zerotrain bench gemm`, one thread, this machine): OpenBLAS
//! matched numpy (same library) and beat `matrixmultiply` on the GPT's narrow shapes
//! (e.g. 768x65x128), and unlike `matrixmultiply` it does not allocate packing buffers on
//! the Rust heap at every call, so a steady-state step stays allocation-free.
use crate::device::Gemm;
use std::os::raw::c_int;

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

#[link(name = "openblas")]
extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn cblas_sgemm(
        order: c_int,
        trans_a: c_int,
        trans_b: c_int,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: f32,
        a: *const f32,
        lda: c_int,
        b: *const f32,
        ldb: c_int,
        beta: f32,
        c: *mut f32,
        ldc: c_int,
    );
    fn openblas_set_num_threads(n: c_int);
}

/// Sets the number of threads OpenBLAS uses in this process.
pub fn set_threads(n: usize) {
    // SAFETY: plain setter of a process-wide integer.
    unsafe { openblas_set_num_threads(n.clamp(1, c_int::MAX as usize) as c_int) }
}

fn int(x: usize) -> c_int {
    // Shapes come from validated configs; anything this large is a bug, not input.
    assert!(
        x <= c_int::MAX as usize,
        "gemm dimension {x} exceeds the BLAS int range"
    );
    x as c_int
}

/// Runs `g` on host slices. Panics (a programming error, not user input) when a buffer is
/// too short for the described views: the check keeps the FFI call memory-safe.
pub fn sgemm(g: &Gemm, a: &[f32], b: &[f32], c: &mut [f32]) {
    if g.m == 0 || g.n == 0 || g.batch == 0 {
        return;
    }
    g.checked_lens(a.len(), b.len(), c.len());
    let ta = if g.trans_a { TRANS } else { NO_TRANS };
    let tb = if g.trans_b { TRANS } else { NO_TRANS };
    for i in 0..g.batch {
        // SAFETY: required_lens bounds every element each matrix of the batch touches.
        unsafe {
            cblas_sgemm(
                ROW_MAJOR,
                ta,
                tb,
                int(g.m),
                int(g.n),
                int(g.k),
                g.alpha,
                a.as_ptr().add(g.a_off + i * g.stride_a),
                int(g.lda.max(1)),
                b.as_ptr().add(g.b_off + i * g.stride_b),
                int(g.ldb.max(1)),
                g.beta,
                c.as_mut_ptr().add(g.c_off + i * g.stride_c),
                int(g.ldc.max(1)),
            )
        }
    }
}
