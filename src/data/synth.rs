//! `zerotrain data synth`: generated datasets a small model can learn, seeded.
//! - `addition`: lines `a+b=c\n` with a, b < 10^digits, as characters; with
//!   `reverse_sum` the sum's digits come least-significant first (`48+39=78`), the order
//!   in which a model can compute them one carry at a time. The val problems are held
//!   out: no (a, b) pair of val appears in train.
//! - `classify`: x ~ N(0, 1) in d dimensions, labelled by a fixed random teacher MLP.
use super::error::DataError;
use super::manifest::{Kind, Manifest, Split};
use super::prepare::{char_vocab, encode_chars, write_token_splits};
use super::rng::{rng_for, SYNTH};
use super::shard::Shard;
use super::teacher::Teacher;
use super::writer::{even_ranges, DatasetWriter};
use anyhow::{bail, Result};
use rand::Rng;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The generated task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Task {
    Addition,
    Classify,
}

/// Options of `data synth`.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub task: Task,
    pub out: PathBuf,
    pub seed: u64,
    /// Train problems (addition) or rows (classify).
    pub count: usize,
    /// Val problems or rows.
    pub val_count: usize,
    /// addition: digits of each operand (1..=9).
    pub digits: u32,
    /// addition: zero-pad operands to `digits` and sums to `digits + 1`.
    pub pad: bool,
    /// addition: write each sum's digits least-significant first (recorded in the
    /// manifest as `reverse_sum`).
    pub reverse_sum: bool,
    /// classify: feature dimension, classes, teacher hidden width (0 = linear).
    pub features: usize,
    pub classes: usize,
    pub hidden: usize,
    pub shards: usize,
    pub val_shards: usize,
}

/// Characters of the addition task; the vocabulary is them sorted.
const ADDITION_CHARS: &str = "0123456789+=\n";

/// Generates the dataset and writes it to `o.out`.
pub fn synth(o: &SynthOptions) -> Result<Manifest> {
    if o.count == 0 || o.shards == 0 || o.val_shards == 0 {
        bail!("data synth: --count, --shards and --val-shards must be at least 1");
    }
    if o.count < o.shards {
        bail!(
            "data synth: --count {} is less than --shards {}",
            o.count,
            o.shards
        );
    }
    match o.task {
        Task::Addition => addition(o),
        Task::Classify => classify(o),
    }
}

fn addition(o: &SynthOptions) -> Result<Manifest> {
    if !(1..=9).contains(&o.digits) {
        bail!("--digits must be in 1..=9, got {}", o.digits);
    }
    let lim = 10u64.pow(o.digits);
    let space = lim * lim;
    if o.val_count as u64 > space / 2 {
        bail!(
            "--val-count {} is more than half of the {space} distinct problems with {} digits",
            o.val_count,
            o.digits
        );
    }
    let mut r = rng_for(&[o.seed, SYNTH, 0xadd]);
    let pick = |r: &mut rand_chacha::ChaCha8Rng| (r.gen_range(0..lim), r.gen_range(0..lim));
    let mut val = Vec::with_capacity(o.val_count);
    let mut held = HashSet::new();
    while val.len() < o.val_count {
        let p = pick(&mut r);
        if held.insert(p) {
            val.push(p);
        }
    }
    let mut train = Vec::with_capacity(o.count);
    while train.len() < o.count {
        let p = pick(&mut r);
        if !held.contains(&p) {
            train.push(p);
        }
    }
    let vocab = char_vocab(ADDITION_CHARS.chars());
    let (w, s) = (o.digits as usize, o.digits as usize + 1);
    let encode = |ps: &[(u64, u64)]| {
        let text: String = ps
            .iter()
            .map(|(a, b)| {
                let (sum, prompt) = match o.pad {
                    true => (format!("{:0s$}", a + b), format!("{a:0w$}+{b:0w$}=")),
                    false => ((a + b).to_string(), format!("{a}+{b}=")),
                };
                // Written as read back, reversed: reversing undoes itself.
                let sum = addition_answer_as_read(&sum, o.reverse_sum);
                format!("{prompt}{sum}\n")
            })
            .collect();
        encode_chars(&text, &vocab).unwrap_or_default()
    };
    let mut m = Manifest::new(Kind::Tokens);
    m.tokenizer = Some("chars".into());
    m.task = Some("addition".into());
    m.reverse_sum = Some(o.reverse_sum);
    m.vocab_size = vocab.len();
    m.vocab = Some(vocab.iter().map(|c| c.to_string()).collect());
    let w = DatasetWriter::new(&o.out, m)?;
    write_token_splits(w, &encode(&train), &encode(&val), o.shards, o.val_shards)
}

