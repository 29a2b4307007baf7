// Elementwise and BLAS-1 kernels. Launch: 1-D grid of 256-thread blocks, grid-stride.

// x: (n); x = v
extern "C" __global__ void fill_f32(float* x, u64 n, float v) {
    for (u64 i = GID; i < n; i += GSTRIDE) x[i] = v;
}

// x: (n); x *= a
extern "C" __global__ void scale_f32(float* x, u64 n, float a) {
    for (u64 i = GID; i < n; i += GSTRIDE) x[i] *= a;
}

// y, x: (n); y += a * x
extern "C" __global__ void axpy_f32(float* y, const float* x, u64 n, float a) {
    for (u64 i = GID; i < n; i += GSTRIDE) y[i] += a * x[i];
}

// out: (rows, cols); bias: (cols) when has_bias; resid: (rows, cols) when has_resid.
// out[r, j] += resid[r, j] + bias[j], in the CPU backend's order.
extern "C" __global__ void bias_residual_f32(float* out, const float* bias, const float* resid,
                                             u64 rows, u64 cols, int has_bias, int has_resid) {
    u64 n = rows * cols;
    for (u64 i = GID; i < n; i += GSTRIDE) {
        if (has_bias && has_resid) out[i] += resid[i] + bias[i % cols];
        else if (has_bias) out[i] += bias[i % cols];
        else if (has_resid) out[i] += resid[i];
    }
}

// dout: (rows, cols); db: (cols) += column sums of dout.
// Block (32, 32): threadIdx.x picks a column of a 32-wide tile, threadIdx.y strides rows.
extern "C" __global__ void colsum_add_f32(float* db, const float* dout, u64 rows, u64 cols) {
    __shared__ float part[32][33];
    u64 j = (u64)blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f;
    if (j < cols)
        for (u64 r = threadIdx.y; r < rows; r += 32) s += dout[r * cols + j];
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && j < cols) {
        float t = 0.0f;
        for (int k = 0; k < 32; ++k) t += part[k][threadIdx.x];
        db[j] += t;
    }
}

// tanh(u) = 1 - 2 / (exp(2u) + 1), the CPU backend's formula.
__device__ __forceinline__ float tanh_exp(float u) { return 1.0f - 2.0f / (expf(2.0f * u) + 1.0f); }

#define SQRT_2_OVER_PI 0.7978846f
#define GELU_A 0.044715f

// out, x: (n); out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
extern "C" __global__ void gelu_fwd_f32(float* out, const float* x, u64 n) {
    for (u64 i = GID; i < n; i += GSTRIDE) {
        float v = x[i];
        float u = SQRT_2_OVER_PI * (v + GELU_A * v * v * v);
        out[i] = 0.5f * v * (1.0f + tanh_exp(u));
    }
}

// d, x: (n); d *= gelu'(x)
extern "C" __global__ void gelu_bwd_f32(float* d, const float* x, u64 n) {
    for (u64 i = GID; i < n; i += GSTRIDE) {
        float v = x[i];
        float u = SQRT_2_OVER_PI * (v + GELU_A * v * v * v);
        float th = tanh_exp(u);
        float du = SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_A * v * v);
        float g = 0.5f * (1.0f + th) + 0.5f * v * (1.0f - th * th) * du;
        d[i] *= g;
    }
}

// x: (n); x = max(x, 0)
extern "C" __global__ void relu_fwd_f32(float* x, u64 n) {
    for (u64 i = GID; i < n; i += GSTRIDE) x[i] = fmaxf(x[i], 0.0f);
}

// d, y: (n); d = 0 where y <= 0
extern "C" __global__ void relu_bwd_f32(float* d, const float* y, u64 n) {
    for (u64 i = GID; i < n; i += GSTRIDE)
        if (y[i] <= 0.0f) d[i] = 0.0f;
}
