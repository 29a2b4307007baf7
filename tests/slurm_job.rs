//! jobs/slurm/cpu.sbatch under a real Slurm: a single-node slurmctld + slurmd started on
//! this machine (scripts/slurm-cluster.sh), the job submitted with sbatch on 2 tasks, with
//! both launchers (srun --mpi=pmix and OpenMPI's mpirun), and its output file checked.
//!
//! Skips with a message where Slurm cannot start (not root, packages missing, a daemon
//! fails); set ZEROTRAIN_REQUIRE_SLURM=1 to make that a failure instead.
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Longest wait for one job, from submission to a final state. A job here takes about a
/// second of scheduling and a second of training; 120 s only trips on a hung job.
const JOB_LIMIT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running single-node cluster; stopped (jobs cancelled, daemons terminated) on drop,
/// also when the test fails.
struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the cluster, or returns why it cannot run here.
    fn start() -> Result<Cluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("zt-slurm-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let mut c = Command::new("bash");
        c.arg(repo().join("scripts/slurm-cluster.sh"))
            .arg("start")
            .arg(dir.path());
        let out = common::run_with_timeout(c, Duration::from_secs(60));
        let cluster = Cluster { dir };
        if out.status.success() {
            Ok(cluster)
        } else {
            // Drop stops whatever half started.
            Err(format!(
                "scripts/slurm-cluster.sh start failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    /// A Slurm client command aimed at this cluster, with no Slurm variables of an outer
    /// job (if the tests themselves run under Slurm) leaking in.
    fn client(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        for (k, _) in std::env::vars() {
            if k.starts_with("SLURM_") || k.starts_with("SBATCH_") || k.starts_with("SRUN_") {
                c.env_remove(k);
            }
        }
        c.env("SLURM_CONF", self.conf());
        c
    }

    /// Last lines of the daemons' logs, for failure messages.
    fn logs(&self) -> String {
        ["slurmctld.log", "slurmd.log"]
            .iter()
            .map(|name| {
                let text = fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                format!("--- {name} ---\n{tail}\n")
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut c = Command::new("bash");
        c.arg(repo().join("scripts/slurm-cluster.sh"))
            .arg("stop")
            .arg(self.dir.path());
        let _ = c.output();
    }
}

/// A finished job as scontrol last reported it.
struct JobEnd {
    state: String,
    exit_code: String,
}

/// The value of `Key=` in scontrol's one-line record.
fn field(record: &str, key: &str) -> Option<String> {
    record
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
}

/// Polls `scontrol show job` until the job reaches a final state (no accounting here, so
/// sacct cannot tell afterwards); cancels it and panics after [`JOB_LIMIT`].
fn wait_job(cluster: &Cluster, id: &str) -> JobEnd {
    const ACTIVE: [&str; 7] = [
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "RESIZING",
    ];
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let out = cluster
            .client("scontrol")
            .args(["show", "job", "-o", id])
            .output()
            .expect("run scontrol");
        let record = String::from_utf8_lossy(&out.stdout).to_string();
        if let (Some(state), Some(exit_code)) =
            (field(&record, "JobState"), field(&record, "ExitCode"))
        {
            if !ACTIVE.contains(&state.as_str()) {
                return JobEnd { state, exit_code };
            }
        } else {
            // The record is gone (purged) or scontrol failed: squeue tells whether the job
            // still exists; gone without a final state seen is a failure.
            let q = cluster
                .client("squeue")
                .args(["-h", "-j", id])
                .output()
                .expect("run squeue");
            assert!(
                !String::from_utf8_lossy(&q.stdout).trim().is_empty(),
                "job {id} vanished without a final state; last record: {last}\nscontrol: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                cluster.logs()
            );
        }
        last = record;
        if start.elapsed() > JOB_LIMIT {
            let _ = cluster.client("scancel").arg(id).output();
            panic!(
                "job {id} not finished after {JOB_LIMIT:?}; last record: {last}\n{}",
                cluster.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The tiny run the job trains: 2-layer GPT on the addition data, ZeRO stage 2, 30 steps.
fn write_config(work: &Path, data: &Path) -> PathBuf {
    let path = work.join("tiny.toml");
    let text = format!(
        r#"[model]
kind = "gpt"
n_layer = 2
n_head = 2
d_model = 32
ctx = 16
vocab = 13

[data]
source = "hdf5"
path = "{}"

[train]
steps = 30
micro_batch = 8

[zero]
stage = 2

[log]
every = 10
"#,
        data.display()
    );
    fs::write(&path, text).expect("write config");
    path
}

/// Submits cpu.sbatch on 2 tasks with `launcher`, waits, and checks the output file.
fn run_job(cluster: &Cluster, work: &Path, config: &Path, launcher: &str) {
    let output = work.join(format!("job-{launcher}-%j.out"));
    let out = cluster
        .client("sbatch")
        .current_dir(work)
        .env("CONFIG", config)
        .env("ZEROTRAIN", common::bin())
        .env("LAUNCHER", launcher)
        .arg("--parsable")
        .arg("--ntasks=2")
        .arg(format!("--output={}", output.display()))
        .arg(repo().join("jobs/slurm/cpu.sbatch"))
        .output()
        .expect("run sbatch");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sbatch failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    // --parsable prints "ID" or "ID;cluster".
    let id = stdout.trim().split(';').next().unwrap_or("").to_string();
    assert!(
        id.parse::<u64>().is_ok(),
        "sbatch printed no job id: {stdout:?}"
    );

    let end = wait_job(cluster, &id);
    let log_path = work.join(format!("job-{launcher}-{id}.out"));
    let log = fs::read_to_string(&log_path).unwrap_or_else(|e| {
        panic!("{}: {e}\n{}", log_path.display(), cluster.logs());
    });
    let context = format!(
        "launcher {launcher}, job {id}: state {} exit {}\n--- {} ---\n{log}\n{}",
        end.state,
        end.exit_code,
        log_path.display(),
        cluster.logs()
    );
    assert_eq!(end.state, "COMPLETED", "{context}");
    assert_eq!(end.exit_code, "0:0", "{context}");
    // The job script echoes its launch line: the launcher asked for is the one used.
    let expected_launch = match launcher {
        "srun" => "+ srun --mpi=pmix ",
        _ => "+ mpirun ",
    };
    assert!(log.contains(expected_launch), "{context}");
    // Two ranks in one MPI job (not two singletons of world 1).
    assert!(log.contains("world size 2,"), "{context}");
    assert!(
        log.lines()
            .any(|l| l.starts_with("| world") && l.contains("| 2 ranks")),
        "{context}"
    );
    assert!(
        log.lines().any(|l| l.starts_with("final: step 30 ")),
        "{context}"
    );
}

#[test]
fn cpu_sbatch_trains_under_slurm_with_srun_and_mpirun() {
    let cluster = match Cluster::start() {
        Ok(c) => c,
        Err(why) => {
            if std::env::var("ZEROTRAIN_REQUIRE_SLURM").is_ok_and(|v| v == "1") {
                panic!("Slurm required (ZEROTRAIN_REQUIRE_SLURM=1) but {why}");
            }
            eprintln!("SKIP slurm_job: no single-node Slurm on this machine: {why}");
            return;
        }
    };
    let work = tempfile::tempdir().expect("temp dir");
    let data = work.path().join("addition");
    let synth = common::single(&[
        "data",
        "synth",
        "--task",
        "addition",
        "--out",
        data.to_str().expect("utf-8 temp path"),
        "--count",
        "2000",
        "--val-count",
        "100",
    ]);
    assert!(
        synth.status.success(),
        "data synth failed: {}",
        String::from_utf8_lossy(&synth.stderr)
    );
    let config = write_config(work.path(), &data);
    for launcher in ["srun", "mpirun"] {
        run_job(&cluster, work.path(), &config, launcher);
    }
}
