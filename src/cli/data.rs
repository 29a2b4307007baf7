//! `zerotrain data ...`: prepare, import, synth, inspect, bench (and a hidden window dump).
use crate::config::{DataConfig, DataSource, ModelConfig, ModelKind, Sampling};
use crate::data::import::{import, ImportFormat, ImportOptions};
use crate::data::prepare::{prepare, PrepareOptions, Tokenizer};
use crate::data::synth::{synth, SynthOptions, Task};
use crate::data::{inspect::inspect, open_sampler, Kind, LoaderSpec, Manifest, Split};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Tokenise text files (characters, bytes or GPT-2 BPE) into a sharded dataset.
    Prepare(PrepareArgs),
    /// Import token files of nanoGPT (raw uint16) or llm.c (.bin with a header).
    Import(ImportArgs),
    /// Generate a seeded synthetic dataset: `addition` (a+b=c lines) or `classify`.
    Synth(SynthArgs),
    /// Show shards, counts and vocabulary; --verify rescans checksums and token ids.
    Inspect {
        /// Dataset directory (holding manifest.json).
        dir: PathBuf,
        /// Read every shard in full: recompute checksums, check every id.
        #[arg(long)]
        verify: bool,
    },
    /// Loader throughput (tokens/s for one rank, prefetch thread included).
    Bench(BenchArgs),
    /// Print the (shard, offset) of each sample a rank would read (debugging).
    #[command(hide = true)]
    DumpWindows(DumpArgs),
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// Text files, concatenated in order (gpt2: each file one document, with
    /// <|endoftext|> between documents).
    #[arg(long, required = true, num_args = 1..)]
    text: Vec<PathBuf>,
    /// Output dataset directory.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "chars")]
    tokenizer: Tokenizer,
    /// Train shards.
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// Val shards.
    #[arg(long, default_value_t = 1)]
    val_shards: usize,
    /// Fraction of the text, from its end, held out as the val split.
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[arg(long, value_enum)]
    format: ImportFormat,
    /// Token files; the files of a split are concatenated in order.
    #[arg(required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    /// Output dataset directory.
    #[arg(long)]
    out: PathBuf,
    /// Split of every file (default: from each file name, `train` or `val` in it).
    #[arg(long, value_enum)]
    split: Option<SplitArg>,
    /// Train shards.
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// Val shards.
    #[arg(long, default_value_t = 1)]
    val_shards: usize,
    /// Token ids must be below it (default: the tokenizer's, 50257 for GPT-2).
    #[arg(long)]
    vocab_size: Option<usize>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SplitArg {
    Train,
    Val,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    #[arg(long, value_enum)]
    task: Task,
    /// Output dataset directory.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    /// Train problems (addition) or rows (classify).
    #[arg(long, default_value_t = 20000)]
    count: usize,
    /// Held-out val problems or rows.
    #[arg(long, default_value_t = 1000)]
    val_count: usize,
    /// addition: zero-pad operands to --digits and the sum to --digits + 1, so every line
    /// has the same shape (`042+007=0049`): much easier for a small model to learn.
    #[arg(long)]
    pad: bool,
    /// addition: write each sum least-significant digit first (`48+39=78` for 87), the
    /// order in which the digits can be computed carry by carry; recorded in the manifest
    /// (`reverse_sum`), and `sample --eval-addition` reads answers back in that order.
    #[arg(long)]
    reverse_sum: bool,
    /// addition: digits per operand.
    #[arg(long, default_value_t = 3)]
    digits: u32,
    /// classify: feature dimension.
    #[arg(long, default_value_t = 16)]
    features: usize,
    /// classify: number of classes.
    #[arg(long, default_value_t = 4)]
    classes: usize,
    /// classify: hidden width of the teacher network (0 = linear teacher).
    #[arg(long, default_value_t = 32)]
    hidden: usize,
    #[arg(long, default_value_t = 1)]
    shards: usize,
    #[arg(long, default_value_t = 1)]
    val_shards: usize,
}

