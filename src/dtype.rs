//! The element types zerotrain stores and moves: fp32, bf16 and fp16. One enum for the
//! config (`precision.dtype`), the backends' typed memory and the collectives.
use serde::{Deserialize, Serialize};

/// An element type, as a value. Configs and JSON spell it `fp32`, `bf16`, `fp16`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    Fp32,
    Bf16,
    Fp16,
}

impl DType {
    /// Bytes per element.
    pub fn bytes(self) -> usize {
        match self {
            DType::Fp32 => 4,
            DType::Bf16 | DType::Fp16 => 2,
        }
    }

    /// The name used in configs, logs and JSON.
    pub fn name(self) -> &'static str {
        match self {
            DType::Fp32 => "fp32",
            DType::Bf16 => "bf16",
            DType::Fp16 => "fp16",
        }
    }

    /// Parses `fp32`, `bf16`, `fp16` and the usual other spellings (`f32`, `float32`,
    /// `bfloat16`, `f16`, `float16`, `half`).
    pub fn parse(s: &str) -> anyhow::Result<DType> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "f32" | "float32" => Ok(DType::Fp32),
            "bf16" | "bfloat16" => Ok(DType::Bf16),
            "fp16" | "f16" | "float16" | "half" => Ok(DType::Fp16),
            other => anyhow::bail!("unknown dtype '{other}' (expected fp32, bf16 or fp16)"),
        }
    }

    /// Unit roundoff of one rounding to this type: 2^-24 (fp32), 2^-8 (bf16: 8 significant
    /// bits), 2^-11 (fp16: 11 significant bits).
    pub fn unit_roundoff(self) -> f64 {
        match self {
            DType::Fp32 => 2f64.powi(-24),
            DType::Bf16 => 2f64.powi(-8),
            DType::Fp16 => 2f64.powi(-11),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for d in [DType::Fp32, DType::Bf16, DType::Fp16] {
            assert_eq!(DType::parse(d.name()).unwrap(), d);
        }
        assert_eq!(DType::parse("f32").unwrap(), DType::Fp32);
        assert!(DType::parse("int8").is_err());
        assert_eq!(DType::Bf16.bytes(), 2);
    }
}
