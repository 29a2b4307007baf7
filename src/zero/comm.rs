//! Collectives on backend memory, timed and counted, over one of two transports (MPI on
//! the memory itself, or staged through host buffers): every element this rank contributes is
//! added to the step's volume, time in flight to `comm_ms` and time spent waiting to
//! `exposed_ms`.
use crate::config::DType;
use crate::device::{Backend, DeviceCollective, Store};
use crate::dist::{watchdog, Group, RawCollective, Request, ScalarOp};
use crate::metrics::{CommCounter, CommKind, NodeBytes};
use serde::Serialize;
use std::time::Instant;

/// One step's communication: elements per collective kind (padded) and time.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct CommStats {
    /// Elements per kind; `total` is the logical volume as the ZeRO paper counts it (an
    /// all-reduce counts twice: a reduce-scatter plus an all-gather).
    pub counter: CommCounter,
    /// Time at least one collective was in flight (overlapping ones counted once).
    #[serde(skip)]
    pub comm_ms: f64,
    /// Time the step waited on collectives.
    #[serde(skip)]
    pub exposed_ms: f64,
    /// Bytes this rank sent to a rank on its own node and to one on another node, had
    /// every collective run as a ring in group-rank order ([`ring_bytes`]).
    #[serde(skip)]
    pub bytes: NodeBytes,
    /// In-flight intervals of this step's collectives, merged into `comm_ms` by `finish`.
    #[serde(skip)]
    intervals: Vec<(Instant, Instant)>,
}

/// A copy of the counters and times; the in-flight intervals are per-step scratch of the
/// engine and are not copied (so reporting a step allocates nothing).
impl Clone for CommStats {
    fn clone(&self) -> Self {
        CommStats {
            counter: self.counter,
            comm_ms: self.comm_ms,
            exposed_ms: self.exposed_ms,
            bytes: self.bytes,
            intervals: Vec::new(),
        }
    }
}

impl CommStats {
    /// Starts a new step, keeping the interval buffer's capacity (no allocation).
    pub fn reset(&mut self) {
        let mut intervals = std::mem::take(&mut self.intervals);
        intervals.clear();
        *self = CommStats {
            intervals,
            ..CommStats::default()
        };
    }

    /// Merges the step's in-flight intervals into `comm_ms`.
    pub fn finish(&mut self) {
        self.intervals.sort_unstable_by_key(|i| i.0);
        let mut total = 0.0;
        let mut current: Option<(Instant, Instant)> = None;
        for &(s, e) in &self.intervals {
            current = match current {
                Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
                Some((cs, ce)) => {
                    total += (ce - cs).as_secs_f64();
                    Some((s, e))
                }
                None => Some((s, e)),
            };
        }
        if let Some((cs, ce)) = current {
            total += (ce - cs).as_secs_f64();
        }
        self.comm_ms = total * 1e3;
    }

    fn add_allreduce(&mut self, n: usize) {
        self.counter.add(CommKind::Allreduce, n);
        self.counter.total += n as u64; // its all-gather half
    }
    fn add_reduce_scatter(&mut self, n: usize) {
        self.counter.add(CommKind::ReduceScatter, n);
    }
    fn add_allgather(&mut self, n: usize) {
        self.counter.add(CommKind::Allgather, n);
    }
    /// Counts what this rank sends for `what` of `count` elements of `dtype` over `group`.
    fn add_bytes(&mut self, group: &Group, what: RawCollective, count: usize, dtype: DType) {
        let sent = ring_bytes(what, count, group.size(), dtype.bytes());
        match group.successor_on_other_node() {
            true => self.bytes.inter_node += sent,
            false => self.bytes.intra_node += sent,
        }
    }
    /// Time of a blocking collective: all of it was in flight and all of it exposed.
    fn blocking(&mut self, since: Instant) {
        let now = Instant::now();
        self.exposed_ms += (now - since).as_secs_f64() * 1e3;
        self.intervals.push((since, now));
    }
}

