// Shared helpers for every zerotrain kernel. Compiled by NVRTC at start-up (see
// ../kernels.rs), with FMA contraction off so elementwise arithmetic rounds exactly as the
// CPU backend's does.
typedef unsigned long long u64;

// NVRTC has no <math.h> macros: +inf and a quiet NaN as bit patterns.
#define F_INF __int_as_float(0x7f800000)
#define F_NAN __int_as_float(0x7fc00000)

// Index of this thread in a 1-D grid, and the grid's total thread count (grid-stride loops).
#define GID ((u64)blockIdx.x * blockDim.x + threadIdx.x)
#define GSTRIDE ((u64)gridDim.x * blockDim.x)

// Reduction operators for warp_reduce and block_reduce (f32 or f64).
struct Add {
    template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct Max {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// `op` over the 32 lanes of a warp; every lane gets the result.
template <typename T, typename Op> __device__ __forceinline__ T warp_reduce(T v, Op op) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// `op` over the block (blockDim.x a multiple of 32, at most 1024), starting from
// `identity`; every thread gets the result, summed in the same order by all. The leading
// barrier lets one kernel call this several times.
template <typename T, typename Op> __device__ T block_reduce(T v, T identity, Op op) {
    __shared__ T part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_reduce(v, op);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    T r = identity;
    for (int w = 0; w < nw; ++w) r = op(r, part[w]);
    return r;
}

__device__ __forceinline__ float warp_sum(float v) { return warp_reduce(v, Add()); }
__device__ __forceinline__ float warp_max(float v) { return warp_reduce(v, Max()); }
__device__ float block_sum(float v) { return block_reduce(v, 0.0f, Add()); }
__device__ double block_sum(double v) { return block_reduce(v, 0.0, Add()); }
__device__ float block_max(float v) { return block_reduce(v, -F_INF, Max()); }
