//! The CUDA backend's kernel module as plain data: its CUDA C source (the `.cu` files in
//! `cuda/kernels/`), the NVRTC options it is compiled with and the names of its kernels.
//!
//! Built without the `cuda` feature, so that a test (tests/cuda_nvrtc_compile.rs) can
//! compile exactly what the backend compiles with a real NVRTC on machines where the
//! backend itself is not built, such as CI. The backend (`cuda/kernels.rs`) uses these
//! definitions and no others.

/// The whole module: helpers first, then one file per kernel family.
pub const SOURCE: &str = concat!(
    include_str!("cuda/kernels/common.cuh"),
    include_str!("cuda/kernels/elementwise.cu"),
    include_str!("cuda/kernels/embed.cu"),
    include_str!("cuda/kernels/norm.cu"),
    include_str!("cuda/kernels/softmax.cu"),
    include_str!("cuda/kernels/heads.cu"),
    include_str!("cuda/kernels/convert.cu"),
    include_str!("cuda/kernels/optim.cu"),
);

/// The program name NVRTC reports in its diagnostics.
pub const PROGRAM_NAME: &str = "zerotrain_kernels.cu";

/// Every NVRTC option the module is compiled with (NVRTC's defaults otherwise: IEEE
/// division and square root, no flush to zero, its default virtual architecture).
/// `--fmad=false`: no FMA contraction, so elementwise results round as the CPU
/// backend's do.
pub const NVRTC_OPTIONS: &[&str] = &["--fmad=false"];

/// Calls `$m! { field => "name", ... }` with every kernel of [`SOURCE`]: the one list
/// from which both [`NAMES`] and the CUDA backend's loaded functions are declared.
macro_rules! with_kernel_list {
    ($m:ident) => {
        $m! {
            fill => "fill_f32",
            scale => "scale_f32",
            axpy => "axpy_f32",
            bias_residual => "bias_residual_f32",
            colsum_add => "colsum_add_f32",
            gelu_fwd => "gelu_fwd_f32",
            gelu_bwd => "gelu_bwd_f32",
            relu_fwd => "relu_fwd_f32",
            relu_bwd => "relu_bwd_f32",
            heads_split => "heads_split_f32",
            heads_merge => "heads_merge_f32",
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
            mem_convert => "mem_convert",
            mem_add => "mem_add",
            mem_fill => "mem_fill",
            sum_squares_partial => "sum_squares_partial_f32",
            sum_f64 => "sum_f64",
            sgd => "sgd_f32",
            adam => "adam_f32",
        }
    };
}
#[cfg_attr(not(feature = "cuda"), allow(unused_imports))]
pub(crate) use with_kernel_list;

macro_rules! names {
    ($($field:ident => $name:literal),* $(,)?) => {
        /// The `extern "C"` names of every kernel in [`SOURCE`] the backend loads.
        pub const NAMES: &[&str] = &[$($name),*];
    };
}
with_kernel_list!(names);