#[derive(Args, Debug)]
pub struct LoaderArgs {
    /// Dataset directory.
    dir: PathBuf,
    /// Tokens per sequence (token datasets).
    #[arg(long, default_value_t = 64)]
    ctx: usize,
    #[arg(long, default_value_t = 8)]
    micro_batch: usize,
    #[arg(long, value_enum, default_value = "random")]
    sampling: SamplingArg,
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    #[arg(long, default_value_t = 1)]
    world: usize,
    #[arg(long, default_value_t = 0)]
    rank: usize,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    loader: LoaderArgs,
    /// Batches to time.
    #[arg(long, default_value_t = 2000)]
    batches: usize,
    #[arg(long, default_value_t = 4)]
    prefetch: usize,
    /// Skip the checksum check of each shard's first read (as `data.verify = false`).
    #[arg(long)]
    no_verify: bool,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    #[command(flatten)]
    loader: LoaderArgs,
    /// Batches to print.
    #[arg(long, default_value_t = 1)]
    batches: usize,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SamplingArg {
    Random,
    Epoch,
}

impl LoaderArgs {
    fn spec(&self, prefetch: usize) -> LoaderSpec {
        LoaderSpec {
            rank: self.rank,
            world: self.world,
            micro_batch: self.micro_batch,
            ctx: self.ctx,
            seed: self.seed,
            sampling: match self.sampling {
                SamplingArg::Random => Sampling::Random,
                SamplingArg::Epoch => Sampling::Epoch,
            },
            split: Split::Train,
            prefetch,
        }
    }
}

fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let m = Manifest::load(&a.loader.dir)?;
    // A model config that accepts this dataset as it is.
    let model = ModelConfig {
        kind: if m.kind == Kind::Tokens {
            ModelKind::Gpt
        } else {
            ModelKind::Mlp
        },
        vocab: m.vocab_size,
        ctx: a.loader.ctx,
        inputs: m.features,
        classes: m.classes,
        ..ModelConfig::default()
    };
    let cfg = DataConfig {
        source: DataSource::Hdf5,
        path: a.loader.dir.to_string_lossy().into_owned(),
        sampling: a.loader.spec(1).sampling,
        prefetch: a.prefetch,
        verify: !a.no_verify,
    };
    let mut spec = a.loader.spec(a.prefetch);
    if m.kind == Kind::Classify {
        spec.ctx = 0;
    }
    let r = crate::data::bench::bench(&cfg, crate::data::Feed::from(&model), spec, a.batches)?;
    let unit = if m.kind == Kind::Tokens {
        "tokens"
    } else {
        "rows"
    };
    println!(
        "data bench: opened in {:.3} s (first batch{}); {} batches of {} x {} in {:.3} s: \
         {:.0} {unit}/s per rank (next_batch waited {:.1} ms in all)",
        r.open_seconds,
        if a.no_verify {
            ""
        } else {
            " and verifying the shards it reads"
        },
        r.batches,
        a.loader.micro_batch,
        if m.kind == Kind::Tokens {
            a.loader.ctx
        } else {
            1
        },
        r.seconds,
        r.tokens_per_s,
        r.wait_ms
    );
    Ok(())
}

fn dump(a: DumpArgs) -> anyhow::Result<()> {
    let (m, mut s) = open_sampler(&a.loader.dir, &a.loader.spec(1), None)?;
    for _ in 0..a.batches {
        let st = s.state();
        let refs: Vec<String> = s
            .next_refs()
            .iter()
            .map(|r| format!("{}:{}", m.shards[r.shard].file, r.offset))
            .collect();
        println!("batch {} epoch {} {}", st.batches, st.epoch, refs.join(" "));
    }
    Ok(())
}

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Prepare(a) => {
            let m = prepare(&PrepareOptions {
                texts: a.text,
                out: a.out.clone(),
                tokenizer: a.tokenizer,
                shards: a.shards,
                val_shards: a.val_shards,
                val_fraction: a.val_fraction,
            })?;
            print!("{}", inspect(&a.out, false)?);
            log::info!("prepared {} shards", m.shards.len());
            Ok(())
        }
        DataCommand::Import(a) => {
            import(&ImportOptions {
                files: a.files,
                out: a.out.clone(),
                format: a.format,
                split: a.split.map(|s| match s {
                    SplitArg::Train => Split::Train,
                    SplitArg::Val => Split::Val,
                }),
                shards: a.shards,
                val_shards: a.val_shards,
                vocab_size: a.vocab_size,
            })?;
            print!("{}", inspect(&a.out, false)?);
            Ok(())
        }
        DataCommand::Synth(a) => {
            synth(&SynthOptions {
                task: a.task,
                out: a.out.clone(),
                seed: a.seed,
                count: a.count,
                val_count: a.val_count,
                digits: a.digits,
                pad: a.pad,
                reverse_sum: a.reverse_sum,
                features: a.features,
                classes: a.classes,
                hidden: a.hidden,
                shards: a.shards,
                val_shards: a.val_shards,
            })?;
            print!("{}", inspect(&a.out, false)?);
            Ok(())
        }
        DataCommand::Inspect { dir, verify } => {
            print!("{}", inspect(&dir, verify)?);
            Ok(())
        }
        DataCommand::Bench(a) => bench(a),
        DataCommand::DumpWindows(a) => dump(a),
    }
}
