//! The one place a backend is built from the device choice: callers hand code that is
//! generic over the backend ([`OnBackend`]) and never name a backend or test a cargo
//! feature themselves (without the `cuda` feature, `device::cuda` is a stand-in whose
//! constructor says so, as candle does).
use super::select::DeviceChoice;
use super::{Backend, Cpu};
use std::sync::Arc;

/// Code to run on whichever backend was chosen (the training loop, a benchmark).
pub trait OnBackend {
    type Out;
    fn run<B: Backend + 'static>(self, backend: Arc<B>) -> Self::Out;
}

/// Builds the backend `choice` names (`threads` for the CPU kernels) and runs `job` on it;
/// an error here means the backend could not be built.
pub fn run_on<J: OnBackend>(
    choice: DeviceChoice,
    threads: usize,
    job: J,
) -> anyhow::Result<J::Out> {
    Ok(match choice {
        DeviceChoice::Cpu => job.run(Arc::new(Cpu::new(threads))),
        DeviceChoice::Sim => job.run(Arc::new(Cpu::sim(threads))),
        DeviceChoice::Cuda { ordinal } => return super::cuda::run_on(ordinal, job),
    })
}
