//! The CUDA backend (cargo feature `cuda`): cudarc loads libcuda, cuBLAS and NVRTC at run
//! time, so this builds where no CUDA is installed and [`Cuda::new`] says why it cannot run.
//!
//! One context and one stream per backend; every kernel and copy is enqueued on that
//! stream, `download` and `sync` wait for it. GEMMs go to cuBLAS (TF32 tensor cores by
//! default, see [`Cuda::set_tf32`]); every other kernel is CUDA C in `kernels/`, compiled
//! once per process by NVRTC. Kernels cannot return errors through the [`Backend`] trait,
//! so the first failure is kept and returned by the next [`Backend::sync`].
//!
//! [`Backend`]: super::Backend
//! [`Backend::sync`]: super::Backend::sync
/// Enqueues kernel `$f` with launch config `$cfg` and arguments (references) `$arg`,
/// recording a launch failure for the next `sync`.
macro_rules! launch {
    ($be:expr, $f:ident, $cfg:expr, $($arg:expr),+ $(,)?) => {{
        let mut b = $be.stream.launch_builder(&$be.k.$f);
        $( b.arg($arg); )+
        // SAFETY: every kernel's argument list matches its CUDA signature in kernels/,
        // and each buffer argument is a view whose length covers what the kernel indexes
        // for the sizes passed alongside it.
        let r = unsafe { b.launch($cfg) };
        $be.record(stringify!($f), r);
    }};
}

mod backend;
mod blas;
mod collectives;
mod kernels;
mod libs;
mod mem;
mod nccl;
mod optim;
mod typed;

pub use super::cuda_source::NAMES as KERNEL_NAMES;
pub use kernels::ptx as kernel_ptx;
pub use mem::{CudaBuf, CudaIds, CudaMem, DeviceMemCounter, MemStats};

use crate::device::TransferCounter;
use anyhow::Context as _;
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, LaunchConfig};
use kernels::Kernels;
use std::fmt::Display;
use std::sync::{Arc, Mutex, OnceLock};

/// Number of CUDA devices, or why CUDA cannot be used in this process (missing driver,
/// cuBLAS or NVRTC library, driver error, no device). Checked once, then cached; never
/// touches a CUDA library that is not there.
pub fn probe() -> Result<usize, String> {
    static PROBE: OnceLock<Result<usize, String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            // SAFETY: each check only tries to dlopen the library's usual names.
            if !unsafe { cudarc::driver::sys::is_culib_present() } {
                return Err("the CUDA driver library (libcuda.so) was not found".into());
            }
            if !unsafe { cudarc::cublas::sys::is_culib_present() } {
                return Err("cuBLAS (libcublas.so.13) was not found; add the CUDA 13 \
                            libraries to LD_LIBRARY_PATH"
                    .into());
            }
            if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
                return Err("NVRTC (libnvrtc.so.13) was not found; add the CUDA 13 \
                            libraries to LD_LIBRARY_PATH"
                    .into());
            }
            match CudaContext::device_count() {
                Ok(n) if n > 0 => Ok(n as usize),
                Ok(_) => Err("the CUDA driver reports no device".into()),
                Err(e) => Err(format!("the CUDA driver failed to start: {e}")),
            }
        })
        .clone()
}

/// Runs `job` on a new backend on CUDA device `ordinal` (see `device::dispatch`), after
/// logging which CUDA libraries were loaded.
pub fn run_on<J: super::dispatch::OnBackend>(ordinal: usize, job: J) -> anyhow::Result<J::Out> {
    let cuda = Cuda::new(ordinal)?;
    log::info!("CUDA libraries: {}", libs::describe_loaded());
    Ok(job.run(Arc::new(cuda)))
}

/// The CUDA backend bound to one device. Fields drop in declaration order: the NCCL
/// communicators first, while the stream and context still exist.
pub struct Cuda {
    /// NCCL communicators joined (device collectives).
    comms: Mutex<collectives::Comms>,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    k: Kernels,
    /// Bound to optional kernel arguments that are absent (never read).
    dummy: CudaSlice<f32>,
    mem: Arc<DeviceMemCounter>,
    transfers: TransferCounter,
    /// `sum_squares`' per-block partial sums, then its result (see optim.rs).
    sumsq: Mutex<mem::Counted<f64>>,
    /// The first error a kernel or copy met since the last `sync`.
    err: Mutex<Option<String>>,
}

