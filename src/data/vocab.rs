//! Text <-> token ids for every tokenizer zerotrain writes (what `sample` needs):
//! characters (the manifest's `vocab`), bytes (ids 0..256), GPT-2 BPE.
use super::gpt2_bpe;
use super::manifest::Manifest;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;

/// A dataset's vocabulary, as its manifest describes it.
pub enum Vocab {
    /// `tokens[id]` is the token's string; `ids` the reverse map.
    Chars {
        tokens: Vec<String>,
        ids: HashMap<String, u32>,
    },
    /// Id = byte value.
    Bytes,
    /// GPT-2 BPE (`gpt2_bpe`).
    Gpt2,
}

impl Vocab {
    /// The vocabulary of the dataset in `dir`: its `vocab` list when it has one, else
    /// by `tokenizer` (`bytes`, `gpt2`; a manifest with neither and 256 ids is bytes).
    pub fn load(dir: &Path) -> Result<Vocab> {
        Self::of(&Manifest::load(dir)?).with_context(|| dir.display().to_string())
    }

    /// The vocabulary a manifest describes.
    pub fn of(m: &Manifest) -> Result<Vocab> {
        if let Some(tokens) = &m.vocab {
            let ids = tokens
                .iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), i as u32))
                .collect();
            return Ok(Vocab::Chars {
                tokens: tokens.clone(),
                ids,
            });
        }
        match m.tokenizer.as_deref() {
            Some("bytes") => Ok(Vocab::Bytes),
            None if m.vocab_size == 256 => Ok(Vocab::Bytes),
            Some("gpt2") => Ok(Vocab::Gpt2),
            Some(t) => bail!("tokenizer {t:?}: no vocabulary to encode and decode text with"),
            None => bail!("the manifest has no vocabulary and names no tokenizer"),
        }
    }

    /// Token ids of `text`; characters must be in a character vocabulary.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Vocab::Chars { ids, .. } => text
                .chars()
                .map(|c| {
                    ids.get(c.encode_utf8(&mut [0; 4]) as &str)
                        .copied()
                        .with_context(|| {
                            format!("prompt character {c:?} is not in the dataset's vocabulary")
                        })
                })
                .collect(),
            Vocab::Bytes => Ok(text.bytes().map(u32::from).collect()),
            Vocab::Gpt2 => Ok(gpt2_bpe::encode(text)),
        }
    }

    /// The text of `ids`: bytes and BPE tokens are joined first and converted to UTF-8
    /// once (lossily), so a character split across tokens survives. An id outside the
    /// vocabulary (a model's vocabulary may be larger) reads as U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        match self {
            Vocab::Chars { tokens, .. } => ids
                .iter()
                .map(|&t| tokens.get(t as usize).map_or("\u{FFFD}", String::as_str))
                .collect(),
            Vocab::Bytes => {
                let mut bytes = Vec::with_capacity(ids.len());
                for &t in ids {
                    match u8::try_from(t) {
                        Ok(b) => bytes.push(b),
                        Err(_) => bytes.extend_from_slice("\u{FFFD}".as_bytes()),
                    }
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
            Vocab::Gpt2 => String::from_utf8_lossy(&gpt2_bpe::decode(ids)).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Kind;

    #[test]
    fn each_tokenizer_round_trips() {
        let mut m = Manifest::new(Kind::Tokens);
        m.tokenizer = Some("bytes".into());
        m.vocab_size = 256;
        let v = Vocab::of(&m).unwrap();
        let ids = v.encode("née ✓").unwrap();
        assert_eq!(ids.len(), "née ✓".len());
        assert_eq!(v.decode(&ids), "née ✓");
        assert_eq!(v.decode(&[104, 105, 300]), "hi\u{FFFD}");
        m.tokenizer = Some("gpt2".into());
        let v = Vocab::of(&m).unwrap();
        assert_eq!(v.decode(&v.encode("née ✓ it's").unwrap()), "née ✓ it's");
        m.tokenizer = Some("chars".into());
        m.vocab = Some(vec!["a".into(), "b".into()]);
        let v = Vocab::of(&m).unwrap();
        assert_eq!(v.encode("ab").unwrap(), vec![0, 1]);
        assert!(v.encode("c").is_err());
        m.vocab = None;
        m.tokenizer = Some("llama3".into());
        assert!(Vocab::of(&m).is_err());
    }
}
