//! GPT-2 byte-level BPE (`--tokenizer gpt2`): encode, decode, and the Hugging Face
//! tokenizer files (`vocab.json`, `merges.txt`) derived from the same ranks.
//!
//! The vocabulary is tiktoken's `r50k_base` (= "gpt2"), which the `tiktoken-rs` crate
//! carries inside itself (nothing is downloaded): 50,256 byte-sequence tokens, id = BPE
//! rank, plus `<|endoftext|>` = 50256. Ids 0..=255 are the single bytes (in GPT-2's
//! byte-to-unicode order, not byte order); each id >= 256 is one merge of two lower ids.
use super::error::DataError;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use tiktoken_rs::CoreBPE;

/// Token count of the vocabulary, `<|endoftext|>` included (what the manifest records;
/// model configs usually round `model.vocab` up, e.g. to 50304).
pub const VOCAB_SIZE: usize = 50257;
/// `<|endoftext|>`: written between documents.
pub const EOT: u32 = 50256;
/// Its text, as in `vocab.json`.
pub const EOT_TEXT: &str = "<|endoftext|>";
/// The Hugging Face tokenizer files written into a gpt2 dataset directory.
pub const HF_FILES: [&str; 2] = ["vocab.json", "merges.txt"];

fn bpe() -> &'static CoreBPE {
    tiktoken_rs::r50k_base_singleton()
}

/// Token ids of `text` (ordinary text: `<|endoftext|>` written in it is plain text).
pub fn encode(text: &str) -> Vec<u32> {
    bpe().encode_ordinary(text)
}

/// The bytes of `ids` (`<|endoftext|>` decodes to its text); an id outside the
/// vocabulary decodes to U+FFFD. Bytes, not text: a multi-byte character may span ids,
/// so callers convert to UTF-8 once, at the end.
pub fn decode(ids: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * 4);
    for &id in ids {
        match bpe().decode_bytes(&[id]) {
            Ok(b) => out.extend_from_slice(&b),
            Err(_) => out.extend_from_slice("\u{FFFD}".as_bytes()),
        }
    }
    out
}

/// The bytes of every ordinary token, indexed by id (0..50256).
fn token_bytes() -> Vec<Vec<u8>> {
    (0..EOT)
        .map(|id| bpe().decode_bytes(&[id]).unwrap_or_default())
        .collect()
}

/// GPT-2's byte-to-unicode table: printable Latin-1 bytes map to themselves, the other
/// 68 bytes to U+0100.. in byte order (how `vocab.json` and `merges.txt` spell bytes).
pub fn byte_to_unicode() -> [char; 256] {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || b >= 0xae;
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        let c = if printable(b) {
            b
        } else {
            next += 1;
            next - 1
        };
        table[b as usize] = char::from_u32(c).unwrap_or('\u{FFFD}');
    }
    table
}

/// One BPE merge: the byte strings of its left and right token.
type Merge = (Vec<u8>, Vec<u8>);

/// The merge that made each multi-byte token, in rank order: `(left, right)` byte
/// strings. Recovered from the ranks alone: BPE over the token's bytes with only lower
/// ranks allowed ends in exactly two parts, the pair of its merge.
fn merges(tokens: &[Vec<u8>]) -> Result<Vec<Merge>, String> {
    let rank: HashMap<&[u8], usize> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_slice(), i))
        .collect();
    let mut out = Vec::new();
    for (id, tok) in tokens.iter().enumerate().filter(|(_, t)| t.len() > 1) {
        // Parts as byte ranges of `tok`; merge the lowest-ranked adjacent pair below `id`.
        let mut parts: Vec<std::ops::Range<usize>> = (0..tok.len()).map(|i| i..i + 1).collect();
        loop {
            let best = (0..parts.len() - 1)
                .filter_map(|i| {
                    let r = rank.get(&tok[parts[i].start..parts[i + 1].end])?;
                    (*r < id).then_some((*r, i))
                })
                .min();
            let Some((_, i)) = best else { break };
            parts[i] = parts[i].start..parts[i + 1].end;
            parts.remove(i + 1);
        }
        if parts.len() != 2 {
            return Err(format!(
                "token {id} is not one merge of two lower-ranked tokens ({} parts)",
                parts.len()
            ));
        }
        out.push((
            tok[parts[0].clone()].to_vec(),
            tok[parts[1].clone()].to_vec(),
        ));
    }
    Ok(out)
}

/// Writes `dir/vocab.json` (`{"token": id}` in id order, bytes spelled through
/// [`byte_to_unicode`], `<|endoftext|>` last) and `dir/merges.txt` (`#version: 0.2`,
/// then one `left right` line per merge, in rank order): the files
/// `transformers.GPT2TokenizerFast(vocab_file=..., merges_file=...)` loads.
pub fn write_hf_files(dir: &Path) -> Result<(), DataError> {
    let table = byte_to_unicode();
    let spell = |b: &[u8]| -> String { b.iter().map(|&x| table[x as usize]).collect() };
    let tokens = token_bytes();
    let vocab_path = dir.join(HF_FILES[0]);
    let mut vocab = String::from("{");
    for (id, t) in tokens.iter().enumerate() {
        // serde_json quotes and escapes the key; ids ascend, one entry per line.
        let key = serde_json::to_string(&spell(t))
            .map_err(|e| DataError::shard(&vocab_path, e.to_string()))?;
        vocab += &format!("\n  {key}: {id},");
    }
    vocab += &format!("\n  \"{EOT_TEXT}\": {EOT}\n}}\n");
    let merges_path = dir.join(HF_FILES[1]);
    let merges = merges(&tokens).map_err(|e| DataError::shard(&merges_path, e))?;
    let mut text = String::from("#version: 0.2\n");
    for (l, r) in &merges {
        text += &format!("{} {}\n", spell(l), spell(r));
    }
    write_file(&vocab_path, vocab.as_bytes())?;
    write_file(&merges_path, text.as_bytes())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let mut f = std::fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    f.write_all(bytes).map_err(|e| DataError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_gpt2s() {
        // A few ids every GPT-2 tokenizer agrees on.
        assert_eq!(encode("Hello world"), vec![15496, 995]);
        assert_eq!(encode("\n"), vec![198]);
        assert_eq!(decode(&[EOT]), EOT_TEXT.as_bytes());
        assert_eq!(decode(&[99999]), "\u{FFFD}".as_bytes());
        let t = byte_to_unicode();
        assert_eq!((t[b'!' as usize], t[b' ' as usize], t[0]), ('!', 'Ġ', 'Ā'));
    }

    #[test]
    fn merges_rebuild_every_token() {
        let tokens = token_bytes();
        let m = merges(&tokens).unwrap();
        // GPT-2 has 256 byte tokens and 50,000 merges.
        assert_eq!((tokens.len(), m.len()), (50256, 50000));
        assert_eq!(m[0], (b" ".to_vec(), b"t".to_vec()));
        for ((l, r), t) in m.iter().zip(tokens.iter().filter(|t| t.len() > 1)) {
            assert_eq!([l.as_slice(), r.as_slice()].concat(), *t);
        }
    }
}
