//! The everyday tools on the outputs of a real run: `config show`, `sample` (from a
//! stage-3 checkpoint written by 2 ranks), `report`, and their bad-input errors.
mod common;
use common::*;

fn ok(args: &[&str]) -> String {
    let out = single(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn err(args: &[&str]) -> String {
    let out = single(args);
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn config_show_prints_a_config_that_loads_back_the_same() {
    let shown = ok(&[
        "config",
        "show",
        "--config",
        "jobs/configs/shakespeare-char.toml",
        "--set",
        "zero.stage=3",
    ]);
    assert!(
        shown.contains("stage = 3") && shown.contains("n_layer = 4"),
        "{shown}"
    );
    let dir = tempdir();
    let path = dir.path().join("resolved.toml");
    std::fs::write(&path, &shown).unwrap();
    let again = ok(&["config", "show", "--config", path.to_str().unwrap()]);
    assert_eq!(again, shown);
}

#[test]
fn sample_report_and_their_errors_on_a_real_run() {
    let dir = tempdir();
    let data = addition_dataset(dir.path(), 500, 50, &["--digits", "2", "--reverse-sum"]);
    let ck = dir.path().join("ck").display().to_string();
    let metrics = dir.path().join("m.jsonl").display().to_string();
    let sets = [
        "data.source=\"hdf5\"".to_string(),
        format!("data.path=\"{data}\""),
        "model.vocab=13".into(),
        "model.n_layer=1".into(),
        "model.d_model=16".into(),
        "train.steps=5".into(),
        "train.eval_every=5".into(),
        "zero.stage=3".into(),
        format!("checkpoint.dir=\"{ck}\""),
        format!("log.metrics=\"{metrics}\""),
    ];
    let mut args = vec!["train"];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    mpi_ok(2, &args);

    // Generation from a 2-rank stage-3 checkpoint in one process.
    let text = ok(&[
        "sample",
        "--checkpoint",
        &ck,
        "--data",
        &data,
        "--prompt",
        "12+3",
        "--max-new",
        "20",
        "--temperature",
        "0",
    ]);
    let line = text.strip_suffix('\n').unwrap_or(&text);
    assert!(
        line.starts_with("12+3") && line.chars().count() == 24,
        "{text:?}"
    );
    let acc = ok(&[
        "sample",
        "--checkpoint",
        &ck,
        "--data",
        &data,
        "--eval-addition",
        "20",
    ]);
    assert!(
        acc.contains("addition exact-match accuracy: ") && acc.contains("/20 = "),
        "{acc}"
    );
    // A few examples, as a person reads them: the sum the dataset writes reversed is
    // expected most-significant digit first, and what the model wrote is shown too.
    let examples: Vec<&str> = acc.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(examples.len(), 8, "{acc}");
    assert!(
        acc.starts_with("examples (wrong answers first):\n"),
        "{acc}"
    );
    for l in examples {
        assert!(l.contains("least-significant digit first"), "{l}");
        let (q, rest) = l.trim().split_once('=').unwrap();
        let (a, b) = q.split_once('+').unwrap();
        let sum = a.parse::<u64>().unwrap() + b.parse::<u64>().unwrap();
        let shown = rest.split_whitespace().next().unwrap_or("");
        match rest.split_once("WRONG, expected ") {
            Some((_, e)) => assert!(e.starts_with(&format!("{sum} ")), "{l}"),
            None => assert!(rest.contains("right") && shown == sum.to_string(), "{l}"),
        }
    }
    let e = err(&[
        "sample",
        "--checkpoint",
        &ck,
        "--data",
        &data,
        "--prompt",
        "12*3",
    ]);
    assert!(e.contains("'*'") && e.contains("vocabulary"), "{e}");
    let e = err(&[
        "sample",
        "--checkpoint",
        &dir.path().join("nothing").display().to_string(),
        "--data",
        &data,
    ]);
    assert!(e.contains("nothing"), "{e}");

    // GPT runs report validation loss, not accuracy (not a classifier).
    let text = std::fs::read_to_string(&metrics).expect("metrics file");
    assert!(
        text.contains("\"val_loss\"") && !text.contains("val_acc"),
        "{text}"
    );

    // Plots of the run's metrics.
    let plots = dir.path().join("plots");
    let out = ok(&["report", &metrics, "--out", plots.to_str().unwrap()]);
    for name in ["loss.png", "memory.png", "comm.png"] {
        let bytes =
            std::fs::read(plots.join(name)).unwrap_or_else(|_| panic!("{name} missing: {out}"));
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name} is not a PNG");
    }
    assert!(
        !plots.join("accuracy.png").exists(),
        "no accuracy plot without val_acc: {out}"
    );
    let e = err(&[
        "report",
        &dir.path().join("none.jsonl").display().to_string(),
        "--out",
        plots.to_str().unwrap(),
    ]);
    assert!(e.contains("none.jsonl"), "{e}");
}

#[test]
fn bench_step_trains_through_the_engine_at_one_rank_only() {
    let line = ok(&["bench", "step", "--steps", "2", "--json"]);
    let r: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON line");
    // 5 AdamW steps on one repeated batch of random tokens must bring the loss below
    // the uniform guess ln(65) = 4.17: the update ran.
    let loss = r["loss"].as_f64().expect("loss");
    assert!(loss.is_finite() && loss < 65f64.ln() - 0.3, "{r}");
    assert!(r["tokens_per_s"].as_f64().expect("tokens/s") > 0.0, "{r}");
    let out = mpi_run(2, &["bench", "step", "--steps", "1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("run it without mpirun"), "{stderr}");
}
