//! The one notation of a CRC-32 in zerotrain's JSON files: manifest.json's
//! `shards[].crc32`, meta.json's `files[].crc32` and `config_crc32` are written as 8
//! lowercase hex digits in a string (`"1c2d3e4f"`), as every message and tool shows them.
//! Reading also takes the other notation, an integer 0 to 2^32 - 1 (manifests written
//! before the notation was one, and by h5py code that stores `zlib.crc32(...)` as is).
use serde::{de, Deserializer, Serializer};

/// `crc` as 8 lowercase hex digits.
pub fn hex(crc: u32) -> String {
    format!("{crc:08x}")
}

/// Whether `s` is 8 hex digits (either case).
pub fn is_hex8(s: &str) -> bool {
    s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `#[serde(with = "crate::checksum::notation")]` on a `u32` CRC-32 field: writes 8 hex
/// digits, reads them or an integer.
pub mod notation {
    use super::*;

    pub fn serialize<S: Serializer>(crc: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex(*crc))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        d.deserialize_any(Crc32Visitor)
    }
}

struct Crc32Visitor;

impl de::Visitor<'_> for Crc32Visitor {
    type Value = u32;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a CRC-32: 8 hex digits as a string, or an integer 0 to 4294967295")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
        if !is_hex8(v) {
            return Err(E::custom(format!("CRC-32 {v:?} is not 8 hex digits")));
        }
        u32::from_str_radix(v, 16).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
        u32::try_from(v).map_err(|_| E::custom(format!("CRC-32 {v} is beyond 2^32 - 1")))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
        u32::try_from(v).map_err(|_| E::custom(format!("CRC-32 {v} is not in 0 to 2^32 - 1")))
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct S {
        #[serde(with = "super::notation")]
        crc32: u32,
    }

    #[test]
    fn writes_hex_reads_hex_or_integer() {
        let s = S { crc32: 0x0a1b2c3d };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"crc32":"0a1b2c3d"}"#
        );
        for text in [
            r#"{"crc32":"0a1b2c3d"}"#,
            r#"{"crc32":"0A1B2C3D"}"#,
            r#"{"crc32":169552957}"#,
        ] {
            assert_eq!(serde_json::from_str::<S>(text).unwrap(), s, "{text}");
        }
        for (text, want) in [
            (r#"{"crc32":"a1b2c3d"}"#, "not 8 hex digits"),
            (r#"{"crc32":"0a1b2c3g"}"#, "not 8 hex digits"),
            (r#"{"crc32":4294967296}"#, "beyond 2^32 - 1"),
            (r#"{"crc32":-1}"#, "not in 0 to"),
            (r#"{"crc32":1.5}"#, "a CRC-32"),
        ] {
            let e = serde_json::from_str::<S>(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
