//! `zerotrain data prepare`: text files to a token dataset: characters, bytes, or GPT-2
//! BPE (each file one document, `<|endoftext|>` between documents).
//! Split as nanoGPT's shakespeare_char: the first (1 - f) of the tokens are train, the
//! last f are val; train is cut into K contiguous shards, val into `val_shards`.
use super::error::DataError;
use super::gpt2_bpe;
use super::manifest::{Kind, Manifest, Split};
use super::writer::{even_ranges, DatasetWriter};
use anyhow::{bail, Result};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

/// How text becomes token ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tokenizer {
    /// Vocabulary = the sorted unique characters of the text.
    Chars,
    /// Vocabulary = the 256 byte values.
    Bytes,
    /// GPT-2 BPE (50,257 ids); each file is one document, `<|endoftext|>` between them.
    Gpt2,
}

/// Options of `data prepare`.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub texts: Vec<PathBuf>,
    pub out: PathBuf,
    pub tokenizer: Tokenizer,
    /// Train shards.
    pub shards: usize,
    /// Val shards (when the val split is not empty).
    pub val_shards: usize,
    /// Fraction of the tokens, from the end, that form the val split.
    pub val_fraction: f64,
}

/// Character vocabulary: sorted unique characters, id = position.
pub fn char_vocab(chars: impl IntoIterator<Item = char>) -> Vec<char> {
    chars
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Encodes `text` with a character vocabulary (every character must be in it).
pub fn encode_chars(text: &str, vocab: &[char]) -> Option<Vec<u32>> {
    let id: HashMap<char, u32> = vocab
        .iter()
        .enumerate()
        .map(|(i, &c)| (c, i as u32))
        .collect();
    text.chars().map(|c| id.get(&c).copied()).collect()
}

/// Writes the dataset of a token stream: train/val cut and shards.
pub(crate) fn write_token_splits(
    mut w: DatasetWriter,
    train: &[u32],
    val: &[u32],
    shards: usize,
    val_shards: usize,
) -> Result<Manifest> {
    for r in even_ranges(train.len(), shards) {
        w.add_tokens(Split::Train, &train[r])?;
    }
    if !val.is_empty() {
        for r in even_ranges(val.len(), val_shards)
            .into_iter()
            .filter(|r| !r.is_empty())
        {
            w.add_tokens(Split::Val, &val[r])?;
        }
    }
    Ok(w.finish()?)
}

/// Tokenises the texts (concatenated in order) and writes the dataset to `out`; gpt2
/// also writes the Hugging Face tokenizer files (`gpt2_bpe::write_hf_files`).
pub fn prepare(o: &PrepareOptions) -> Result<Manifest> {
    if o.texts.is_empty() {
        bail!("data prepare: give at least one --text FILE");
    }
    if !(0.0..1.0).contains(&o.val_fraction) {
        bail!("--val-fraction must be in [0, 1), got {}", o.val_fraction);
    }
    if o.shards == 0 || o.val_shards == 0 {
        bail!("--shards and --val-shards must be at least 1");
    }
    // Each file's bytes, in order (one document per file).
    let mut docs = Vec::with_capacity(o.texts.len());
    for p in &o.texts {
        let b = std::fs::read(p).map_err(|e| DataError::io(p, e))?;
        if o.tokenizer != Tokenizer::Bytes && std::str::from_utf8(&b).is_err() {
            bail!("{}: not UTF-8 text; use --tokenizer bytes", p.display());
        }
        docs.push(b);
    }
    let mut m = Manifest::new(Kind::Tokens);
    let tokens: Vec<u32> = match o.tokenizer {
        Tokenizer::Bytes => {
            m.tokenizer = Some("bytes".into());
            m.vocab_size = 256;
            docs.iter().flatten().map(|&b| b as u32).collect()
        }
        Tokenizer::Chars => {
            // Each file was checked to be UTF-8, so their concatenation is too.
            let text = String::from_utf8_lossy(&docs.concat()).into_owned();
            let vocab = char_vocab(text.chars());
            m.tokenizer = Some("chars".into());
            m.vocab_size = vocab.len();
            m.vocab = Some(vocab.iter().map(|c| c.to_string()).collect());
            encode_chars(&text, &vocab).unwrap_or_default()
        }
        Tokenizer::Gpt2 => {
            m.tokenizer = Some("gpt2".into());
            m.vocab_size = gpt2_bpe::VOCAB_SIZE;
            let mut ids = Vec::new();
            for (i, d) in docs.iter().enumerate() {
                if i > 0 {
                    ids.push(gpt2_bpe::EOT);
                }
                ids.extend(gpt2_bpe::encode(&String::from_utf8_lossy(d)));
            }
            ids
        }
    };
    let n = tokens.len();
    let n_train = (n as f64 * (1.0 - o.val_fraction)) as usize;
    if n_train < o.shards {
        bail!(
            "the text has {n} tokens, {n_train} for training: too few for {} shards",
            o.shards
        );
    }
    let (train, val) = tokens.split_at(n_train);
    let w = DatasetWriter::new(&o.out, m)?;
    if o.tokenizer == Tokenizer::Gpt2 {
        gpt2_bpe::write_hf_files(&o.out)?;
    }
    write_token_splits(w, train, val, o.shards, o.val_shards)
}
