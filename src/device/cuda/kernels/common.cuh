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

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
// The leading barrier lets one kernel call this several times.
__device__ float block_sum(float v) {
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    float s = 0.0f;
    for (int w = 0; w < nw; ++w) s += part[w];
    return s;
}

// Max over the block, as block_sum.
__device__ float block_max(float v) {
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    float m = -F_INF;
    for (int w = 0; w < nw; ++w) m = fmaxf(m, part[w]);
    return m;
}
