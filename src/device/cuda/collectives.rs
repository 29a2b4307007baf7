//! The CUDA backend's device collectives: NCCL communicators joined per group, and sum
//! collectives enqueued on the backend's one stream, so they run in order with the
//! kernels around them (no overlap with compute yet: that needs a second stream).
use super::nccl::{nccl, Comm};
use super::Cuda;
use crate::config::DType;
use crate::device::DeviceCollective;

/// The communicators this backend has joined, with this rank's place in each.
#[derive(Default)]
pub(super) struct Comms {
    joined: Vec<(Comm, usize)>,
}

impl Cuda {
    pub(super) fn nccl_available(&self) -> Result<(), String> {
        nccl().map(|_| ())
    }

    pub(super) fn nccl_id(&self) -> anyhow::Result<[u8; 128]> {
        nccl().map_err(anyhow::Error::msg)?.unique_id()
    }

    pub(super) fn nccl_join(
        &self,
        id: &[u8; 128],
        rank: usize,
        size: usize,
    ) -> anyhow::Result<usize> {
        // ncclCommInitRank binds the communicator to the current device: this context's.
        self.ctx.bind_to_thread()?;
        let comm = nccl().map_err(anyhow::Error::msg)?.join(id, rank, size)?;
        let mut comms = self.comms.lock().unwrap_or_else(|e| e.into_inner());
        comms.joined.push((comm, rank));
        Ok(comms.joined.len() - 1)
    }

    /// # Safety
    /// As `Backend::comm_run`.
    pub(super) unsafe fn nccl_run(
        &self,
        comm: usize,
        what: DeviceCollective,
        dtype: DType,
        send: *const u8,
        recv: *mut u8,
        count: usize,
    ) -> anyhow::Result<()> {
        let n = nccl().map_err(anyhow::Error::msg)?;
        let comms = self.comms.lock().unwrap_or_else(|e| e.into_inner());
        let (c, rank) = comms
            .joined
            .get(comm)
            .ok_or_else(|| anyhow::anyhow!("internal error: no NCCL communicator {comm}"))?;
        let stream = self.stream.cu_stream() as *mut std::ffi::c_void;
        n.run(c, stream, what, dtype, send, recv, count, *rank)
    }
}
