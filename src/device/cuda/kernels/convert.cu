// Typed model-state memory (Backend::Mem): elements of fp32, bf16 or fp16, read as f32 and
// written back rounded to nearest even, bit for bit as the `half` crate converts (the CPU
// backend's Store): NaN stays NaN with its quiet bit set and its payload's top bits kept,
// fp16 has subnormals, overflow rounds to infinity. Launch: 1-D grid of 256-thread
// blocks, grid-stride.

// Dtype codes, as cuda/mem.rs passes them.
#define DT_F32 0
#define DT_BF16 1
#define DT_F16 2

typedef unsigned short u16;
typedef unsigned int u32;

__device__ __forceinline__ float bf16_to_f32(u16 h) {
    u32 x = h;
    if ((x & 0x7fffu) > 0x7f80u) x |= 0x0040u;  // NaN: quiet
    return __uint_as_float(x << 16);
}

__device__ __forceinline__ u16 f32_to_bf16(float f) {
    u32 x = __float_as_uint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (u16)((x >> 16) | 0x0040u);  // NaN: quiet
    // Round up when the first dropped bit (0x8000) is set and either a later dropped bit
    // or the last kept bit (0x10000) is: to nearest, ties to even.
    return (u16)((x >> 16) + ((x & 0x8000u) && (x & 0x17fffu)));
}

__device__ float f16_to_f32(u16 h) {
    u32 sign = (u32)(h & 0x8000u) << 16, exp = h & 0x7c00u, man = h & 0x03ffu;
    if ((h & 0x7fffu) == 0) return __uint_as_float(sign);
    if (exp == 0x7c00u)  // infinity, or NaN made quiet
        return __uint_as_float(sign | 0x7f800000u | (man ? 0x00400000u | (man << 13) : 0u));
    if (exp == 0) {  // subnormal: normalise (e: the leading zeros of man in its 10 bits)
        u32 e = __clz(man) - 22;
        return __uint_as_float(sign | ((127 - 15 - e) << 23) | ((man << (14 + e)) & 0x7fffffu));
    }
    return __uint_as_float(sign | (((exp >> 10) + 127 - 15) << 23) | (man << 13));
}

__device__ u16 f32_to_f16(float f) {
    u32 x = __float_as_uint(f);
    u32 hs = (x & 0x80000000u) >> 16, exp = x & 0x7f800000u, man = x & 0x007fffffu;
    if (exp == 0x7f800000u)  // infinity, or NaN made quiet keeping its payload's top bits
        return (u16)(hs | 0x7c00u | (man ? 0x0200u : 0u) | (man >> 13));
    int he = (int)(exp >> 23) - 127 + 15;  // the fp16 biased exponent
    if (he >= 0x1f) return (u16)(hs | 0x7c00u);  // overflow: infinity
    if (he <= 0) {  // fp16 subnormal, or zero
        if (14 - he > 24) return (u16)hs;
        man |= 0x00800000u;
        u32 round = 1u << (13 - he);  // the first dropped bit
        u32 hm = (man >> (14 - he)) + ((man & round) && (man & (3u * round - 1u)));
        return (u16)(hs | hm);
    }
    // normal: a carry out of the mantissa rounds into the exponent (up to infinity)
    u32 h = hs | ((u32)he << 10) | (man >> 13);
    return (u16)(h + ((man & 0x1000u) && (man & 0x2fffu)));
}

// Element i of `p`, of dtype `dt`, as f32.
__device__ __forceinline__ float load_as_f32(const void* p, int dt, u64 i) {
    if (dt == DT_F32) return ((const float*)p)[i];
    u16 h = ((const u16*)p)[i];
    return dt == DT_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

// Element i of `p`, of dtype `dt`, = v rounded to nearest even.
__device__ __forceinline__ void store_from_f32(void* p, int dt, u64 i, float v) {
    if (dt == DT_F32) ((float*)p)[i] = v;
    else ((u16*)p)[i] = dt == DT_BF16 ? f32_to_bf16(v) : f32_to_f16(v);
}

// dst: (n) of dtype dt_dst; src: (n) of dtype dt_src; dst = src, rounded to dt_dst.
extern "C" __global__ void mem_convert(void* dst, int dt_dst, const void* src, int dt_src, u64 n) {
    for (u64 i = GID; i < n; i += GSTRIDE) store_from_f32(dst, dt_dst, i, load_as_f32(src, dt_src, i));
}

// dst: (n) of dtype dt_dst; src: (n) of dtype dt_src; dst += src, summed in f32 and
// rounded once to dt_dst.
extern "C" __global__ void mem_add(void* dst, int dt_dst, const void* src, int dt_src, u64 n) {
    for (u64 i = GID; i < n; i += GSTRIDE)
        store_from_f32(dst, dt_dst, i, load_as_f32(dst, dt_dst, i) + load_as_f32(src, dt_src, i));
}

// x: (n) of dtype dt; x = v rounded to dt.
extern "C" __global__ void mem_fill(void* x, int dt, u64 n, float v) {
    for (u64 i = GID; i < n; i += GSTRIDE) store_from_f32(x, dt, i, v);
}
