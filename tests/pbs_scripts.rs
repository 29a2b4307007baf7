//! The PBS and Slurm job scripts without a scheduler: every script parses (`bash -n`), and
//! the dry-run mode (DRY_RUN=1) prints the launch line each one would run, computed from
//! the scheduler's variables (a fake PBS_NODEFILE, SLURM_*). No PBS server is packaged for
//! Debian, so this is what the PBS scripts get; the Slurm CPU script also runs under a
//! real Slurm in tests/slurm_job.rs.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `*.ext` file in `jobs/<sub>`, sorted.
fn scripts(sub: &str, ext: &str) -> Vec<PathBuf> {
    let dir = repo().join("jobs").join(sub);
    let mut found: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    found.sort();
    found
}

/// A clean `bash SCRIPT` in dry-run mode: no scheduler variables from the outside, only
/// those given.
fn dry_run(script: &Path, vars: &[(&str, &str)]) -> String {
    let mut c = Command::new("bash");
    c.arg(script).current_dir(repo()).env("DRY_RUN", "1");
    for (k, _) in std::env::vars() {
        if ["SLURM_", "SBATCH_", "SRUN_", "PBS_"]
            .iter()
            .any(|p| k.starts_with(p))
            || [
                "CONFIG",
                "ZEROTRAIN",
                "LAUNCHER",
                "NP",
                "RANKS_PER_NODE",
                "THREADS",
                "TIME_LIMIT",
            ]
            .contains(&k.as_str())
        {
            c.env_remove(&k);
        }
    }
    c.envs(vars.iter().copied());
    let out = c.output().expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "DRY_RUN=1 {} {vars:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The single launch line a dry run prints ("+ CMD ..."), split into words (the trailing
/// "# ..." note dropped).
fn launch_words(stdout: &str) -> Vec<String> {
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("+ ")).collect();
    assert_eq!(lines.len(), 1, "expected one launch line:\n{stdout}");
    let cmd = lines[0][2..].split("  #").next().unwrap_or("");
    cmd.split_whitespace().map(str::to_string).collect()
}

/// The word after `flag` in `words`.
fn after<'a>(words: &'a [String], flag: &str) -> Option<&'a str> {
    let i = words.iter().position(|w| w == flag)?;
    words.get(i + 1).map(String::as_str)
}

/// A PBS_NODEFILE as PBS writes it: one line per MPI slot, `slots` lines per host.
fn nodefile(dir: &Path, hosts: &[&str], slots: usize) -> PathBuf {
    let path = dir.join("nodefile");
    let text: String = hosts
        .iter()
        .flat_map(|h| std::iter::repeat_n(format!("{h}\n"), slots))
        .collect();
    fs::write(&path, text).expect("write nodefile");
    path
}