/// Bytes one rank sends for a collective over `size` ranks when it runs as a ring, the
/// bandwidth-optimal algorithm (NCCL's, and what the ZeRO paper's volumes assume), in
/// which every rank sends only to its ring successor: `size - 1` blocks of `count`
/// elements for a reduce-scatter or an all-gather (`count` per rank), twice `size - 1`
/// blocks of `count / size` for an all-reduce of `count`. MPI libraries pick other
/// algorithms for some sizes (docs/architecture.md, "Hybrid sharding", measured there).
pub fn ring_bytes(what: RawCollective, count: usize, size: usize, elem_bytes: usize) -> u64 {
    let steps = size as u64 - 1;
    let block = match what {
        RawCollective::AllReduceInPlace => 2 * count as u64 / size as u64,
        _ => count as u64,
    };
    steps * block * elem_bytes as u64
}

/// How the backend's memory reaches MPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// MPI reads and writes the backend's memory itself: host memory (the CPU backend),
    /// or device memory with CUDA-aware MPI.
    Direct,
    /// Through host buffers: copy out, collective on the host copy, copy back (every
    /// copy counted in the backend's transfers).
    Staged,
    /// The backend's own collective library (NCCL on CUDA) on communicator `comm`,
    /// enqueued in stream order with the kernels (see [`connect_device`]).
    Device { comm: usize },
}

impl Transport {
    /// The transport for `backend` over `group`, and why (for the start-up summary).
    pub fn choose<B: Backend>(backend: &B, group: &Group) -> (Transport, String) {
        let (t, why) = if backend.host_resident() {
            (Transport::Direct, "host memory")
        } else if group.cuda_aware_detected() {
            // Detected, not asked for: the engine's collectives are non-blocking, which
            // crashes CUDA-aware OpenMPI 4.1 on GPU memory (open-mpi/ompi issue 9845).
            (
                Transport::Staged,
                "device memory; CUDA-aware MPI detected but not used, as non-blocking collectives on GPU memory crash OpenMPI 4.1 (ompi 9845): set system.cuda_aware = \"on\" to use it",
            )
        } else if group.cuda_aware() {
            (Transport::Direct, "device memory, CUDA-aware MPI")
        } else {
            (Transport::Staged, "device memory, MPI not CUDA-aware")
        };
        let name = match t {
            Transport::Direct => "direct",
            Transport::Staged => "staged through host buffers",
            Transport::Device { .. } => "device collectives",
        };
        (t, format!("{name} ({why})"))
    }
}

/// Host buffers for the staged transport, kept between steps so a steady step does not
/// allocate.
#[derive(Debug, Default)]
pub struct StagingPool {
    free: Vec<Store>,
}

impl StagingPool {
    /// A host buffer of `len` elements of `dtype` (contents unspecified).
    fn take(&mut self, dtype: DType, len: usize) -> Store {
        let mut s = match self.free.iter().position(|s| s.dtype() == dtype) {
            Some(i) => self.free.swap_remove(i),
            None => Store::zeros(dtype, 0),
        };
        s.set_len(len);
        s
    }
    fn give(&mut self, s: Store) {
        self.free.push(s);
    }
}

/// The (send, receive) pair of a non-blocking collective, each in backend memory.
pub struct MemPair<B: Backend> {
    pub send: B::Mem,
    pub recv: B::Mem,
}

/// A non-blocking collective on backend memory, owning its buffers until it completes.
/// Fields drop in declaration order: the request first (dropping an unfinished request
/// waits for it), so the buffers are never freed while MPI may still use them.
pub struct InFlight<B: Backend> {
    /// The MPI request; none for a device collective, which is complete in stream order
    /// for everything enqueued after it.
    req: Option<Request>,
    what: RawCollective,
    count: usize,
    bufs: MemPair<B>,
    /// Staged: the host copies MPI works on (send, receive).
    host: Option<(Store, Store)>,
    started: Instant,
    done: Option<Instant>,
}

