// Optimizer kernels: the sum of squares for the gradient norm and the fused SGD and
// Adam/AdamW updates. Each update does, per element, the IEEE operations of
// src/optim/sgd.rs and src/optim/adam.rs in the same order (no FMA contraction), with
// the per-step scalars computed on the host, so it rounds exactly as the CPU does.
// Launch: 1-D grid of 256-thread blocks, grid-stride (sum_f64: one block).

// x: (n); partial: (gridDim.x). partial[b] = Σ x[i]² over the elements block b visits,
// in f64 (each square is exact in f64).
extern "C" __global__ void sum_squares_partial_f32(double* partial, const float* x, u64 n) {
    double s = 0.0;
    for (u64 i = GID; i < n; i += GSTRIDE) {
        double v = (double)x[i];
        s += v * v;
    }
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// partial: (m); out: (1) = Σ partial, in f64 and a fixed order. Launch: one block.
extern "C" __global__ void sum_f64(double* out, const double* partial, u64 m) {
    double s = 0.0;
    for (u64 i = threadIdx.x; i < m; i += blockDim.x) s += partial[i];
    s = block_sum(s);
    if (threadIdx.x == 0) out[0] = s;
}

// p, g: (n); buf: (n) when has_buf (momentum), else unused. SGD as optim/sgd.rs:
// g' = g + wd p (when decay), buf = mu buf + g', p -= lr buf (without buf: p -= lr g').
extern "C" __global__ void sgd_f32(float* p, const float* g, float* buf, u64 n, float lr, float mu,
                                   float wd, int decay, int has_buf) {
    for (u64 i = GID; i < n; i += GSTRIDE) {
        float gi = g[i];
        if (decay) gi = gi + wd * p[i];
        if (has_buf) {
            float b = mu * buf[i] + gi;
            buf[i] = b;
            p[i] = p[i] - lr * b;
        } else {
            p[i] = p[i] - lr * gi;
        }
    }
}

// Weight-decay forms of adam_f32, as cuda/backend.rs passes optim::AdamDecay.
#define ADAM_NO_DECAY 0
#define ADAM_L2 1
#define ADAM_DECOUPLED 2

// p, g, m, v: (n). Adam/AdamW as optim/adam.rs, with its AdamCoef scalars:
// p *= shrink (decoupled), g' = g + l2 p (L2), m += (1-b1) (g' - m),
// v = b2 v + (1-b2) g'², p -= step_size m / (sqrt(v) / bc2_sqrt + eps).
extern "C" __global__ void adam_f32(float* p, const float* g, float* m, float* v, u64 n,
                                    float one_m_b1, float b2, float one_m_b2, float step_size,
                                    float bc2_sqrt, float eps, float l2, float shrink, int decay) {
    for (u64 i = GID; i < n; i += GSTRIDE) {
        float pi = p[i];
        if (decay == ADAM_DECOUPLED) pi = pi * shrink;
        float gi = g[i];
        if (decay == ADAM_L2) gi = gi + l2 * pi;
        float mi = m[i];
        mi = mi + one_m_b1 * (gi - mi);
        float vi = b2 * v[i] + one_m_b2 * gi * gi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * (mi / denom);
    }
}