#[test]
fn every_job_script_parses() {
    let all: Vec<PathBuf> = [scripts("pbs", "pbs"), scripts("slurm", "sbatch")].concat();
    assert!(all.len() >= 4, "job scripts missing: {all:?}");
    for script in all {
        let out = Command::new("bash")
            .arg("-n")
            .arg(&script)
            .output()
            .expect("run bash -n");
        assert!(
            out.status.success(),
            "bash -n {}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The `--set` values of a launch line, `key=value` each.
fn sets(words: &[String]) -> Vec<&str> {
    words
        .windows(2)
        .filter(|w| w[0] == "--set")
        .map(|w| w[1].as_str())
        .collect()
}

/// Every job survives its scheduler stopping it: each launch resumes from the newest
/// checkpoint; Slurm scripts ask for a signal to the ranks before the time limit (not
/// `B:`, which reaches only the batch shell), a requeue, and append to one output file;
/// PBS scripts are rerunnable and take the walltime as the time limit (Torque's
/// PBS_WALLTIME, seconds) unless TIME_LIMIT is given.
#[test]
fn every_job_resumes_and_asks_its_scheduler_for_a_requeue() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nf = nodefile(dir.path(), &["node-a", "node-b"], 4);
    let nf = nf.to_str().expect("utf-8 temp path");
    for script in scripts("slurm", "sbatch") {
        let text = fs::read_to_string(&script).expect("read script");
        for directive in ["#SBATCH --requeue", "#SBATCH --open-mode=append"] {
            assert!(
                text.contains(directive),
                "{}: no {directive}",
                script.display()
            );
        }
        let signal = text
            .lines()
            .find_map(|l| l.strip_prefix("#SBATCH --signal="))
            .unwrap_or_else(|| panic!("{}: no --signal", script.display()));
        assert!(
            signal.starts_with("USR1@"),
            "{}: {signal}",
            script.display()
        );
        let w = launch_words(&dry_run(&script, &[]));
        assert!(
            sets(&w).contains(&"checkpoint.resume=auto"),
            "{}: {w:?}",
            script.display()
        );
    }
    for script in scripts("pbs", "pbs") {
        let text = fs::read_to_string(&script).expect("read script");
        assert!(
            text.contains("\n#PBS -r y\n"),
            "{}: not rerunnable",
            script.display()
        );
        let w = launch_words(&dry_run(
            &script,
            &[("PBS_NODEFILE", nf), ("PBS_WALLTIME", "3600")],
        ));
        let given = sets(&w);
        assert!(
            given.contains(&"checkpoint.resume=auto"),
            "{}: {w:?}",
            script.display()
        );
        assert!(
            given.contains(&"train.time_limit=3600"),
            "{}: {w:?}",
            script.display()
        );
        let w = launch_words(&dry_run(
            &script,
            &[
                ("PBS_NODEFILE", nf),
                ("PBS_WALLTIME", "3600"),
                ("TIME_LIMIT", "00:50:00"),
            ],
        ));
        assert!(
            sets(&w).contains(&"train.time_limit=00:50:00"),
            "{}: {w:?}",
            script.display()
        );
    }
}

#[test]
fn pbs_gpu_multinode_runs_four_ranks_on_each_of_two_nodes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nf = nodefile(dir.path(), &["node-a", "node-b"], 4);
    let nf = nf.to_str().expect("utf-8 temp path");
    let out = dry_run(
        &repo().join("jobs/pbs/gpu-multinode.pbs"),
        &[("PBS_NODEFILE", nf)],
    );
    let w = launch_words(&out);
    assert_eq!(w[0], "mpirun", "{out}");
    assert_eq!(after(&w, "-np"), Some("8"), "2 nodes x 4 ranks: {out}");
    assert_eq!(after(&w, "-hostfile"), Some(nf), "{out}");
    assert_eq!(after(&w, "--map-by"), Some("ppr:4:node"), "{out}");
    assert_eq!(
        after(&w, "--config"),
        Some("jobs/configs/gpt2-124m.toml"),
        "{out}"
    );
    assert!(w.iter().any(|x| x.ends_with("zerotrain")), "{out}");
    assert_eq!(after(&w, "--set"), Some("system.threads=8"), "{out}");

    // RANKS_PER_NODE follows the site's GPUs per node: 2 x 2 = 4 ranks.
    let out = dry_run(
        &repo().join("jobs/pbs/gpu-multinode.pbs"),
        &[("PBS_NODEFILE", nf), ("RANKS_PER_NODE", "2")],
    );
    let w = launch_words(&out);
    assert_eq!(after(&w, "-np"), Some("4"), "{out}");
    assert_eq!(after(&w, "--map-by"), Some("ppr:2:node"), "{out}");
}

#[test]
fn pbs_cpu_runs_two_ranks_and_needs_a_nodefile() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nf = nodefile(dir.path(), &["node-a", "node-b"], 4);
    let nf = nf.to_str().expect("utf-8 temp path");
    let script = repo().join("jobs/pbs/cpu.pbs");
    let out = dry_run(&script, &[("PBS_NODEFILE", nf)]);
    let w = launch_words(&out);
    assert_eq!(w[0], "mpirun", "{out}");
    assert_eq!(
        after(&w, "-np"),
        Some("2"),
        "the default job is 2 ranks: {out}"
    );
    assert_eq!(after(&w, "-hostfile"), Some(nf), "{out}");
    assert_eq!(
        after(&w, "--config"),
        Some("jobs/configs/addition-cpu.toml"),
        "{out}"
    );

    // Without PBS_NODEFILE the script stops with a message instead of launching.
    let mut c = Command::new("bash");
    c.arg(&script)
        .current_dir(repo())
        .env("DRY_RUN", "1")
        .env_remove("PBS_NODEFILE");
    let out = c.output().expect("run bash");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PBS_NODEFILE is not set"));
}

#[test]
fn slurm_gpu_multinode_launches_with_srun_pmix() {
    let script = repo().join("jobs/slurm/gpu-multinode.sbatch");
    let out = dry_run(
        &script,
        &[
            ("SLURM_JOB_NUM_NODES", "2"),
            ("SLURM_NTASKS_PER_NODE", "4"),
            ("SLURM_CPUS_PER_TASK", "8"),
            ("CONFIG", "my.toml"),
        ],
    );
    let w = launch_words(&out);
    assert_eq!(w[0], "srun", "{out}");
    assert!(w.iter().any(|x| x == "--mpi=pmix"), "{out}");
    assert_eq!(after(&w, "train"), Some("--config"), "{out}");
    assert_eq!(after(&w, "--config"), Some("my.toml"), "{out}");
    assert_eq!(after(&w, "--set"), Some("system.threads=8"), "{out}");
    assert!(out.contains("2 nodes x 4 ranks"), "{out}");

    // MPICH sites switch the PMI flavour.
    let out = dry_run(&script, &[("SRUN_MPI", "pmi2")]);
    assert!(
        launch_words(&out).iter().any(|x| x == "--mpi=pmi2"),
        "{out}"
    );
}

#[test]
fn slurm_cpu_dry_run_follows_launcher_choice() {
    let script = repo().join("jobs/slurm/cpu.sbatch");
    let w = launch_words(&dry_run(&script, &[("SLURM_CPUS_PER_TASK", "2")]));
    assert_eq!(&w[..2], ["srun", "--mpi=pmix"]);
    assert_eq!(after(&w, "--set"), Some("system.threads=2"));
    let w = launch_words(&dry_run(&script, &[("LAUNCHER", "mpirun")]));
    assert_eq!(w[0], "mpirun");
    assert_eq!(after(&w, "--bind-to"), Some("none"));
}
