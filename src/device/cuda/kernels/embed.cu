// Token plus position embedding. Launch: 1-D grid of 256-thread blocks, grid-stride.

// out: (b*t, c); ids: (b*t); wte: (vocab, c); wpe: (t, c).
// out[r, j] = wte[ids[r], j] + wpe[r % t, j]; an id >= vocab gives NaN (never read past wte).
extern "C" __global__ void embedding_fwd_f32(float* out, const unsigned* ids, const float* wte,
                                             const float* wpe, u64 n, u64 t, u64 c, u64 vocab) {
    for (u64 i = GID; i < n * c; i += GSTRIDE) {
        u64 r = i / c, j = i % c;
        u64 tok = ids[r];
        out[i] = tok < vocab ? wte[tok * c + j] + wpe[(r % t) * c + j] : F_NAN;
    }
}

// dout: (b*t, c); dwte[ids[r], j] += dout[r, j] (atomics: ids repeat); ids >= vocab skipped.
extern "C" __global__ void embedding_bwd_wte_f32(float* dwte, const float* dout, const unsigned* ids,
                                                 u64 n, u64 c, u64 vocab) {
    for (u64 i = GID; i < n * c; i += GSTRIDE) {
        u64 tok = ids[i / c];
        if (tok < vocab) atomicAdd(&dwte[tok * c + i % c], dout[i]);
    }
}

// dout: (b, t, c); dwpe: (t, c); dwpe[p, j] += dout[s, p, j] for s = 0..b in order (as the CPU).
extern "C" __global__ void embedding_bwd_wpe_f32(float* dwpe, const float* dout, u64 b, u64 t, u64 c) {
    for (u64 i = GID; i < t * c; i += GSTRIDE) {
        float g = dwpe[i];
        for (u64 s = 0; s < b; ++s) g += dout[s * t * c + i];
        dwpe[i] = g;
    }
}
