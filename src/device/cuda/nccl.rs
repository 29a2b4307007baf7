//! NCCL, loaded at run time by its real name (`libnccl.so.2`; cudarc's loader looks for
//! `libnccl.so` and CUDA-versioned names, which NCCL does not ship), for the device
//! collectives of the CUDA backend. Only the calls the ZeRO engine needs: a unique id,
//! joining a communicator, and sum all-reduce, reduce-scatter and all-gather enqueued on
//! the backend's stream.
use crate::config::DType;
use crate::device::DeviceCollective;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::mem::transmute;
use std::sync::OnceLock;

type NcclResult = c_int;
type NcclComm = *mut c_void;
type Stream = *mut c_void;

/// `ncclUniqueId`: 128 opaque bytes, passed by value.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UniqueId {
    pub internal: [c_char; 128],
}

// ncclDataType_t and ncclRedOp_t values (nccl.h, stable since NCCL 2.10).
const NCCL_FLOAT16: c_int = 6;
const NCCL_FLOAT32: c_int = 7;
const NCCL_BFLOAT16: c_int = 9;
const NCCL_SUM: c_int = 0;

// The entry points' C signatures (nccl.h).
type GetUniqueId = unsafe extern "C" fn(*mut UniqueId) -> NcclResult;
type CommInitRank = unsafe extern "C" fn(*mut NcclComm, c_int, UniqueId, c_int) -> NcclResult;
/// ncclAllReduce and ncclReduceScatter: send, recv, count, type, op, comm, stream.
type Reduce = unsafe extern "C" fn(
    *const c_void,
    *mut c_void,
    usize,
    c_int,
    c_int,
    NcclComm,
    Stream,
) -> NcclResult;
type AllGather =
    unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, NcclComm, Stream) -> NcclResult;
type CommDestroy = unsafe extern "C" fn(NcclComm) -> NcclResult;
type ErrorString = unsafe extern "C" fn(NcclResult) -> *const c_char;

/// The NCCL entry points, resolved once per process.
pub struct Nccl {
    get_unique_id: GetUniqueId,
    comm_init_rank: CommInitRank,
    all_reduce: Reduce,
    reduce_scatter: Reduce,
    all_gather: AllGather,
    comm_destroy: CommDestroy,
    error_string: ErrorString,
}

/// NCCL, or why it cannot be loaded in this process (checked once).
pub fn nccl() -> Result<&'static Nccl, String> {
    static NCCL: OnceLock<Result<Nccl, String>> = OnceLock::new();
    NCCL.get_or_init(load).as_ref().map_err(|e| e.clone())
}

fn load() -> Result<Nccl, String> {
    // SAFETY: dlopen of a library name; symbols are looked up below by their C names and
    // given the signatures nccl.h declares.
    unsafe {
        let h = libc::dlopen(c"libnccl.so.2".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if h.is_null() {
            return Err(
                "NCCL (libnccl.so.2) was not found; add its directory to LD_LIBRARY_PATH".into(),
            );
        }
        let sym = |name: &CStr| {
            let p = libc::dlsym(h, name.as_ptr());
            if p.is_null() {
                Err(format!("libnccl.so.2 has no {}", name.to_string_lossy()))
            } else {
                Ok(p)
            }
        };
        Ok(Nccl {
            get_unique_id: transmute::<*mut c_void, GetUniqueId>(sym(c"ncclGetUniqueId")?),
            comm_init_rank: transmute::<*mut c_void, CommInitRank>(sym(c"ncclCommInitRank")?),
            all_reduce: transmute::<*mut c_void, Reduce>(sym(c"ncclAllReduce")?),
            reduce_scatter: transmute::<*mut c_void, Reduce>(sym(c"ncclReduceScatter")?),
            all_gather: transmute::<*mut c_void, AllGather>(sym(c"ncclAllGather")?),
            comm_destroy: transmute::<*mut c_void, CommDestroy>(sym(c"ncclCommDestroy")?),
            error_string: transmute::<*mut c_void, ErrorString>(sym(c"ncclGetErrorString")?),
        })
    }
}

/// A joined communicator, destroyed on drop.
pub struct Comm {
    raw: NcclComm,
}

// SAFETY: an NCCL communicator may be used from any thread, one call at a time (the
// backend serialises its use behind a Mutex).
unsafe impl Send for Comm {}

impl Drop for Comm {
    fn drop(&mut self) {
        if let Ok(n) = nccl() {
            // SAFETY: `raw` came from ncclCommInitRank and is destroyed once.
            unsafe { (n.comm_destroy)(self.raw) };
        }
    }
}

impl Nccl {
    fn check(&self, what: &str, rc: NcclResult) -> anyhow::Result<()> {
        if rc == 0 {
            return Ok(());
        }
        // SAFETY: ncclGetErrorString returns a static NUL-terminated string.
        let msg = unsafe { CStr::from_ptr((self.error_string)(rc)) };
        anyhow::bail!("{what} failed: {} (NCCL error {rc})", msg.to_string_lossy())
    }

    /// A fresh unique id (on one rank; the others receive it).
    pub fn unique_id(&self) -> anyhow::Result<[u8; 128]> {
        let mut id = UniqueId { internal: [0; 128] };
        // SAFETY: a valid out-pointer.
        self.check("ncclGetUniqueId", unsafe { (self.get_unique_id)(&mut id) })?;
        Ok(id.internal.map(|c| c as u8))
    }

    /// Joins communicator `id` as `rank` of `size` (blocks until every rank has joined).
    pub fn join(&self, id: &[u8; 128], rank: usize, size: usize) -> anyhow::Result<Comm> {
        let id = UniqueId {
            internal: id.map(|b| b as c_char),
        };
        let mut raw: NcclComm = std::ptr::null_mut();
        // SAFETY: a valid out-pointer and an id made by ncclGetUniqueId.
        let rc = unsafe { (self.comm_init_rank)(&mut raw, size as c_int, id, rank as c_int) };
        self.check("ncclCommInitRank", rc)?;
        Ok(Comm { raw })
    }

    /// Enqueues `what` on `stream` (sums; see `DeviceCollective` for `count`).
    ///
    /// # Safety
    /// `send`/`recv` are device addresses of the sizes `what` states, valid until the
    /// stream has run the collective.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn run(
        &self,
        comm: &Comm,
        stream: Stream,
        what: DeviceCollective,
        dtype: DType,
        send: *const u8,
        recv: *mut u8,
        count: usize,
        rank: usize,
    ) -> anyhow::Result<()> {
        let t = match dtype {
            DType::Fp32 => NCCL_FLOAT32,
            DType::Bf16 => NCCL_BFLOAT16,
            DType::Fp16 => NCCL_FLOAT16,
        };
        let (s, r) = (send as *const c_void, recv as *mut c_void);
        let rc = match what {
            DeviceCollective::AllReduceInPlace => {
                (self.all_reduce)(r, r, count, t, NCCL_SUM, comm.raw, stream)
            }
            DeviceCollective::ReduceScatter => {
                (self.reduce_scatter)(s, r, count, t, NCCL_SUM, comm.raw, stream)
            }
            DeviceCollective::AllGather => (self.all_gather)(s, r, count, t, comm.raw, stream),
            // NCCL's in-place all-gather: the send buffer is this rank's block of recv.
            DeviceCollective::AllGatherInPlace => {
                let mine = recv.add(rank * count * dtype.bytes()) as *const c_void;
                (self.all_gather)(mine, r, count, t, comm.raw, stream)
            }
        };
        self.check("an NCCL collective", rc)
    }
}