/// Elements of send and receive a collective of `count` touches over `size` ranks. The
/// in-place all-reduce works on `send` alone (its result stays there).
fn extents(what: RawCollective, count: usize, size: usize) -> (usize, usize) {
    match what {
        RawCollective::AllReduceInPlace => (count, 0),
        RawCollective::ReduceScatter => (count * size, count),
        RawCollective::AllGather => (count, count * size),
        RawCollective::AllGatherInPlace => unreachable!("in-place all-gathers are blocking"),
    }
}

/// The (send, receive) addresses MPI gets: the in-place all-reduce reduces `send`.
fn addresses(what: RawCollective, send: *mut u8, recv: *mut u8) -> (*const u8, *mut u8) {
    match what {
        RawCollective::AllReduceInPlace => (std::ptr::null(), send),
        _ => (send, recv),
    }
}

/// Starts `what` (a sum all-reduce in place, a sum reduce-scatter or an all-gather) over
/// `bufs` (see [`RawCollective`] for what `count` counts; the in-place all-reduce reduces
/// `bufs.send`) and counts it in `stats`.
pub fn start<B: Backend>(
    backend: &B,
    link: &Link,
    staging: &mut StagingPool,
    what: RawCollective,
    mut bufs: MemPair<B>,
    count: usize,
    stats: &mut CommStats,
) -> anyhow::Result<InFlight<B>> {
    let (group, transport) = (link.group, link.transport);
    // The volume as the ZeRO paper counts it (elements this rank contributes).
    match what {
        RawCollective::AllReduceInPlace => stats.add_allreduce(count),
        RawCollective::ReduceScatter => stats.add_reduce_scatter(count * group.size()),
        RawCollective::AllGather | RawCollective::AllGatherInPlace => {
            stats.add_allgather(count * group.size())
        }
    }
    let dtype = backend.mem_dtype(&bufs.send);
    stats.add_bytes(group, what, count, dtype);
    let (ns, nr) = extents(what, count, group.size());
    let (req, host) = match transport {
        Transport::Direct => {
            backend.sync()?; // the producer kernels must be done before MPI reads
            let (send, recv) = addresses(
                what,
                backend.mem_ptr(&mut bufs.send),
                backend.mem_ptr(&mut bufs.recv),
            );
            // SAFETY: both buffers hold at least `extents` elements (the engine sizes them
            // for the largest collective) and move into the InFlight, which keeps them
            // until the request completes.
            let req = unsafe { group.start_raw(what, dtype, send, recv, count)? };
            (Some(req), None)
        }
        Transport::Device { comm } => {
            let (send, recv) = addresses(
                what,
                backend.mem_ptr(&mut bufs.send),
                backend.mem_ptr(&mut bufs.recv),
            );
            // SAFETY: as above; the buffers go back to the engine's pools only after the
            // InFlight, and every later use of them is enqueued after the collective.
            unsafe { backend.comm_run(comm, device_collective(what), dtype, send, recv, count)? };
            (None, None)
        }
        Transport::Staged => {
            let mut hs = staging.take(dtype, ns);
            let mut hr = staging.take(dtype, nr);
            backend.download_mem(&bufs.send, 0, &mut hs, 0, ns);
            let (send, recv) = addresses(what, hs.as_mut_ptr(), hr.as_mut_ptr());
            // SAFETY: the host copies have the sizes `what` needs and move into the
            // InFlight (moving a Vec does not move its elements).
            let req = unsafe { group.start_raw(what, dtype, send, recv, count)? };
            (Some(req), Some((hs, hr)))
        }
    };
    Ok(InFlight {
        req,
        what,
        count,
        bufs,
        host,
        started: Instant::now(),
        done: None,
    })
}

impl<B: Backend> InFlight<B> {
    /// Drives MPI progress; true once complete.
    pub fn test(&mut self) -> bool {
        if self.done.is_none() && self.req.as_mut().is_none_or(|r| r.test()) {
            self.done = Some(Instant::now());
        }
        self.done.is_some()
    }

