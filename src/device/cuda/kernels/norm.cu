// LayerNorm over the last dimension, eps = 1e-5. Row kernels: one warp per row, 8 warps
// per 256-thread block. Parameter-gradient kernel: block (32, 32) over 32-column tiles.
#define LN_EPS 1e-5f

// x, out: (rows, c); mean, rstd: (rows); w, b: (c)
extern "C" __global__ void layernorm_fwd_f32(float* out, float* mean, float* rstd, const float* x,
                                             const float* w, const float* b, u64 rows, u64 c) {
    u64 r = (u64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= rows) return;
    const float* xr = x + r * c;
    float s = 0.0f;
    for (u64 j = lane; j < c; j += 32) s += xr[j];
    float mu = warp_sum(s) / (float)c;
    float v = 0.0f;
    for (u64 j = lane; j < c; j += 32) v += (xr[j] - mu) * (xr[j] - mu);
    float var = warp_sum(v) / (float)c;
    float rs = 1.0f / sqrtf(var + LN_EPS);
    float* o = out + r * c;
    for (u64 j = lane; j < c; j += 32) o[j] = (xr[j] - mu) * rs * w[j] + b[j];
    if (lane == 0) { mean[r] = mu; rstd[r] = rs; }
}

// dx, dout, x: (rows, c); w: (c); mean, rstd: (rows).
// dx += rstd * (dout*w - mean_j(dout*w) - norm * mean_j(dout*w*norm)), norm = (x-mean)*rstd.
extern "C" __global__ void layernorm_bwd_dx_f32(float* dx, const float* dout, const float* x,
                                                const float* w, const float* mean, const float* rstd,
                                                u64 rows, u64 c) {
    u64 r = (u64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= rows) return;
    const float *dr = dout + r * c, *xr = x + r * c;
    float mu = mean[r], rs = rstd[r];
    float s1 = 0.0f, s2 = 0.0f;
    for (u64 j = lane; j < c; j += 32) {
        float dn = dr[j] * w[j];
        s1 += dn;
        s2 += dn * (xr[j] - mu) * rs;
    }
    s1 = warp_sum(s1) / (float)c;
    s2 = warp_sum(s2) / (float)c;
    float* d = dx + r * c;
    for (u64 j = lane; j < c; j += 32) {
        float norm = (xr[j] - mu) * rs;
        d[j] += rs * (dr[j] * w[j] - s1 - norm * s2);
    }
}

// dout, x: (rows, c); mean, rstd: (rows); dw, db: (c).
// dw[j] += sum_r dout[r, j] * norm[r, j]; db[j] += sum_r dout[r, j].
extern "C" __global__ void layernorm_bwd_params_f32(float* dw, float* db, const float* dout,
                                                    const float* x, const float* mean,
                                                    const float* rstd, u64 rows, u64 c) {
    __shared__ float pw[32][33], pb[32][33];
    u64 j = (u64)blockIdx.x * 32 + threadIdx.x;
    float sw = 0.0f, sb = 0.0f;
    if (j < c)
        for (u64 r = threadIdx.y; r < rows; r += 32) {
            float d = dout[r * c + j];
            sb += d;
            sw += d * ((x[r * c + j] - mean[r]) * rstd[r]);
        }
    pw[threadIdx.y][threadIdx.x] = sw;
    pb[threadIdx.y][threadIdx.x] = sb;
    __syncthreads();
    if (threadIdx.y == 0 && j < c) {
        float tw = 0.0f, tb = 0.0f;
        for (int k = 0; k < 32; ++k) { tw += pw[k][threadIdx.x]; tb += pb[k][threadIdx.x]; }
        dw[j] += tw;
        db[j] += tb;
    }
}
