//! Launch mistakes (docs/architecture.md, "Hangs") that would otherwise run silently: `srun` without PMI support starts N
//! processes that each come up as a one-rank MPI job (N copies training alone, writing
//! one checkpoint directory). The launcher's own task count, read from its environment,
//! must equal the MPI world size.
//!
//! mpirun (Open MPI) sets `OMPI_COMM_WORLD_SIZE`, MPICH's hydra and Slurm's PMI-2 set
//! `PMI_SIZE`; those are compared directly. srun sets `SLURM_STEP_NUM_TASKS` for every
//! task of a step, but also for Open MPI's daemons when mpirun runs inside an allocation
//! (and their children inherit it), so it is only trusted when no MPI launcher variable
//! is present and the world has one rank.

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
}
