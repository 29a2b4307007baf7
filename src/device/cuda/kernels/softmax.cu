// Row softmax kernels. Causal attention: one warp per (matrix, row), 8 warps per block.
// Cross-entropy: one 256-thread block per row of logits.

// att: (n, t, t) in place; row i of each matrix: softmax(scale * att[i, 0..=i]), then zeros.
extern "C" __global__ void softmax_causal_fwd_f32(float* att, u64 n, u64 t, float scale) {
    u64 row = (u64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= n * t) return;
    u64 i = row % t;
    float* a = att + row * t;
    float m = -F_INF;
    for (u64 j = lane; j <= i; j += 32) m = fmaxf(m, a[j]);
    m = warp_max(m);
    float s = 0.0f;
    for (u64 j = lane; j <= i; j += 32) {
        float e = expf((a[j] - m) * scale);
        a[j] = e;
        s += e;
    }
    float inv = 1.0f / warp_sum(s);
    for (u64 j = lane; j < t; j += 32) a[j] = j <= i ? a[j] * inv : 0.0f;
}

// d, p: (n, t, t); d holds dP and becomes scale * p * (dP - sum_j p dP), causal (zeros above).
extern "C" __global__ void softmax_causal_bwd_f32(float* d, const float* p, u64 n, u64 t, float scale) {
    u64 row = (u64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= n * t) return;
    u64 i = row % t;
    float* dr = d + row * t;
    const float* pr = p + row * t;
    float dot = 0.0f;
    for (u64 j = lane; j <= i; j += 32) dot += dr[j] * pr[j];
    dot = warp_sum(dot);
    for (u64 j = lane; j < t; j += 32) dr[j] = j <= i ? scale * pr[j] * (dr[j] - dot) : 0.0f;
}

// Row x (length v), over one block: (max_j x_j, sum_j exp(x_j - max)); every thread gets both.
__device__ float2 block_row_max_sumexp(const float* x, u64 v) {
    float m = -F_INF;
    for (u64 j = threadIdx.x; j < v; j += blockDim.x) m = fmaxf(m, x[j]);
    m = block_max(m);
    float s = 0.0f;
    for (u64 j = threadIdx.x; j < v; j += blockDim.x) s += expf(x[j] - m);
    return make_float2(m, block_sum(s));
}

// logits: (rows, v); targets, losses: (rows).
// losses[r] = log(sum_j exp(x_j - max)) + max - x[target]; NaN when target >= v.
extern "C" __global__ void crossentropy_fwd_f32(float* losses, const float* logits,
                                                const unsigned* targets, u64 rows, u64 v) {
    u64 r = blockIdx.x;
    if (r >= rows) return;
    const float* x = logits + r * v;
    float2 ms = block_row_max_sumexp(x, v);
    float m = ms.x, s = ms.y;
    if (threadIdx.x == 0) {
        u64 tg = targets[r];
        losses[r] = tg < v ? logf(s) + m - x[tg] : F_NAN;
    }
}

// logits: (rows, v) in place -> scale * (softmax(logits) - onehot(targets)).
extern "C" __global__ void crossentropy_bwd_f32(float* logits, const unsigned* targets, u64 rows,
                                                u64 v, float scale) {
    u64 r = blockIdx.x;
    if (r >= rows) return;
    float* x = logits + r * v;
    float2 ms = block_row_max_sumexp(x, v);
    float m = ms.x, s = ms.y;
    float k = scale / s;
    u64 tg = targets[r];
    for (u64 j = threadIdx.x; j < v; j += blockDim.x) {
        float e = expf(x[j] - m) * k;
        x[j] = j == tg ? e - scale : e;
    }
}
