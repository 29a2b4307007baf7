//! The stand-in for the CUDA backend in a build without the `cuda` cargo feature: the
//! functions the rest of the crate calls, each saying how to get the real backend.
use super::dispatch::OnBackend;

const WHY: &str = "this zerotrain was built without the `cuda` cargo feature \
                   (rebuild with `cargo build --release --features cuda`)";

/// Why there are no CUDA devices in this build.
pub fn probe() -> Result<usize, String> {
    Err(WHY.into())
}

/// Would run `job` on CUDA device `ordinal`; in this build, says why it cannot.
pub fn run_on<J: OnBackend>(_ordinal: usize, _job: J) -> anyhow::Result<J::Out> {
    anyhow::bail!("CUDA backend unavailable: {WHY}")
}
