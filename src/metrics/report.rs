//! `zerotrain report METRICS.jsonl --out DIR`: PNG plots of a run's metrics file.
use super::font::ensure_font;
use super::plot::{line_chart, stacked_bars, Axes, Bar, Series};
use super::writer::read_records;
use super::{MemCounter, StepRecord};
use anyhow::{bail, Context, Result};
use plotters::style::RGBColor;
use std::path::{Path, PathBuf};

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const RED: RGBColor = RGBColor(214, 39, 40);
const PURPLE: RGBColor = RGBColor(148, 103, 189);
const GREY: RGBColor = RGBColor(150, 150, 150);

const MIB: f64 = 1024.0 * 1024.0;

/// Reads a metrics JSONL file and writes into `out` (created if needed):
/// `loss.png` (training and validation loss vs step), `accuracy.png` (validation
/// accuracy vs step, when the run is a classifier's), `throughput.png` (tokens/s or
/// samples/s vs step), `memory.png` (per-rank bytes by category, stacked; the
/// max-over-ranks `mem` when the file has no per-rank values) and `comm.png`
/// (communication in flight vs exposed, with the step time, per step). Plots with no
/// data are left out. Returns the files written.
pub fn write_report(metrics: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    let recs = read_records(metrics)?;
    if recs.is_empty() {
        bail!("metrics file {}: no records to plot", metrics.display());
    }
    ensure_font()?;
    std::fs::create_dir_all(out)
        .with_context(|| format!("creating report directory {}", out.display()))?;
    let mut written = Vec::new();
    let mut emit = |name: &str, f: &dyn Fn(&Path) -> Result<()>| -> Result<()> {
        let p = out.join(name);
        f(&p)?;
        written.push(p);
        Ok(())
    };

    let per_step = |f: &dyn Fn(&StepRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        recs.iter()
            .filter_map(|r| f(r).map(|v| (r.step as f64, v)))
            .collect()
    };

    let train = per_step(&|r| Some(r.loss));
    let val = per_step(&|r| r.val_loss);
    emit("loss.png", &|p| {
        let s = [
            series("train loss", &train, BLUE, false),
            series("validation loss", &val, ORANGE, true),
        ];
        line_chart(
            p,
            &Axes {
                title: "Loss",
                x: "step",
                y: "loss",
            },
            &s,
            false,
        )
    })?;

    let acc = per_step(&|r| r.val_acc);
    if !acc.is_empty() {
        emit("accuracy.png", &|p| {
            let s = [series("validation accuracy", &acc, ORANGE, true)];
            line_chart(
                p,
                &Axes {
                    title: "Validation accuracy",
                    x: "step",
                    y: "fraction of val samples classified right",
                },
                &s,
                true,
            )
        })?;
    }

    let tok = per_step(&|r| r.tokens_per_s);
    let (rate, what) = if tok.is_empty() {
        (per_step(&|r| r.samples_per_s), "samples/s")
    } else {
        (tok, "tokens/s")
    };
    if !rate.is_empty() {
        emit("throughput.png", &|p| {
            let s = [series(what, &rate, GREEN, false)];
            line_chart(
                p,
                &Axes {
                    title: &format!("Throughput ({what})"),
                    x: "step",
                    y: what,
                },
                &s,
                true,
            )
        })?;
    }

    emit("memory.png", &|p| memory_chart(p, &recs))?;

    let comm = per_step(&|r| Some(r.times.comm_ms));
    let exposed = per_step(&|r| Some(r.times.comm_exposed_ms));
    let step = per_step(&|r| Some(r.step_ms));
    emit("comm.png", &|p| {
        let s = [
            series("step time", &step, GREY, false),
            series("communication in flight (comm_ms)", &comm, BLUE, false),
            series(
                "communication exposed (comm_exposed_ms)",
                &exposed,
                RED,
                false,
            ),
        ];
        line_chart(
            p,
            &Axes {
                title: "Communication: total vs exposed",
                x: "step",
                y: "ms",
            },
            &s,
            true,
        )
    })?;
    Ok(written)
}

fn series(name: &str, points: &[(f64, f64)], color: RGBColor, markers: bool) -> Series {
    Series {
        name: name.into(),
        points: points.to_vec(),
        color,
        markers,
    }
}