fn classify(o: &SynthOptions) -> Result<Manifest> {
    if o.features == 0 || o.classes < 2 {
        bail!("--features must be at least 1 and --classes at least 2");
    }
    let teacher = Teacher::new(o.seed, o.features, o.hidden, o.classes);
    let mut m = Manifest::new(Kind::Classify);
    m.task = Some("classify".into());
    m.features = o.features;
    m.classes = o.classes;
    let mut w = DatasetWriter::new(&o.out, m)?;
    let d = o.features;
    for (split, n, k, tag) in [
        (Split::Train, o.count, o.shards, 1u64),
        (Split::Val, o.val_count, o.val_shards, 2),
    ] {
        let mut r = rng_for(&[o.seed, SYNTH, tag]);
        for range in even_ranges(n, k).into_iter().filter(|r| !r.is_empty()) {
            // x: (rows, d) row-major
            let mut x = vec![0f32; range.len() * d];
            let y: Vec<u32> = x
                .chunks_mut(d)
                .map(|row| teacher.sample(&mut r, row))
                .collect();
            w.add_rows(split, &x, &y)?;
        }
    }
    Ok(w.finish()?)
}

/// A model's (or a data line's) answer to an addition prompt as a person reads it, most
/// significant digit first: `reverse_sum` (the manifest's field) turns `"78"` into `"87"`.
pub fn addition_answer_as_read(written: &str, reverse_sum: bool) -> String {
    match reverse_sum {
        true => written.chars().rev().collect(),
        false => written.to_string(),
    }
}

/// The held-out addition problems of a `data synth --task addition` dataset, read back
/// from its val split: (prompt `"482+139="`, answer `"621"`), in file order. The answer
/// reads most-significant digit first even where the data writes it reversed
/// (`reverse_sum`; compare a model's answer through [`addition_answer_as_read`]).
pub fn addition_val_problems(dir: &Path) -> Result<Vec<(String, String)>> {
    let m = Manifest::load(dir)?;
    let mpath = dir.join(super::manifest::MANIFEST);
    if m.task.as_deref() != Some("addition") {
        bail!(
            "{}: not an addition dataset (task = {:?})",
            mpath.display(),
            m.task
        );
    }
    let Some(vocab) = &m.vocab else {
        bail!("{}: addition dataset without a vocab list", mpath.display());
    };
    let mut text = String::new();
    for (_, e) in m.split(Split::Val) {
        let s = Shard::open(dir, &m, e)?;
        let mut ids = vec![0u32; e.count as usize];
        s.read_tokens(0, &mut ids, m.vocab_size)?;
        ids.iter().for_each(|&t| text.push_str(&vocab[t as usize]));
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = || DataError::Split {
            dir: dir.to_path_buf(),
            msg: format!("val line {} {line:?} is not of the form a+b=c", i + 1),
        };
        let (prompt, answer) = line.split_once('=').ok_or_else(bad)?;
        if !prompt.contains('+') || answer.is_empty() {
            return Err(bad().into());
        }
        let answer = addition_answer_as_read(answer, m.reverse_sum.unwrap_or(false));
        out.push((format!("{prompt}="), answer));
    }
    if out.is_empty() {
        bail!("{}: the val split holds no problems", dir.display());
    }
    Ok(out)
}