impl std::fmt::Debug for Cuda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cuda")
            .field("ordinal", &self.ctx.ordinal())
            .field("mem", &self.mem.stats())
            .finish()
    }
}

impl Cuda {
    /// A backend on device `ordinal` with its own stream, cuBLAS handle (TF32 on) and
    /// the kernel module. An error, never a panic, when CUDA is unusable here.
    pub fn new(ordinal: usize) -> anyhow::Result<Cuda> {
        let count = probe().map_err(|why| anyhow::anyhow!("CUDA backend unavailable: {why}"))?;
        anyhow::ensure!(
            ordinal < count,
            "CUDA device {ordinal} does not exist ({count} device(s) visible)"
        );
        let ctx = CudaContext::new(ordinal)
            .with_context(|| format!("creating a context on CUDA device {ordinal}"))?;
        // SAFETY: this backend uses a single stream, so buffers need no cross-stream
        // event tracking (which would otherwise record events at every launch).
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().context("creating a CUDA stream")?;
        let blas = CudaBlas::new(stream.clone()).context("creating a cuBLAS handle")?;
        let k = Kernels::load(&ctx)?;
        let dummy = stream
            .alloc_zeros::<f32>(1)
            .context("allocating on the device")?;
        let mem = Arc::new(DeviceMemCounter::default());
        let sumsq = optim::sum_squares_scratch(&stream, &mem)?;
        let be = Cuda {
            ctx,
            stream,
            blas,
            k,
            dummy,
            mem,
            transfers: TransferCounter::default(),
            sumsq: Mutex::new(sumsq),
            err: Mutex::new(None),
            comms: Mutex::new(collectives::Comms::default()),
        };
        be.set_tf32(true)?;
        log::info!(
            "CUDA backend on device {ordinal} ({})",
            be.ctx.name().unwrap_or_else(|_| "unknown".into())
        );
        Ok(be)
    }

    /// The device this backend runs on.
    pub fn ordinal(&self) -> usize {
        self.ctx.ordinal()
    }

    /// Device memory held by this backend's buffers.
    pub fn mem_stats(&self) -> MemStats {
        self.mem.stats()
    }

    /// TF32 tensor-core math for fp32 GEMMs (on by default; off gives full fp32).
    pub fn set_tf32(&self, on: bool) -> anyhow::Result<()> {
        blas::set_tf32(&self.blas, on)
    }

    /// Keeps the first error of an enqueued operation for the next `sync`.
    fn record<T, E: Display>(&self, what: &str, r: Result<T, E>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                let mut slot = self.err.lock().unwrap_or_else(|p| p.into_inner());
                if slot.is_none() {
                    *slot = Some(format!("CUDA {what} failed: {e}"));
                }
                None
            }
        }
    }

    /// Returns (and clears) the first recorded error.
    fn take_err(&self) -> anyhow::Result<()> {
        let mut slot = self.err.lock().unwrap_or_else(|p| p.into_inner());
        match slot.take() {
            Some(e) => Err(anyhow::anyhow!(e)),
            None => Ok(()),
        }
    }
}

/// Threads per block of the 1-D and row kernels.
const BLOCK: u32 = 256;

/// A 1-D grid covering `n` elements (grid-stride kernels cap the block count).
fn grid1(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, 1 << 20) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One warp per row, 8 rows per block.
fn warp_rows(rows: usize) -> LaunchConfig {
    let blocks = rows.div_ceil((BLOCK / 32) as usize);
    LaunchConfig {
        grid_dim: (to_u32(blocks), 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row.
fn block_rows(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (to_u32(rows), 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Blocks of (32, 32) threads over 32-column tiles.
fn col_tiles(cols: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (to_u32(cols.div_ceil(32)), 1, 1),
        block_dim: (32, 32, 1),
        shared_mem_bytes: 0,
    }
}

/// A length or offset as the kernels' `u64`.
fn u(x: usize) -> u64 {
    x as u64
}

fn to_u32(x: usize) -> u32 {
    // Grid sizes derive from validated model shapes; past 2^31 blocks is a bug.
    assert!(x < (1 << 31), "CUDA grid of {x} blocks is too large");
    x as u32
}