/// Per-rank stacked memory from the last record that has per-rank values, else the last
/// record's max-over-ranks `mem` as a single bar.
fn memory_chart(path: &Path, recs: &[StepRecord]) -> Result<()> {
    let cats = [
        ("params", BLUE),
        ("grads", ORANGE),
        ("optimizer", GREEN),
        ("gathered peak (transient)", PURPLE),
        ("bucket peak (transient)", RED),
    ];
    let values = |m: &MemCounter| {
        [
            m.params,
            m.grads,
            m.optimizer,
            m.gathered_peak,
            m.bucket_peak,
        ]
        .iter()
        .map(|&b| b as f64 / MIB)
        .collect()
    };
    let (bars, title) = match recs.iter().rev().find(|r| !r.mem_ranks.is_empty()) {
        Some(r) => (
            r.mem_ranks
                .iter()
                .enumerate()
                .map(|(i, m)| Bar {
                    label: format!("rank {i}"),
                    values: values(m),
                })
                .collect(),
            format!("Memory per rank by category (step {})", r.step),
        ),
        None => {
            let r = &recs[recs.len() - 1];
            (
                vec![Bar {
                    label: "max over ranks".into(),
                    values: values(&r.mem),
                }],
                format!("Memory by category (step {})", r.step),
            )
        }
    };
    stacked_bars(
        path,
        &Axes {
            title: &title,
            x: "rank",
            y: "MiB",
        },
        &cats,
        &bars,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{CommKind, MetricsWriter, Transient};

    /// A 60-step run of 4 ranks: falling loss, validation (loss and accuracy) every 20 steps, ZeRO-2-like
    /// memory (rank 3 holds a bit more padding), a quarter of communication exposed.
    fn write_run(path: &Path) {
        let mut w = MetricsWriter::create(path, false).unwrap();
        for step in 1..=60u64 {
            let s = step as f64;
            let mut r = StepRecord {
                step,
                loss: 4.0 * (-s / 25.0).exp() + 1.0,
                lr: 6e-4,
                grad_norm: 1.0 / s.sqrt(),
                tokens_per_s: Some(20_000.0 + 500.0 * (s / 5.0).sin()),
                step_ms: 50.0 + (s % 7.0),
                loss_scale: 1.0,
                ..Default::default()
            };
            r.times.comm_ms = 20.0 + (s % 5.0);
            r.times.comm_exposed_ms = 5.0 + (s % 3.0);
            if step % 20 == 0 {
                r.val_loss = Some(r.loss + 0.1);
                r.val_acc = Some(1.0 - 0.5 * (-s / 25.0).exp());
            }
            if step == 30 {
                r.loss = f64::NAN; // a diverged/skipped step: written as null, not plotted
                r.skipped = true;
            }
            r.mem_ranks = (0..4)
                .map(|rank| {
                    let mut m = MemCounter::default();
                    m.params = 4 << 20;
                    m.grads = (1 << 20) + rank * 4096;
                    m.optimizer = 3 << 20;
                    m.transient_alloc(Transient::Bucket, 512 << 10);
                    m
                })
                .collect();
            r.mem = r.mem_ranks[3];
            r.comm.add(CommKind::ReduceScatter, 1 << 20);
            r.comm.add(CommKind::Allgather, 1 << 20);
            w.write(&r).unwrap();
        }
    }

    fn png_size(bytes: &[u8]) -> (u32, u32) {
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        assert_eq!(&bytes[12..16], b"IHDR");
        let be =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        (be(16), be(20))
    }

    #[test]
    fn report_writes_valid_pngs() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("run/metrics.jsonl");
        write_run(&m);
        let out = dir.path().join("report");
        let files = write_report(&m, &out).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "loss.png",
                "accuracy.png",
                "throughput.png",
                "memory.png",
                "comm.png"
            ]
        );
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            assert_eq!(png_size(&bytes), (1000, 600), "{}", f.display());
            // A blank white 1000x600 PNG compresses to ~2 KB; axes, text and lines
            // make each plot several times that.
            assert!(
                bytes.len() > 10_000,
                "{} is only {} bytes",
                f.display(),
                bytes.len()
            );
        }
    }

    #[test]
    fn report_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.jsonl");
        let e = format!("{:#}", write_report(&missing, dir.path()).unwrap_err());
        assert!(e.contains("nope.jsonl"), "{e}");
        let empty = dir.path().join("empty.jsonl");
        std::fs::write(&empty, "\n").unwrap();
        let e = format!("{:#}", write_report(&empty, dir.path()).unwrap_err());
        assert!(e.contains("empty.jsonl") && e.contains("no records"), "{e}");
    }
}
