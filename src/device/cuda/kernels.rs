//! The CUDA C source of every non-GEMM kernel (the `.cu` files beside this one), compiled
//! once per process with NVRTC and loaded into each context as one module.
use anyhow::Context as _;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileOptions, Ptx};
use std::sync::{Arc, OnceLock};

/// The whole module: helpers first, then one file per kernel family.
const SOURCE: &str = concat!(
    include_str!("kernels/common.cuh"),
    include_str!("kernels/elementwise.cu"),
    include_str!("kernels/embed.cu"),
    include_str!("kernels/norm.cu"),
    include_str!("kernels/softmax.cu"),
);

/// Declares [`Kernels`] (one loaded function per field) and [`NAMES`] from one list.
macro_rules! kernels {
    ($($field:ident => $name:literal),* $(,)?) => {
        /// Every kernel the backend launches, loaded by name from the module.
        #[derive(Debug)]
        pub struct Kernels {
            $(pub $field: CudaFunction,)*
        }
        /// The `extern "C"` names of every kernel in [`SOURCE`].
        pub const NAMES: &[&str] = &[$($name),*];
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

kernels! {
    fill => "fill_f32",
    scale => "scale_f32",
    axpy => "axpy_f32",
    bias_residual => "bias_residual_f32",
    colsum_add => "colsum_add_f32",
    gelu_fwd => "gelu_fwd_f32",
    gelu_bwd => "gelu_bwd_f32",
    relu_fwd => "relu_fwd_f32",
    relu_bwd => "relu_bwd_f32",
    embedding_fwd => "embedding_fwd_f32",
    embedding_bwd_wte => "embedding_bwd_wte_f32",
    embedding_bwd_wpe => "embedding_bwd_wpe_f32",
    layernorm_fwd => "layernorm_fwd_f32",
    layernorm_bwd_dx => "layernorm_bwd_dx_f32",
    layernorm_bwd_params => "layernorm_bwd_params_f32",
    softmax_causal_fwd => "softmax_causal_fwd_f32",
    softmax_causal_bwd => "softmax_causal_bwd_f32",
    crossentropy_fwd => "crossentropy_fwd_f32",
    crossentropy_bwd => "crossentropy_bwd_f32",
}

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
            // no FMA contraction: elementwise results round as the CPU backend's do
            fmad: Some(false),
            name: Some("zerotrain_kernels.cu".into()),
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
