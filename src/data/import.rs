//! `zerotrain data import`: token files of nanoGPT and llm.c into a zerotrain dataset.
//!
//! - nanoGPT (`train.bin`, `val.bin`): no header, a stream of little-endian uint16
//!   GPT-2 ids (`np.memmap(..., dtype=np.uint16)`).
//! - llm.c (`*_train*.bin`, `*_val*.bin`, dev/data/data_common.py `write_datafile`): a
//!   header of 256 little-endian int32 (1024 bytes): `[0]` magic, `[1]` version, `[2]`
//!   token count, the rest 0; then the tokens, little-endian. GPT-2 files are magic
//!   20240520, version 1, uint16 ids; LLaMA-3 files are magic 20240801, version 7,
//!   uint32 ids.
//!
//! Every file is checked before anything is written (size, header fields, the count
//! against the file size exactly); token ids are checked against the vocabulary while
//! they are copied. The files of a split are concatenated in the order given and cut
//! into shards, each streamed through the writer in chunks: memory stays at one chunk.
use super::error::DataError;
use super::gpt2_bpe;
use super::manifest::{Kind, Manifest, Split};
use super::writer::{even_ranges, DatasetWriter};
use anyhow::{bail, Result};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Token file formats `data import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    /// nanoGPT's raw uint16 `train.bin` / `val.bin`.
    Nanogpt,
    /// llm.c's `.bin` token files (1024-byte header).
    Llmc,
}

/// Options of `data import`.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub files: Vec<PathBuf>,
    pub out: PathBuf,
    pub format: ImportFormat,
    /// Split of every file; None: from each file's name (`train` / `val` in it).
    pub split: Option<Split>,
    pub shards: usize,
    pub val_shards: usize,
    /// Ids must be below it; None: the tokenizer's (50257 for GPT-2).
    pub vocab_size: Option<usize>,
}

/// What a file's tokens are: element width and tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TokenKind {
    /// Bytes per token (2: uint16, 4: uint32).
    width: usize,
    /// Manifest `tokenizer`.
    tokenizer: &'static str,
    /// The tokenizer's vocabulary size.
    vocab: usize,
}

const GPT2: TokenKind = TokenKind {
    width: 2,
    tokenizer: "gpt2",
    vocab: gpt2_bpe::VOCAB_SIZE,
};
const LLAMA3: TokenKind = TokenKind {
    width: 4,
    tokenizer: "llama3",
    vocab: 128256,
};

/// llm.c's header: 256 int32.
const LLMC_HEADER_BYTES: u64 = 1024;
/// (magic, version, tokens) of the llm.c formats.
const LLMC_KINDS: [(i32, i32, TokenKind); 2] = [(20240520, 1, GPT2), (20240801, 7, LLAMA3)];

/// One checked input file: its tokens are `count` elements from byte `offset`.
#[derive(Debug)]
struct Input {
    path: PathBuf,
    split: Split,
    offset: u64,
    count: u64,
    kind: TokenKind,
}

fn bad(path: &Path, msg: impl std::fmt::Display) -> DataError {
    DataError::shard(path, msg)
}

/// The split a file's name says: a `train` or `val` word in its stem
/// (`train.bin`, `tiny_shakespeare_val.bin`, `fineweb_train_000001.bin`).
fn split_by_name(path: &Path) -> Result<Split, DataError> {
    let stem = path.file_stem().map(|s| s.to_string_lossy().to_lowercase());
    let stem = stem.unwrap_or_default();
    let words: Vec<&str> = stem.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    let has = |w: &[&str]| words.iter().any(|x| w.contains(x));
    match (has(&["train"]), has(&["val", "valid", "validation"])) {
        (true, false) => Ok(Split::Train),
        (false, true) => Ok(Split::Val),
        _ => Err(bad(
            path,
            "split: the file name says neither train nor val (give --split train|val)",
        )),
    }
}

/// Checks a file's size and header; returns where its tokens are.
fn check_file(path: &Path, format: ImportFormat, split: Split) -> Result<Input, DataError> {
    let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let size = f.metadata().map_err(|e| DataError::io(path, e))?.len();
    let (offset, count, kind) = match format {
        ImportFormat::Nanogpt => {
            if size % 2 != 0 {
                return Err(bad(
                    path,
                    format!(
                        "file size: expected an even number of bytes (nanoGPT tokens are \
                         uint16), found {size}"
                    ),
                ));
            }
            (0, size / 2, GPT2)
        }
        ImportFormat::Llmc => {
            if size < LLMC_HEADER_BYTES {
                return Err(bad(
                    path,
                    format!(
                        "header: expected {LLMC_HEADER_BYTES} bytes (256 int32), found a \
                         file of {size} bytes"
                    ),
                ));
            }
            let mut h = [0u8; 12];
            f.read_exact(&mut h).map_err(|e| DataError::io(path, e))?;
            let field =
                |i: usize| i32::from_le_bytes([h[4 * i], h[4 * i + 1], h[4 * i + 2], h[4 * i + 3]]);
            let (magic, version, n) = (field(0), field(1), field(2));
            let Some(&(_, want_version, kind)) = LLMC_KINDS.iter().find(|k| k.0 == magic) else {
                return Err(bad(
                    path,
                    format!(
                        "header[0] (magic): expected 20240520 (GPT-2 tokens) or 20240801 \
                         (LLaMA-3 tokens), found {magic}"
                    ),
                ));
            };
            if version != want_version {
                return Err(bad(
                    path,
                    format!(
                        "header[1] (version): expected {want_version} for magic {magic}, \
                         found {version}"
                    ),
                ));
            }
            if n < 0 {
                return Err(bad(
                    path,
                    format!("header[2] (token count): expected a count >= 0, found {n}"),
                ));
            }
            let want = LLMC_HEADER_BYTES + n as u64 * kind.width as u64;
            if size != want {
                return Err(bad(
                    path,
                    format!(
                        "header[2] (token count): {n} tokens of {} bytes need a file of \
                         {want} bytes, found {size}",
                        kind.width
                    ),
                ));
            }
            (LLMC_HEADER_BYTES, n as u64, kind)
        }
    };
    if count == 0 {
        return Err(bad(path, "tokens: expected at least one token, found none"));
    }
    Ok(Input {
        path: path.to_path_buf(),
        split,
        offset,
        count,
        kind,
    })
}

/// Tokens of the split's files, concatenated, read in order one chunk at a time.
struct Reader<'a> {
    inputs: Vec<&'a Input>,
    /// Current input and tokens already read from it.
    at: usize,
    done: u64,
    file: Option<std::io::BufReader<std::fs::File>>,
    vocab: usize,
}

impl<'a> Reader<'a> {
    /// Fills `out` with the next `n` tokens, checking each id against the vocabulary.
    fn read(&mut self, n: usize, out: &mut Vec<u32>) -> Result<(), DataError> {
        out.clear();
        while out.len() < n {
            let Some(input) = self.inputs.get(self.at).copied() else {
                return Err(bad(Path::new("import"), "read past the last file (a bug)"));
            };
            if self.done == input.count {
                (self.at, self.done, self.file) = (self.at + 1, 0, None);
                continue;
            }
            if self.file.is_none() {
                let mut f =
                    std::fs::File::open(&input.path).map_err(|e| DataError::io(&input.path, e))?;
                f.seek(SeekFrom::Start(input.offset))
                    .map_err(|e| DataError::io(&input.path, e))?;
                self.file = Some(std::io::BufReader::with_capacity(1 << 20, f));
            }
            let take = ((n - out.len()) as u64).min(input.count - self.done) as usize;
            let w = input.kind.width;
            let mut bytes = vec![0u8; take * w];
            if let Some(f) = self.file.as_mut() {
                f.read_exact(&mut bytes)
                    .map_err(|e| DataError::io(&input.path, e))?;
            }
            for (i, c) in bytes.chunks_exact(w).enumerate() {
                let id = match w {
                    2 => u16::from_le_bytes([c[0], c[1]]) as u32,
                    _ => u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                };
                if id as usize >= self.vocab {
                    return Err(DataError::OutOfRange {
                        path: input.path.clone(),
                        what: "token id",
                        position: self.done + i as u64,
                        value: id as i64,
                        limit: self.vocab,
                    });
                }
                out.push(id);
            }
            self.done += take as u64;
        }
        Ok(())
    }
}

/// Tokens copied per write.
const CHUNK: usize = 1 << 20;

/// Checks every file, then writes the dataset to `out` (shards, the manifest last; for
/// GPT-2 tokens also the Hugging Face tokenizer files).
pub fn import(o: &ImportOptions) -> Result<Manifest> {
    if o.files.is_empty() {
        bail!("data import: give at least one token FILE");
    }
    if o.shards == 0 || o.val_shards == 0 {
        bail!("--shards and --val-shards must be at least 1");
    }
    let mut inputs = Vec::with_capacity(o.files.len());
    for p in &o.files {
        let split = match o.split {
            Some(s) => s,
            None => split_by_name(p)?,
        };
        inputs.push(check_file(p, o.format, split)?);
    }
    let kind = inputs[0].kind;
    if let Some(i) = inputs.iter().find(|i| i.kind != kind) {
        bail!(
            "{}: holds {} tokens, but {} holds {} tokens: one dataset has one tokenizer",
            i.path.display(),
            i.kind.tokenizer,
            inputs[0].path.display(),
            kind.tokenizer
        );
    }
    let vocab = o.vocab_size.unwrap_or(kind.vocab);
    if vocab == 0 || vocab > 1 << 32 {
        bail!("--vocab-size must be in 1..=4294967296, got {vocab}");
    }
    let mut m = Manifest::new(Kind::Tokens);
    m.tokenizer = Some(kind.tokenizer.into());
    m.vocab_size = vocab;
    let mut w = DatasetWriter::new(&o.out, m)?;
    if kind == GPT2 {
        gpt2_bpe::write_hf_files(&o.out)?;
    }
    let mut buf = Vec::with_capacity(CHUNK);
    for (split, shards) in [(Split::Train, o.shards), (Split::Val, o.val_shards)] {
        let files: Vec<&Input> = inputs.iter().filter(|i| i.split == split).collect();
        let total: u64 = files.iter().map(|i| i.count).sum();
        if split == Split::Train && total == 0 {
            bail!("data import: no train file (name one train.bin, or give --split train)");
        }
        if total == 0 {
            continue;
        }
        if total < shards as u64 {
            bail!(
                "the {} files hold {total} tokens: too few for {shards} shards",
                split.name()
            );
        }
        let mut reader = Reader {
            inputs: files,
            at: 0,
            done: 0,
            file: None,
            vocab,
        };
        for r in even_ranges(total as usize, shards) {
            let mut shard = w.begin_tokens(split, r.len())?;
            let mut left = r.len();
            while left > 0 {
                reader.read(left.min(CHUNK), &mut buf)?;
                shard.write(&buf)?;
                left -= buf.len();
            }
            shard.finish()?;
        }
    }
    Ok(w.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_from_the_file_name() {
        let s = |n: &str| split_by_name(Path::new(n)).ok();
        assert_eq!(s("data/train.bin"), Some(Split::Train));
        assert_eq!(s("val.bin"), Some(Split::Val));
        assert_eq!(s("tiny_shakespeare_val.bin"), Some(Split::Val));
        assert_eq!(s("fineweb_train_000001.bin"), Some(Split::Train));
        assert_eq!(s("interval.bin"), None);
        assert_eq!(s("tokens.bin"), None);
    }
}
