//! A bad configuration gives one clear error line and a non-zero status from every rank,
//! before any training collective, with no hang.
mod common;
use common::*;
use std::time::{Duration, Instant};

/// Runs `cmd`, which must fail within 30 s (no rank left hanging); returns its stderr.
fn fails_fast(cmd: std::process::Command) -> String {
    let t = Instant::now();
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "should fail:\n{stderr}");
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
    stderr
}

/// Runs `train` at np 3 with `sets`; returns stderr after checking the job failed fast
/// and every rank reported.
fn fails(sets: &[&str], expect: &str) -> String {
    let mut args = vec!["train".to_string()];
    for s in sets {
        args.push("--set".into());
        args.push(s.to_string());
    }
    let argv: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let mut cmd = mpirun(3);
    cmd.args(&argv);
    let stderr = fails_fast(cmd);
    for rank in 0..3 {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("rank {rank}")) && l.contains("error"))
            .unwrap_or_else(|| panic!("no error line from rank {rank} for {sets:?}:\n{stderr}"));
        assert!(
            line.contains(expect),
            "rank {rank}: {line:?} should mention {expect:?}"
        );
    }
    stderr
}

#[test]
fn unknown_key_names_the_key_and_suggests_the_nearest() {
    let err = fails(&["train.lrr=0.1"], "train.lrr");
    assert!(err.contains("did you mean `train.lr`"), "{err}");
}

#[test]
fn stage_out_of_range() {
    fails(&["zero.stage=5"], "zero.stage");
}

#[test]
fn global_batch_must_match_the_ranks() {
    // 3 ranks x 4 x 1 = 12, not 16
    fails(
        &["train.micro_batch=4", "train.global_batch=16"],
        "train.global_batch",
    );
}

#[test]
fn heads_must_divide_the_width() {
    fails(&["model.d_model=30", "model.n_head=4"], "model.d_model");
}

#[test]
fn a_type_error_names_the_file_and_key() {
    fails(&["train.steps=\"many\""], "steps");
}

#[test]
fn ctx_longer_than_the_data_fails_on_every_rank_before_training() {
    let dir = tempdir();
    let out = addition_dataset(dir.path(), 3, 2, &[]);
    let path = format!("data.path=\"{out}\"");
    fails(
        &[
            "data.source=\"hdf5\"",
            &path,
            "model.vocab=13",
            "model.ctx=64",
        ],
        "ctx",
    );
}

/// Without a usable GPU (always so in CI; a build without the `cuda` feature says how to
/// rebuild, one with it names the missing library or device), `device = "cuda"` is a
/// clear error on every rank, not a crash or a silent CPU run.
#[test]
fn cuda_without_a_gpu_is_a_clear_error_on_every_rank() {
    let err = fails(&["system.device=\"cuda\""], "CUDA");
    assert!(err.contains("system.device = \"cuda\""), "{err}");
}

/// NCCL asked for on a backend without device collectives (the CPU) is a clear error on
/// every rank; an unknown value names the key.
#[test]
fn nccl_on_the_cpu_and_unknown_collectives_are_clear_errors() {
    let err = fails(&["system.collectives=\"nccl\""], "system.collectives");
    assert!(err.contains("no collective library"), "{err}");
    fails(&["system.collectives=\"gloo\""], "system.collectives");
}

/// Values no user means fail on every rank naming the key, instead of training with
/// clipping silently off or a "diverged" loss that blames the learning rate.
#[test]
fn values_no_user_means_name_their_key() {
    for (set, key) in [
        ("train.eps=-1e-8", "train.eps"),
        ("train.momentum=-0.9", "train.momentum"),
        ("train.weight_decay=nan", "train.weight_decay"),
        ("train.clip_grad=nan", "train.clip_grad"),
        ("train.clip_grad=-1.0", "train.clip_grad"),
        ("train.min_lr=1.0", "train.min_lr"),
    ] {
        fails(&[set], key);
    }
    fails(
        &["train.eval_every=2", "train.eval_batches=0"],
        "train.eval_batches",
    );
}

/// `system.threads = 64` on this machine's few cores, under an address-space limit
/// (`ulimit -v`, as PBS's vmem sets): the threads are lowered to the cores with a warning,
/// and a limit that leaves no room for the matrix library's buffers is an error on every
/// rank, not the endless retry inside OpenBLAS that once hung the job at start-up.
#[test]
fn too_many_threads_are_lowered_and_an_address_space_limit_is_an_error() {
    let inner = mpirun(3);
    // 550 MB: room for MPI and the binary (about 420 MB here), not for two 128 MiB
    // BLAS buffers on top.
    let mut cmd = std::process::Command::new("bash");
    cmd.arg("-c")
        .arg("ulimit -v 550000 && exec \"$@\"")
        .arg("bash")
        .arg(inner.get_program())
        .args(inner.get_args())
        .args([
            "train",
            "--set",
            "system.threads=64",
            "--set",
            "train.steps=3",
        ]);
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let stderr = fails_fast(cmd);
    for rank in 0..3 {
        assert!(
            stderr.lines().any(|l| l.starts_with(&format!(
                "error: rank {rank}: the address-space limit (ulimit -v: "
            )) && l.contains("lower system.threads")),
            "rank {rank} did not name the limit:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "rank {rank}: system.threads = 64 but this rank may use"
            )),
            "rank {rank} did not lower its threads:\n{stderr}"
        );
    }
}
