//! Launch mistakes (docs/architecture.md, "Hangs") that would otherwise run silently:
//! `srun` without PMI support starts N processes that each come up as a one-rank MPI job
//! (N copies training alone, writing
//! one checkpoint directory). The launcher's own task count, read from its environment,
//! must equal the MPI world size.
//!
//! One case is caught before MPI starts: srun tasks with no MPI plugin at all (`srun
//! --mpi=none`, or a cluster whose `MpiDefault` is none) carry no PMI variable, and Open
//! MPI would either fail in MPI_Init with a page about rebuilding it or, in other MPIs,
//! come up as N singletons.
//!
//! mpirun (Open MPI) sets `OMPI_COMM_WORLD_SIZE`, MPICH's hydra and Slurm's PMI-2 set
//! `PMI_SIZE`; those are compared directly. srun sets `SLURM_STEP_NUM_TASKS` for every
//! task of a step, but also for Open MPI's daemons when mpirun runs inside an allocation
//! (and their children inherit it), so it is only trusted when no MPI launcher variable
//! is present and the world has one rank.

/// Variables a process manager sets for each process it wires into an MPI job: Open MPI's
/// mpirun, PMI-1/2 (MPICH's hydra, `srun --mpi=pmi2`), PMIx (`srun --mpi=pmix`).
const PMI_VARS: [&str; 5] = [
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "PMI_RANK",
    "PMI_FD",
    "PMIX_RANK",
];

/// Before MPI_Init: an srun task of a step of several tasks that no process manager
/// wires into an MPI job.
pub fn before_init(var: impl Fn(&str) -> Option<String>) -> Result<(), String> {
    let tasks = var("SLURM_STEP_NUM_TASKS").and_then(|v| v.trim().parse::<usize>().ok());
    let Some(n) = tasks.filter(|&n| n > 1) else {
        return Ok(());
    };
    let Some(task) = var("SLURM_PROCID") else {
        return Ok(());
    };
    if PMI_VARS.iter().any(|k| var(k).is_some()) {
        return Ok(());
    }
    let plugin = match var("SLURM_MPI_TYPE") {
        Some(t) => format!("SLURM_MPI_TYPE={t}"),
        None => "no PMI variable is set".into(),
    };
    Err(format!(
        "srun task {}: srun started {n} tasks with no MPI plugin ({plugin}), so they cannot \
         form one MPI job. Use `srun --mpi=pmix` (Open MPI; `srun --mpi=list` shows what \
         your Slurm offers) or mpirun",
        task.trim()
    ))
}

/// Checks the world size against the launcher's environment (`var` reads it).
pub fn check(world: usize, var: impl Fn(&str) -> Option<String>) -> Result<(), String> {
    let count = |k: &str| var(k).and_then(|v| v.trim().parse::<usize>().ok());
    for key in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] {
        if let Some(n) = count(key) {
            if n != world {
                return Err(format!(
                    "the launcher started {n} processes ({key}={n}) but MPI joined {world} of them into this job: \
                     is zerotrain built against the MPI whose launcher you used?"
                ));
            }
            return Ok(());
        }
    }
    match count("SLURM_STEP_NUM_TASKS") {
        Some(n) if n > 1 && world == 1 && var("SLURM_PROCID").is_some() => Err(format!(
            "srun started {n} tasks but each came up as a one-rank MPI job: srun is not \
             wiring them together. Use `srun --mpi=pmix` (Open MPI; `srun --mpi=list` shows \
             what your Slurm offers) or mpirun"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn launcher_counts_against_the_world() {
        assert!(check(1, env(&[])).is_ok());
        assert!(check(4, env(&[("OMPI_COMM_WORLD_SIZE", "4")])).is_ok());
        assert!(check(1, env(&[("OMPI_COMM_WORLD_SIZE", "4")])).is_err());
        assert!(check(2, env(&[("PMI_SIZE", "2")])).is_ok());
        let srun_no_pmi = [("SLURM_STEP_NUM_TASKS", "2"), ("SLURM_PROCID", "1")];
        let err = check(1, env(&srun_no_pmi)).unwrap_err();
        assert!(err.contains("srun --mpi=pmix"), "{err}");
        // srun with PMIx: the world has every task.
        assert!(check(2, env(&srun_no_pmi)).is_ok());
        // mpirun inside an allocation: its daemons' step has one task per node, but
        // Open MPI's own variable decides.
        let mpirun_in_slurm = [
            ("SLURM_STEP_NUM_TASKS", "1"),
            ("SLURM_PROCID", "0"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
        ];
        assert!(check(4, env(&mpirun_in_slurm)).is_ok());
    }

    #[test]
    fn srun_without_an_mpi_plugin_is_caught_before_init() {
        use super::before_init;
        let none = [
            ("SLURM_STEP_NUM_TASKS", "2"),
            ("SLURM_PROCID", "1"),
            ("SLURM_MPI_TYPE", "none"),
        ];
        let err = before_init(env(&none)).unwrap_err();
        assert!(
            err.contains("srun task 1") && err.contains("srun --mpi=pmix"),
            "{err}"
        );
        let pmix = [
            ("SLURM_STEP_NUM_TASKS", "2"),
            ("SLURM_PROCID", "1"),
            ("PMIX_RANK", "1"),
        ];
        assert!(before_init(env(&pmix)).is_ok());
        // One task, or no srun at all: nothing to wire.
        assert!(before_init(env(&[("SLURM_STEP_NUM_TASKS", "1"), ("SLURM_PROCID", "0")])).is_ok());
        assert!(before_init(env(&[])).is_ok());
    }
}
