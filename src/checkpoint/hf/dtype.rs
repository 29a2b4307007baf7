//! Element conversions between zerotrain's f32 parameters and safetensors' stored
//! dtypes, through the backends' typed host storage (`device::Store`), so export and
//! import round exactly as training's bf16/fp16 parameters do (round to nearest even).
//! safetensors stores little-endian; so does every target zerotrain builds for.
use crate::device::Store;
use crate::dtype::DType;
use safetensors::Dtype;

/// The safetensors dtype of `d`.
pub fn to_st(d: DType) -> Dtype {
    match d {
        DType::Fp32 => Dtype::F32,
        DType::Bf16 => Dtype::BF16,
        DType::Fp16 => Dtype::F16,
    }
}

/// The zerotrain dtype of a stored safetensors dtype, if it is one zerotrain reads.
pub fn from_st(d: Dtype) -> Option<DType> {
    match d {
        Dtype::F32 => Some(DType::Fp32),
        Dtype::BF16 => Some(DType::Bf16),
        Dtype::F16 => Some(DType::Fp16),
        _ => None,
    }
}

/// `values` rounded to `d`, as little-endian bytes (`values.len() * d.bytes()`).
pub fn encode(values: &[f32], d: DType) -> Vec<u8> {
    let mut s = Store::zeros(d, values.len());
    s.write_f32(0, values);
    s.bytes_of(0..values.len()).to_vec()
}

/// `out[i]` = element i of `bytes` (stored as `d`, `out.len() * d.bytes()` bytes) as f32.
pub fn decode(bytes: &[u8], d: DType, out: &mut [f32]) {
    let n = out.len();
    let mut s = Store::zeros(d, n);
    s.bytes_of_mut(0..n).copy_from_slice(bytes);
    s.read_f32(0..n, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rounds_like_training() {
        let v = [1.0f32, -0.1, 2.7182817, 65504.0, 1e-8];
        for d in [DType::Fp32, DType::Bf16, DType::Fp16] {
            let b = encode(&v, d);
            assert_eq!(b.len(), v.len() * d.bytes());
            let mut out = [0.0f32; 5];
            decode(&b, d, &mut out);
            let mut s = Store::zeros(d, 5);
            s.write_f32(0, &v);
            let mut want = [0.0f32; 5];
            s.read_f32(0..5, &mut want);
            assert_eq!(out, want, "{d:?}");
            assert_eq!(from_st(to_st(d)), Some(d));
        }
    }
}
