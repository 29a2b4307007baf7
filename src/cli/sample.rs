//! `zerotrain sample`: text generation from a checkpoint written at any world size and
//! stage, and exact-match accuracy on the addition task's held-out sums.
//!
//! Single process, CPU. The checkpoint's canonical parameters are loaded unit by unit and
//! the GPT runs forward over the whole prefix for every new token (no KV cache: the
//! models this runs on CPU are small).
use crate::checkpoint::load_full_params;
use crate::config::{ModelConfig, ModelKind};
use crate::data::{addition_answer_as_read, addition_val_problems, Batch, Manifest, Vocab};
use crate::device::{Backend, Cpu};
use crate::model::{build_model, Model};
use anyhow::{bail, Context};
use clap::Args;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Checkpoint: a step directory, or a checkpoint dir with `latest`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Dataset directory whose manifest names the vocabulary (chars, bytes or gpt2).
    #[arg(long)]
    pub data: PathBuf,
    /// Text to continue.
    #[arg(long, default_value = "\n")]
    pub prompt: String,
    /// Tokens to generate.
    #[arg(long, default_value_t = 200)]
    pub max_new: usize,
    /// Softmax temperature; 0 means greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1337)]
    pub seed: u64,
    /// Instead of sampling: greedy answers to this many held-out sums of an `addition`
    /// dataset; prints the exact-match accuracy.
    #[arg(long, value_name = "N")]
    pub eval_addition: Option<usize>,
}

/// A GPT loaded from a checkpoint, ready for forward passes of up to `max_batch` rows.
pub(super) struct Generator {
    pub(super) model: Box<dyn Model<Cpu>>,
    pub(super) params: Vec<<Cpu as Backend>::Buf>,
    pub(super) cfg: ModelConfig,
}

impl Generator {
    pub(super) fn load(checkpoint: &Path, max_batch: usize) -> anyhow::Result<Generator> {
        let (cfg, units) = load_full_params(checkpoint)?;
        if cfg.kind != ModelKind::Gpt {
            bail!(
                "{}: sampling needs a GPT checkpoint, this one holds an MLP",
                checkpoint.display()
            );
        }
        let backend = Arc::new(Cpu::new(1));
        let model = build_model(&cfg, max_batch, backend.clone())?;
        let params = units
            .iter()
            .map(|p| {
                let mut buf = backend.alloc(p.len())?;
                backend.upload(&mut buf, p);
                Ok(buf)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Generator { model, params, cfg })
    }

    /// Runs the model forward over `rows`, (b, t) token ids with t <= ctx; the logits
    /// are then read with `self.model.logits_at(row, position, out)`.
    pub(super) fn forward(&mut self, rows: &[Vec<u32>]) -> anyhow::Result<()> {
        let inputs: Vec<u32> = rows.iter().flatten().copied().collect();
        let batch = Batch::Tokens {
            b: rows.len(),
            t: rows.first().map_or(0, Vec::len),
            targets: vec![0; inputs.len()],
            inputs,
        };
        self.model.set_batch(&batch)?;
        let root = self.model.tied_root();
        for u in 0..self.params.len() {
            let r = root.filter(|&r| r != u).map(|r| &self.params[r]);
            self.model.forward_unit(u, &self.params[u], r)?;
        }
        Ok(())
    }

    /// Logits of the last position of each row: rows are (b, t) token ids, t <= ctx.
    fn last_logits(&mut self, rows: &[Vec<u32>], out: &mut Vec<Vec<f32>>) -> anyhow::Result<()> {
        self.forward(rows)?;
        let t = rows[0].len();
        out.resize(rows.len(), vec![0.0; self.cfg.vocab]);
        for (i, o) in out.iter_mut().enumerate() {
            o.resize(self.cfg.vocab, 0.0);
            self.model.logits_at(i, t - 1, o);
        }
        Ok(())
    }

    /// Continues each row by `max_new` tokens (stopping a row at `stop`), keeping the
    /// last `ctx` tokens as context.
    fn generate(
        &mut self,
        rows: &mut [Vec<u32>],
        max_new: usize,
        temperature: f32,
        stop: Option<u32>,
        rng: &mut impl Rng,
    ) -> anyhow::Result<()> {
        let ctx = self.cfg.ctx;
        let mut logits = Vec::new();
        let mut done = vec![false; rows.len()];
        for _ in 0..max_new {
            let window: Vec<Vec<u32>> = rows
                .iter()
                .map(|r| r[r.len().saturating_sub(ctx)..].to_vec())
                .collect();
            self.last_logits(&window, &mut logits)?;
            for (i, row) in rows.iter_mut().enumerate() {
                // Finished rows repeat the stop token, so all rows keep one length.
                let next = match (done[i], stop) {
                    (true, Some(s)) => s,
                    _ => pick(&logits[i], temperature, rng),
                };
                row.push(next);
                done[i] = Some(next) == stop;
            }
            if done.iter().all(|&d| d) {
                break;
            }
        }
        Ok(())
    }
}

/// Greedy (temperature 0) or softmax sampling at `temperature`.
fn pick(logits: &[f32], temperature: f32, rng: &mut impl Rng) -> u32 {
    let argmax = logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i as u32)
        .unwrap_or(0);
    if temperature <= 0.0 {
        return argmax;
    }
    let max = logits[argmax as usize];
    let weights: Vec<f64> = logits
        .iter()
        .map(|&l| (((l - max) / temperature) as f64).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut x = rng.gen::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        x -= w;
        if x <= 0.0 {
            return i as u32;
        }
    }
    argmax
}