    /// Waits, copies a staged result back into the receive buffer, and returns the
    /// buffers; adds to the step's times.
    pub fn wait(
        self,
        backend: &B,
        group: &Group,
        staging: &mut StagingPool,
        stats: &mut CommStats,
    ) -> anyhow::Result<MemPair<B>> {
        let waited = Instant::now();
        let InFlight {
            req,
            what,
            count,
            mut bufs,
            host,
            started,
            done,
        } = self;
        if let Some(req) = req {
            req.wait();
        }
        if let Some((hs, hr)) = host {
            match extents(what, count, group.size()) {
                (ns, 0) => backend.upload_mem(&mut bufs.send, 0, &hs, 0, ns),
                (_, nr) => backend.upload_mem(&mut bufs.recv, 0, &hr, 0, nr),
            }
            staging.give(hs);
            staging.give(hr);
        }
        let now = Instant::now();
        stats.intervals.push((started, done.unwrap_or(now)));
        if done.is_none() {
            stats.exposed_ms += (now - waited).as_secs_f64() * 1e3;
        }
        Ok(bufs)
    }
}

/// Joins a device communicator (NCCL) over `group` when `setting` asks for one
/// (`"nccl"`) or allows it (`"auto"`) and the backend has one on every rank of the
/// group; returns the transport to use instead of MPI and why, or `None` to stay on MPI.
/// Collective over `group`: every rank calls it, and all reach the same answer.
pub fn connect_device<B: Backend>(
    backend: &B,
    group: &Group,
    setting: &str,
) -> anyhow::Result<Option<(Transport, String)>> {
    if setting == "mpi" {
        return Ok(None);
    }
    let here = backend.device_collectives();
    let missing = group.all_reduce_f64(if here.is_ok() { 0.0 } else { 1.0 }, ScalarOp::Sum);
    if missing > 0.0 {
        return match (setting, here) {
            ("nccl", Err(why)) => anyhow::bail!("system.collectives = \"nccl\": {why}"),
            ("nccl", Ok(())) => anyhow::bail!(
                "system.collectives = \"nccl\": {missing} rank(s) of group {} cannot load it",
                group.name()
            ),
            _ => Ok(None),
        };
    }
    // Rank 0 makes the id and sends it with a success flag, so a failure there stops
    // every rank here rather than in the join.
    let made = if group.rank() == 0 {
        Some(backend.comm_id())
    } else {
        None
    };
    let mut mine = [0u64; 17];
    if let Some(Ok(id)) = &made {
        mine[0] = 1;
        for (w, chunk) in mine[1..].iter_mut().zip(id.chunks_exact(8)) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(chunk);
            *w = u64::from_le_bytes(bytes);
        }
    }
    let all = group.all_gather_u64s(&mine)?;
    if let Some(Err(e)) = made {
        return Err(e.context("making the NCCL id"));
    }
    anyhow::ensure!(
        all[0] == 1,
        "rank 0 of group {} could not make the NCCL id",
        group.name()
    );
    let mut id = [0u8; 128];
    for (chunk, w) in id.chunks_mut(8).zip(&all[1..17]) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    let comm = backend.comm_join(&id, group.rank(), group.size())?;
    Ok(Some((
        Transport::Device { comm },
        format!("the backend's device collectives (NCCL, libnccl.so.2; system.collectives = \"{setting}\"; they run in stream order, so comm_ms and comm_exposed_ms are not measured)"),
    )))
}

/// A group with the transport its collectives use.
#[derive(Clone, Copy)]
pub struct Link<'d> {
    pub group: &'d Group,
    pub transport: Transport,
}

