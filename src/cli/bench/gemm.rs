//! `zerotrain bench gemm`: single-process SGEMM throughput of the CPU backend on square
//! sizes and on the GEMM shapes of the reference GPT (n_layer 4, n_head 4, d_model 128,
//! ctx 64, vocab 65, batch 12: N = 768 rows).
use crate::device::{Backend, Cpu, Gemm};
use clap::Args;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct GemmArgs {
    /// Write one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Threads for the matrix products.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Shapes to run: `S` (square) or `MxNxK`; default: 256, 512, 1024 and the GPT shapes.
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    pub sizes: Vec<String>,
    /// Minimum seconds of timing per shape.
    #[arg(long, default_value_t = 0.5)]
    pub seconds: f64,
}

/// The default shapes: (m, n, k, what).
const DEFAULT: &[(usize, usize, usize, &str)] = &[
    (256, 256, 256, "square"),
    (512, 512, 512, "square"),
    (1024, 1024, 1024, "square"),
    (768, 384, 128, "gpt c_attn fwd"),
    (768, 128, 128, "gpt attn c_proj fwd"),
    (768, 512, 128, "gpt c_fc fwd"),
    (768, 128, 512, "gpt mlp c_proj fwd"),
    (768, 65, 128, "gpt lm head fwd"),
    (128, 512, 768, "gpt c_fc dW"),
    (65, 128, 768, "gpt wte dW"),
    (64, 64, 32, "gpt attn scores (per head)"),
];

fn parse(s: &str) -> anyhow::Result<(usize, usize, usize)> {
    let dims: Vec<usize> = s
        .split('x')
        .map(|d| d.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("--sizes: {s:?} is not S or MxNxK: {e}"))?;
    match dims[..] {
        [s] if s > 0 => Ok((s, s, s)),
        [m, n, k] if m > 0 && n > 0 && k > 0 => Ok((m, n, k)),
        _ => anyhow::bail!("--sizes: {s:?} must be S or MxNxK with positive sizes"),
    }
}

/// GFLOP/s and milliseconds per call of an (m, n, k) product, best of several rounds.
pub fn measure(be: &Cpu, m: usize, n: usize, k: usize, seconds: f64) -> anyhow::Result<(f64, f64)> {
    let mut a = be.alloc(m * k)?;
    let mut b = be.alloc(k * n)?;
    let mut c = be.alloc(m * n)?;
    for (buf, s) in [(&mut a, 0.5f32), (&mut b, 0.25)] {
        let h = be.host_mut(buf).unwrap_or_default();
        h.iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = s * ((i % 7) as f32 - 3.0));
    }
    let g = Gemm::new(m, n, k, false, false);
    be.gemm(&g, &a, &b, &mut c); // warm-up
    let t0 = Instant::now();
    be.gemm(&g, &a, &b, &mut c);
    let once = t0.elapsed().as_secs_f64().max(1e-7);
    let reps = ((seconds / 5.0 / once) as usize).clamp(1, 1_000_000);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            be.gemm(&g, &a, &b, &mut c);
        }
        be.sync()?;
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    Ok((g.flops() / best / 1e9, best * 1e3))
}

pub fn run(args: GemmArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.threads >= 1, "--threads must be at least 1");
    let be = Cpu::new(args.threads);
    let shapes: Vec<(usize, usize, usize, String)> = if args.sizes.is_empty() {
        DEFAULT
            .iter()
            .map(|&(m, n, k, w)| (m, n, k, w.to_string()))
            .collect()
    } else {
        let mut v = Vec::new();
        for s in &args.sizes {
            let (m, n, k) = parse(s)?;
            v.push((m, n, k, "custom".to_string()));
        }
        v
    };
    if !args.json {
        println!(
            "{:>6} {:>6} {:>6} {:>7} {:>9} {:>10}  shape",
            "m", "n", "k", "threads", "GFLOP/s", "ms"
        );
    }
    for (m, n, k, what) in shapes {
        let (gflops, ms) = measure(&be, m, n, k, args.seconds)?;
        if args.json {
            let o = serde_json::json!({
                "impl": "zerotrain-cpu", "m": m, "n": n, "k": k, "threads": args.threads,
                "gflops": (gflops * 10.0).round() / 10.0, "ms": ms, "shape": what,
            });
            println!("{o}");
        } else {
            println!(
                "{m:>6} {n:>6} {k:>6} {:>7} {gflops:>9.1} {ms:>10.4}  {what}",
                args.threads
            );
        }
    }
    Ok(())
}