pub fn run(args: SampleArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.data)?;
    let vocab = Vocab::of(&manifest).with_context(|| args.data.display().to_string())?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    if let Some(n) = args.eval_addition {
        let reverse_sum = manifest.reverse_sum.unwrap_or(false);
        return eval_addition(&args, &vocab, reverse_sum, n);
    }
    let prompt = vocab.encode(&args.prompt)?;
    if prompt.is_empty() {
        bail!("--prompt is empty");
    }
    let mut gen = Generator::load(&args.checkpoint, 1)?;
    let mut rows = vec![prompt];
    gen.generate(&mut rows, args.max_new, args.temperature, None, &mut rng)?;
    println!("{}", vocab.decode(&rows[0]));
    Ok(())
}

/// Greedy answers to held-out sums, in batches; prints a few examples (errors first) and
/// the accuracy.
fn eval_addition(
    args: &SampleArgs,
    vocab: &Vocab,
    reverse_sum: bool,
    n: usize,
) -> anyhow::Result<()> {
    let problems = addition_val_problems(&args.data)?;
    let problems = &problems[..n.min(problems.len())];
    if problems.is_empty() {
        bail!("{}: no held-out sums to evaluate", args.data.display());
    }
    const BATCH: usize = 64;
    let mut gen = Generator::load(&args.checkpoint, BATCH)?;
    let Some(&newline) = vocab.encode("\n")?.first() else {
        bail!("the vocabulary cannot encode a newline");
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    // What the model wrote after each prompt, in problem order.
    let mut written = vec![String::new(); problems.len()];
    // Problems whose prompts have one token length share a batch (one forward per
    // generated token); each prompt starts a line, as in the training stream.
    let mut by_len: std::collections::BTreeMap<usize, Vec<(usize, Vec<u32>)>> = Default::default();
    for (i, p) in problems.iter().enumerate() {
        let row = vocab.encode(&format!("\n{}", p.0))?;
        by_len.entry(row.len()).or_default().push((i, row));
    }
    for group in by_len.values() {
        for chunk in group.chunks(BATCH) {
            let mut rows: Vec<Vec<u32>> = chunk.iter().map(|(_, r)| r.clone()).collect();
            let len = rows[0].len();
            // One token per character at most, and the newline.
            let max_answer = chunk
                .iter()
                .map(|(i, _)| problems[*i].1.chars().count())
                .max()
                .unwrap_or(1)
                + 1;
            gen.generate(&mut rows, max_answer, 0.0, Some(newline), &mut rng)?;
            for (row, (i, _)) in rows.iter().zip(chunk) {
                let answer: Vec<u32> = row[len..]
                    .iter()
                    .take_while(|&&t| t != newline)
                    .copied()
                    .collect();
                written[*i] = vocab.decode(&answer);
            }
        }
    }
    print!("{}", addition_report(problems, &written, reverse_sum, 8));
    Ok(())
}

/// The report of `sample --eval-addition`: up to `shown` examples in problem order, the
/// wrong answers first (at most half of them when there are right ones to show), each
/// as a person reads it (a reversed answer turned back, with what the model wrote), then
/// the exact-match accuracy. `written[i]` is the model's answer to `problems[i]`.
fn addition_report(
    problems: &[(String, String)],
    written: &[String],
    reverse_sum: bool,
    shown: usize,
) -> String {
    let graded: Vec<(&(String, String), &String, String)> = problems
        .iter()
        .zip(written)
        .map(|(p, w)| (p, w, addition_answer_as_read(w, reverse_sum)))
        .collect();
    let (right, wrong): (Vec<_>, Vec<_>) = graded.iter().partition(|(p, _, read)| *read == p.1);
    let n_wrong = wrong
        .len()
        .min(shown - shown.min(right.len()).min(shown / 2));
    let examples: Vec<_> = wrong[..n_wrong]
        .iter()
        .chain(right.iter().take(shown - n_wrong))
        .map(|((prompt, expected), w, read)| (format!("{prompt}{read}"), expected, w, read))
        .collect();
    let width = examples
        .iter()
        .map(|e| e.0.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::from("examples (wrong answers first):\n");
    for (line, expected, w, read) in &examples {
        let verdict = match read == expected {
            true => "right".to_string(),
            false => format!("WRONG, expected {expected}"),
        };
        let how = match reverse_sum {
            true => format!("   (model wrote {w:?}, least-significant digit first)"),
            false => String::new(),
        };
        out += &format!("  {line:<width$}   {verdict}{how}\n");
    }
    out += &format!(
        "addition exact-match accuracy: {}/{} = {:.1}% (greedy, held-out sums{})\n",
        right.len(),
        problems.len(),
        100.0 * right.len() as f64 / problems.len() as f64,
        match reverse_sum {
            true => ", answers written reversed and read back",
            false => "",
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::addition_report;

    fn problems() -> Vec<(String, String)> {
        [
            ("48+39=", "87"),
            ("3+6=", "9"),
            ("50+50=", "100"),
            ("12+1=", "13"),
        ]
        .iter()
        .map(|(p, a)| (p.to_string(), a.to_string()))
        .collect()
    }

    #[test]
    fn a_reversed_answer_is_read_back_before_it_is_compared() {
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let r = addition_report(&problems(), &w(&["78", "9", "001", "31"]), true, 8);
        assert!(r.contains("4/4 = 100.0%"), "{r}");
        assert!(r.contains("48+39=87") && r.contains("50+50=100"), "{r}");
        assert!(r.contains("model wrote \"78\""), "{r}");
        // The same answers unreversed are wrong where the digits differ; errors first.
        let r = addition_report(&problems(), &w(&["87", "9", "100", "31"]), true, 8);
        assert!(r.contains("2/4 = 50.0%"), "{r}");
        let lines: Vec<&str> = r.lines().collect();
        assert!(lines[1].contains("48+39=78 ") && lines[1].contains("WRONG, expected 87"));
        assert!(
            lines[2].contains("50+50=001 ") && lines[2].contains("WRONG"),
            "{r}"
        );
        assert!(
            lines[3].contains("3+6=9 ") && lines[3].contains("right"),
            "{r}"
        );
        assert!(
            lines[4].contains("12+1=13 ") && lines[4].contains("right"),
            "{r}"
        );
        // Not reversed: compared as written.
        let r = addition_report(&problems(), &w(&["87", "9", "100", "31"]), false, 8);
        assert!(
            r.contains("3/4 = 75.0%") && !r.contains("model wrote"),
            "{r}"
        );
        // At most half the examples are errors when right answers exist.
        let r = addition_report(&problems(), &w(&["1", "2", "3", "13"]), false, 2);
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(lines.len(), 4, "{r}");
        assert!(
            lines[1].contains("WRONG") && lines[2].contains("right"),
            "{r}"
        );
    }
}