/// Backend memory an in-place all-gather fills: an f32 buffer or typed memory.
pub enum Target<'a, B: Backend> {
    F32(&'a mut B::Buf),
    Mem(&'a mut B::Mem),
}

/// The dtype and device address of an all-gather target.
fn target_ptr<B: Backend>(backend: &B, target: Target<'_, B>) -> (DType, *mut u8) {
    match target {
        Target::F32(b) => (DType::Fp32, backend.buf_ptr(b) as *mut u8),
        Target::Mem(m) => (backend.mem_dtype(m), backend.mem_ptr(m)),
    }
}

/// The backend's name for an MPI-shaped collective.
fn device_collective(what: RawCollective) -> DeviceCollective {
    match what {
        RawCollective::AllReduceInPlace => DeviceCollective::AllReduceInPlace,
        RawCollective::ReduceScatter => DeviceCollective::ReduceScatter,
        RawCollective::AllGather => DeviceCollective::AllGather,
        RawCollective::AllGatherInPlace => DeviceCollective::AllGatherInPlace,
    }
}

/// Blocking all-gather in place: `target[..count * size]` holds this rank's block at
/// `rank * count` and receives every other rank's.
pub fn all_gather_in_place<B: Backend>(
    backend: &B,
    link: &Link,
    staging: &mut StagingPool,
    target: Target<'_, B>,
    count: usize,
    stats: &mut CommStats,
) -> anyhow::Result<()> {
    let t = Instant::now();
    let (group, n) = (link.group, count * link.group.size());
    stats.add_allgather(n);
    let what = RawCollective::AllGatherInPlace;
    let mine = group.rank() * count;
    let dtype = match &target {
        Target::F32(_) => DType::Fp32,
        Target::Mem(m) => backend.mem_dtype(m),
    };
    stats.add_bytes(group, what, count, dtype);
    match (link.transport, target) {
        (Transport::Direct, target) => {
            backend.sync()?;
            let (dtype, ptr) = target_ptr(backend, target);
            // SAFETY: the target holds `count * size` elements (a padded unit).
            unsafe { group.run_raw(what, dtype, std::ptr::null(), ptr, count)? };
        }
        (Transport::Device { comm }, target) => {
            let (dtype, ptr) = target_ptr(backend, target);
            let what = DeviceCollective::AllGatherInPlace;
            // SAFETY: the target holds `count * size` elements and outlives the stream's
            // use of it (later work is enqueued after).
            unsafe { backend.comm_run(comm, what, dtype, std::ptr::null(), ptr, count)? };
        }
        (Transport::Staged, Target::F32(b)) => {
            let mut host = staging.take(DType::Fp32, n);
            let Store::F32(h) = &mut host else {
                anyhow::bail!("internal error: an f32 staging buffer of another dtype");
            };
            backend.download_at(b, mine, &mut h[mine..mine + count]);
            // SAFETY: `h` holds `count * size` elements.
            unsafe {
                group.run_raw(
                    what,
                    DType::Fp32,
                    std::ptr::null(),
                    host.as_mut_ptr(),
                    count,
                )?
            };
            if let Store::F32(h) = &host {
                backend.upload_at(b, 0, h);
            }
            staging.give(host);
        }
        (Transport::Staged, Target::Mem(m)) => {
            let mut host = staging.take(backend.mem_dtype(m), n);
            backend.download_mem(m, mine, &mut host, mine, count);
            let dtype = host.dtype();
            // SAFETY: `host` holds `count * size` elements.
            unsafe { group.run_raw(what, dtype, std::ptr::null(), host.as_mut_ptr(), count)? };
            backend.upload_mem(m, 0, &host, 0, n);
            staging.give(host);
        }
    }
    stats.blocking(t);
    Ok(())
}

/// Blocking element-wise sum of a few scalars over the group, in one collective (loss,
/// grad-norm partials).
pub fn sum_scalars<const N: usize>(group: &Group, x: [f64; N], stats: &mut CommStats) -> [f64; N] {
    let t = Instant::now();
    watchdog::note(
        "the all-reduce of the step's scalars (loss, norm, stop)",
        None,
    );
    let s = group.all_reduce_f64s(x, ScalarOp::Sum);
    stats.blocking(t);
    s
}
