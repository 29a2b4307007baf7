//! `bench comm` output: the table and one JSON object per (op, dtype, size), with the
//! nccl-tests bandwidth definitions. Small sizes and few iterations keep it fast; the
//! ratio floor itself is a benchmark claim (make bench), not checked by a timed test.
mod common;

use serde_json::Value;

#[test]
fn json_rows_cover_the_sweep_with_consistent_fields() {
    let out = common::mpi_ok(
        3,
        &[
            "bench",
            "comm",
            "--json",
            "--min-bytes",
            "1024",
            "--max-bytes",
            "16384",
            "--iters",
            "3",
            "--dtypes",
            "f32,bf16,f16",
        ],
    );
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    // 3 ops x 3 dtypes x 3 sizes (1, 4, 16 KiB).
    assert_eq!(rows.len(), 27, "{out}");
    for r in &rows {
        let f = |k: &str| {
            r[k].as_f64()
                .unwrap_or_else(|| panic!("missing {k} in {r}"))
        };
        let (op, dtype) = (r["op"].as_str().unwrap(), r["dtype"].as_str().unwrap());
        assert!(["allreduce", "reducescatter", "allgather"].contains(&op));
        assert!(["fp32", "bf16", "fp16"].contains(&dtype));
        assert_eq!(f("ranks"), 3.0);
        let bytes = f("bytes");
        let elem = if dtype == "fp32" { 4.0 } else { 2.0 };
        assert_eq!(bytes, f("count") * elem);
        if op != "allreduce" {
            // Equal blocks: the total is a multiple of 3 ranks.
            assert_eq!(f("count") % 3.0, 0.0, "{r}");
        }
        assert!(f("ours_s") > 0.0 && f("raw_s") > 0.0);
        assert!((f("ratio") - f("ours_s") / f("raw_s")).abs() < 1e-9, "{r}");
        let factor = if op == "allreduce" {
            2.0 * 2.0 / 3.0
        } else {
            2.0 / 3.0
        };
        let algbw = bytes / f("ours_s") / 1e9;
        assert!(
            (f("busbw_gbps") - algbw * factor).abs() <= 1e-9 * algbw.max(1.0),
            "{r}"
        );
    }
}

#[test]
fn table_has_header_and_rows() {
    let out = common::mpi_ok(
        2,
        &[
            "bench",
            "comm",
            "--max-bytes",
            "4096",
            "--iters",
            "2",
            "--ops",
            "allreduce",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("op") && lines[0].contains("busbw_GB/s"),
        "{out}"
    );
    // f32 and bf16 at 1 KiB and 4 KiB.
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("allreduce ")).count(),
        4,
        "{out}"
    );
}
