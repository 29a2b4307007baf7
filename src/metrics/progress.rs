//! Console progress on rank 0: an indicatif bar on a terminal, plain `log::info!` lines
//! every `log.every` steps otherwise (batch jobs, redirected output).
use super::StepRecord;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

enum Mode {
    /// Not rank 0: shows nothing.
    Off,
    Bar(ProgressBar),
    Lines,
}

/// Reports training progress once per step.
pub struct Progress {
    mode: Mode,
    total: u64,
    every: u64,
}

impl Progress {
    /// Progress for steps `start_step+1 ..= total_steps`; a bar when `show` (rank 0) and
    /// stderr is a terminal, log lines every `every` steps when `show` otherwise, nothing
    /// when not `show`.
    pub fn new(show: bool, start_step: u64, total_steps: u64, every: usize) -> Self {
        let mode = if !show {
            Mode::Off
        } else if std::io::stderr().is_terminal() {
            Mode::Bar(bar(start_step, total_steps))
        } else {
            Mode::Lines
        };
        Progress {
            mode,
            total: total_steps,
            every: every.max(1) as u64,
        }
    }

    /// Plain log lines regardless of the terminal (rank 0 in tests, `--no-progress`).
    pub fn lines(total_steps: u64, every: usize) -> Self {
        Progress {
            mode: Mode::Lines,
            total: total_steps,
            every: every.max(1) as u64,
        }
    }

    /// Whether step `step` (1-based) is logged, to the metrics file and in line mode:
    /// every `every` steps, the first and last step, evaluation steps and skipped steps.
    /// The same on every rank for the same inputs (the training loop's collectives
    /// depend on it).
    pub fn logs(&self, step: u64, evaluated: bool, skipped: bool) -> bool {
        step.is_multiple_of(self.every) || step == 1 || step == self.total || evaluated || skipped
    }

    /// [`Progress::logs`] for a step's record.
    pub fn logs_step(&self, rec: &StepRecord) -> bool {
        self.logs(rec.step, rec.val_loss.is_some(), rec.skipped)
    }

    /// Shows one finished step.
    pub fn update(&self, rec: &StepRecord) {
        match &self.mode {
            Mode::Off => {}
            Mode::Bar(b) => {
                b.set_position(rec.step);
                b.set_message(bar_message(rec));
                if rec.val_loss.is_some() || rec.skipped {
                    b.println(format_line(rec, self.total));
                }
            }
            Mode::Lines => {
                if self.logs_step(rec) {
                    log::info!("{}", format_line(rec, self.total));
                }
            }
        }
    }

    /// Ends the bar (leaves it on screen); a no-op in line mode.
    pub fn finish(&self) {
        if let Mode::Bar(b) = &self.mode {
            b.finish();
        }
    }
}

fn bar(start: u64, total: u64) -> ProgressBar {
    let b = ProgressBar::new(total).with_position(start);
    // The template is a constant; fall back to the default style if it were rejected.
    if let Ok(s) = ProgressStyle::with_template(
        "{bar:30.cyan/blue} step {pos}/{len} {msg} [{elapsed_precise} < {eta}]",
    ) {
        b.set_style(s.progress_chars("=> "));
    }
    b
}

fn rate(rec: &StepRecord) -> String {
    match (rec.tokens_per_s, rec.samples_per_s) {
        (Some(t), _) => format!("{} tok/s", si(t)),
        (None, Some(s)) => format!("{} samples/s", si(s)),
        (None, None) => String::new(),
    }
}

fn bar_message(rec: &StepRecord) -> String {
    format!("loss {:.4} | {}", rec.loss, rate(rec))
}

/// `12345.0` → `12.3k`.
fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.1}")
    }
}

/// The plain progress line of one step.
pub fn format_line(rec: &StepRecord, total: u64) -> String {
    let mut s = format!(
        "step {}/{} | loss {:.4} | lr {:.3e} | grad_norm {:.3} | {:.1} ms | {}",
        rec.step,
        total,
        rec.loss,
        rec.lr,
        rec.grad_norm,
        rec.step_ms,
        rate(rec)
    );
    if let Some(v) = rec.val_loss {
        s.push_str(&format!(" | val_loss {v:.4}"));
    }
    if let Some(a) = rec.val_acc {
        s.push_str(&format!(" | val_acc {a:.4}"));
    }
    if rec.skipped {
        s.push_str(&format!(
            " | skipped (fp16 overflow), loss scale now {}",
            rec.loss_scale
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_contents_and_cadence() {
        let mut r = StepRecord {
            step: 20,
            loss: 1.23456,
            lr: 6e-4,
            grad_norm: 0.5,
            step_ms: 42.0,
            ..Default::default()
        };
        r.tokens_per_s = Some(16384.0);
        let l = format_line(&r, 100);
        assert!(
            l.starts_with("step 20/100 | loss 1.2346 | lr 6.000e-4"),
            "{l}"
        );
        assert!(l.contains("16.4k tok/s") && !l.contains("val_loss"), "{l}");
        r.val_loss = Some(1.5);
        assert!(format_line(&r, 100).ends_with("val_loss 1.5000"));
        r.val_acc = Some(0.9375);
        assert!(format_line(&r, 100).ends_with("val_loss 1.5000 | val_acc 0.9375"));
        let p = Progress::lines(100, 10);
        let at = |step, val: Option<f64>| {
            p.logs_step(&StepRecord {
                step,
                val_loss: val,
                ..Default::default()
            })
        };
        assert!(at(1, None) && at(10, None) && at(100, None) && at(7, Some(1.0)));
        assert!(!at(7, None) && !at(11, None));
        p.update(&r); // logs through `log`; must not panic without a logger
        Progress::new(false, 0, 100, 10).update(&r);
    }
}
