//! Every non-GEMM kernel: the module of [`crate::device::cuda_source`] (the `.cu` files
//! beside this one), compiled once per process with NVRTC and loaded into each context.
use crate::device::cuda_source::{with_kernel_list, NVRTC_OPTIONS, PROGRAM_NAME, SOURCE};
use anyhow::Context as _;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileOptions, Ptx};
use std::sync::{Arc, OnceLock};

/// Declares [`Kernels`] (one loaded function per field) from the kernel list.
macro_rules! kernels {
    ($($field:ident => $name:literal),* $(,)?) => {
        /// Every kernel the backend launches, loaded by name from the module.
        #[derive(Debug)]
        pub struct Kernels {
            $(pub $field: CudaFunction,)*
        }
        impl Kernels {
            fn from_module(module: &Arc<CudaModule>) -> anyhow::Result<Kernels> {
                Ok(Kernels {
                    $($field: module
                        .load_function($name)
                        .with_context(|| format!("kernel {} missing from the module", $name))?,)*
                })
            }
        }
    };
}
with_kernel_list!(kernels);

/// PTX text of [`SOURCE`], compiled by NVRTC on first use and kept for the life of the
/// process. Needs only the NVRTC library (no driver, no GPU).
pub fn ptx() -> anyhow::Result<&'static str> {
    static PTX: OnceLock<Result<String, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        // SAFETY: only tries to dlopen the library's usual names.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err("NVRTC (libnvrtc.so.13) was not found".into());
        }
        let opts = CompileOptions {
            options: NVRTC_OPTIONS.iter().map(|o| o.to_string()).collect(),
            name: Some(PROGRAM_NAME.into()),
            ..Default::default()
        };
        cudarc::nvrtc::compile_ptx_with_opts(SOURCE, opts)
            .map(|p| p.to_src())
            .map_err(|e| format!("NVRTC could not compile the zerotrain kernels: {e}"))
    })
    .as_ref()
    .map(|s| s.as_str())
    .map_err(|e| anyhow::anyhow!("{e}"))
}

impl Kernels {
    /// Compiles (first call only) and loads the module into `ctx`.
    pub fn load(ctx: &Arc<CudaContext>) -> anyhow::Result<Kernels> {
        let module = ctx
            .load_module(Ptx::from_src(ptx()?))
            .context("loading the NVRTC-compiled kernel module")?;
        Kernels::from_module(&module)
    }
}
