// Attention heads between the token-major and the head-major layouts. Launch: 1-D grid of
// 256-thread blocks, grid-stride over the (B, H, T, hs) elements.

// x: (b, t, x_cols), the c columns at x_col; out: (b, h, t, c/h) at its start.
extern "C" __global__ void heads_split_f32(float* out, const float* x, u64 b, u64 t, u64 c,
                                           u64 h, u64 x_cols, u64 x_col) {
    u64 hs = c / h, n = b * t * c;
    for (u64 i = GID; i < n; i += GSTRIDE) {
        u64 e = i % hs, ti = (i / hs) % t, hh = (i / (hs * t)) % h, s = i / (hs * t * h);
        out[i] = x[(s * t + ti) * x_cols + x_col + hh * hs + e];
    }
}

// The inverse: x (b, h, t, c/h) into the c columns at out_col of out (b, t, out_cols).
extern "C" __global__ void heads_merge_f32(float* out, const float* x, u64 b, u64 t, u64 c,
                                           u64 h, u64 out_cols, u64 out_col) {
    u64 hs = c / h, n = b * t * c;
    for (u64 i = GID; i < n; i += GSTRIDE) {
        u64 e = i % hs, ti = (i / hs) % t, hh = (i / (hs * t)) % h, s = i / (hs * t * h);
        out[(s * t + ti) * out_cols + out_col + hh * hs + e] = x[i];
    }
}
