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

/// What OpenBLAS maps for each thread's buffer the first time it multiplies (seen with
/// gdb: `blas_memory_alloc` mmaps 128 MiB). When that mapping fails, as under an
/// address-space limit (`ulimit -v`, PBS's `vmem`, Slurm's `VSizeFactor`), OpenBLAS
/// retries forever, spinning: the job would never start nor exit.
const BUFFER_BYTES: usize = 128 << 20;

/// Checks, before the first product, that this process may still map the BLAS buffers
/// of `threads` threads (the calling one among them), and has OpenBLAS take them; an
/// error names the limit and the fix. Sets OpenBLAS's thread count to `threads`.
pub fn check_room(threads: usize) -> anyhow::Result<()> {
    set_threads(threads);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) } != 0
        || lim.rlim_cur == libc::RLIM_INFINITY
    {
        return Ok(());
    }
    let need = threads.max(1) * BUFFER_BYTES;
    // SAFETY: an anonymous mapping that nothing touches, unmapped at once.
    let ok = unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            need,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        p != libc::MAP_FAILED && libc::munmap(p, need) == 0
    };
    anyhow::ensure!(
        ok,
        "the address-space limit (ulimit -v: {} MiB) leaves no room for the matrix library's \
         buffers ({} MiB for {threads} thread(s)): raise the limit (PBS: \
         vmem; Slurm: VSizeFactor) or lower system.threads",
        lim.rlim_cur >> 20,
        need >> 20
    );
    // Take the buffers now, while there is room: OpenBLAS keeps them for the process, so
    // what the model and the loader map later cannot leave it none. 256^3 is large
    // enough that every thread takes part.
    const N: usize = 256;
    let (a, b, mut c) = (vec![0f32; N * N], vec![0f32; N * N], vec![0f32; N * N]);
    let n = int(N);
    // SAFETY: three N x N row-major matrices, each exactly N * N long.
    unsafe {
        cblas_sgemm(
            ROW_MAJOR,
            NO_TRANS,
            NO_TRANS,
            n,
            n,
            n,
            1.0,
            a.as_ptr(),
            n,
            b.as_ptr(),
            n,
            0.0,
            c.as_mut_ptr(),
            n,
        )
    };
    Ok(())
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
