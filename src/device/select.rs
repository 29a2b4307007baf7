//! Choosing the backend from `system.device`: "cpu", "cuda", "auto" or "sim" (the
//! simulated device, a test instrument: see `device/cpu/mod.rs`).
//!
//! "auto" takes CUDA when this build has the `cuda` feature, the CUDA libraries load and
//! a device exists, else the CPU, and says which and why. "cuda" where CUDA cannot run is
//! an error naming the reason. Works the same with and without the feature, so callers
//! never need a `cfg`.

/// The backend a rank runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The CPU backend.
    Cpu,
    /// The CUDA backend on device `ordinal`.
    Cuda { ordinal: usize },
    /// The simulated device: CPU kernels over memory the engine treats as device memory.
    Sim,
}

/// Why `system.device` cannot be honoured.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    #[error(
        "system.device: unknown device {0:?} (expected \"cpu\", \"cuda\", \"auto\" or \"sim\")"
    )]
    Unknown(String),
    #[error("system.device = \"cuda\" but CUDA cannot be used: {0}")]
    CudaUnavailable(String),
}

/// The number of usable CUDA devices, or why there are none.
pub fn cuda_devices() -> Result<usize, String> {
    super::cuda::probe()
}

/// The backend for `device` on the rank with node-local index `local_rank` of the
/// node's `local_size` ranks (ranks on a node take GPUs round-robin), and a sentence
/// saying which and why for the start-up log. The sentence says when the node's ranks
/// outnumber its GPUs, on every rank (rank 0, which logs it, has local rank 0).
pub fn select(
    device: &str,
    local_rank: usize,
    local_size: usize,
) -> Result<(DeviceChoice, String), SelectError> {
    select_with(device, local_rank, local_size, cuda_devices())
}

/// [`select`] given the outcome of [`cuda_devices`] (separate so it can be tested
/// without a GPU).
pub fn select_with(
    device: &str,
    local_rank: usize,
    local_size: usize,
    cuda: Result<usize, String>,
) -> Result<(DeviceChoice, String), SelectError> {
    let on_gpu = |count: usize| {
        let ordinal = local_rank % count;
        let share = if local_size > count {
            format!("; {local_size} ranks on this node share its {count} GPUs")
        } else {
            String::new()
        };
        let why = format!(
            "CUDA device {ordinal} of {count} (node-local rank {local_rank} of {local_size}){share}"
        );
        (DeviceChoice::Cuda { ordinal }, why)
    };
    match device {
        "cpu" => Ok((DeviceChoice::Cpu, "CPU (system.device = \"cpu\")".into())),
        "sim" => Ok((
            DeviceChoice::Sim,
            "the simulated device on the CPU kernels (system.device = \"sim\")".into(),
        )),
        "cuda" => cuda.map(on_gpu).map_err(SelectError::CudaUnavailable),
        "auto" => Ok(match cuda {
            Ok(count) => on_gpu(count),
            Err(why) => (
                DeviceChoice::Cpu,
                format!("CPU (system.device = \"auto\": {why})"),
            ),
        }),
        other => Err(SelectError::Unknown(other.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_and_auto_choices() {
        let (c, why) = select_with("auto", 3, 4, Ok(2)).unwrap();
        assert_eq!(c, DeviceChoice::Cuda { ordinal: 1 });
        assert!(
            why.contains("4 ranks on this node share its 2 GPUs"),
            "{why}"
        );
        // Rank 0, which logs the sentence, sees the sharing too.
        let (c, why) = select_with("auto", 0, 3, Ok(2)).unwrap();
        assert_eq!(c, DeviceChoice::Cuda { ordinal: 0 });
        assert!(why.contains("share"), "{why}");
        let (_, why) = select_with("auto", 1, 2, Ok(2)).unwrap();
        assert!(!why.contains("share"), "{why}");
        let (c, why) = select_with("auto", 0, 1, Err("no libcuda".into())).unwrap();
        assert_eq!(c, DeviceChoice::Cpu);
        assert!(why.contains("no libcuda"), "{why}");
        assert_eq!(
            select_with("cpu", 0, 1, Ok(8)).unwrap().0,
            DeviceChoice::Cpu
        );
        assert_eq!(
            select_with("cuda", 1, 2, Ok(4)).unwrap().0,
            DeviceChoice::Cuda { ordinal: 1 }
        );
    }

    #[test]
    fn cuda_without_gpu_and_unknown_names_are_errors() {
        let e = select_with("cuda", 0, 1, Err("no libcuda".into())).unwrap_err();
        assert!(e.to_string().contains("no libcuda"), "{e}");
        let e = select_with("gpu", 0, 1, Ok(1)).unwrap_err();
        assert_eq!(e, SelectError::Unknown("gpu".into()));
    }
}
