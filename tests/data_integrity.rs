//! Data integrity while training, through the real binary under the real mpirun: a shard
//! whose values changed (still inside the vocabulary, so only its checksum can tell) or
//! a manifest with a wrong checksum fails the job on every rank naming the shard and both
//! checksums; a shard first read mid-run aborts the job with that message; a clean
//! dataset trains. HDF5 file locking: a shard another process holds an exclusive lock on
//! still trains, and a write that meets a lock names `HDF5_USE_FILE_LOCKING=FALSE`. The
//! manifest's checksum notation: written as hex, read as integers too.
mod common;
mod data_common;
use common::{mpirun, run_with_timeout, tempdir};
use data_common::{make_text, prepare, spec, zt_ok};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};
use zerotrain::config::Sampling;
use zerotrain::data::{open_sampler, Manifest};

const CTX: usize = 8;
const SEED: u64 = 7;
const LOCKING_ENV: &str = "HDF5_USE_FILE_LOCKING";

/// A char dataset of 3600 train and 400 val tokens, in `shards` train shards.
fn dataset(dir: &Path, shards: usize) -> PathBuf {
    prepare(dir, &make_text(4000, 3), shards, 0.1)
}

/// `zerotrain train` under `mpirun -np 2` on the dataset `ds`, with `sets` added.
fn train(ds: &Path, sets: &[&str]) -> Output {
    let path = format!("data.path=\"{}\"", ds.display());
    let ctx = format!("model.ctx={CTX}");
    let seed = format!("train.seed={SEED}");
    let mut all = vec![
        "data.source=\"hdf5\"",
        &path,
        "model.vocab=32",
        &ctx,
        &seed,
        "train.micro_batch=2",
    ];
    all.extend_from_slice(sets);
    let mut cmd = mpirun(2);
    // As on a cluster: HDF5's locking as the program sets it (.cargo/config.toml turns it
    // off for the tests' own processes).
    cmd.env_remove(LOCKING_ENV).arg("train");
    for s in all {
        cmd.args(["--set", s]);
    }
    run_with_timeout(cmd, Duration::from_secs(120))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_trains(out: &Output) {
    assert!(
        out.status.success(),
        "training failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

/// The job failed; the line of each rank in `ranks` (prefixed `rank R:`) holds every
/// part of `parts`; nothing panicked. Returns stderr.
fn assert_fails_naming(out: &Output, ranks: &[usize], parts: &[&str]) -> String {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "training should fail\nstderr:\n{err}"
    );
    assert!(!err.contains("panic"), "a panic, not an error:\n{err}");
    for r in ranks {
        let prefix = format!("rank {r}: ");
        let line = err
            .lines()
            .find(|l| l.contains(&prefix) && parts.iter().all(|p| l.contains(p)))
            .unwrap_or_else(|| panic!("no line from rank {r} naming all of {parts:?}:\n{err}"));
        assert!(
            line.matches(&prefix).count() == 1,
            "rank named twice: {line}"
        );
    }
    err
}

fn manifest_crc(ds: &Path, file: &str) -> u32 {
    let m = Manifest::load(ds).unwrap();
    m.shards.iter().find(|s| s.file == file).unwrap().crc32
}

/// zlib CRC-32 of a uint16 token shard as it is now on disk.
fn data_crc(path: &Path) -> u32 {
    let t: Vec<u16> = hdf5::File::open(path)
        .unwrap()
        .dataset("tokens")
        .unwrap()
        .read_raw()
        .unwrap();
    let bytes: Vec<u8> = t.iter().flat_map(|v| v.to_le_bytes()).collect();
    crc32fast::hash(&bytes)
}

/// Swaps the bytes of tokens `i` and `j` in the file itself (not through HDF5), as a
/// bit rot or a stray write would: every token stays inside the vocabulary.
fn swap_tokens_on_disk(path: &Path, i: u64, j: u64) {
    let t: Vec<u16> = hdf5::File::open(path)
        .unwrap()
        .dataset("tokens")
        .unwrap()
        .read_raw()
        .unwrap();
    assert_ne!(
        t[i as usize], t[j as usize],
        "tokens {i} and {j} must differ"
    );
    let offset = hdf5::File::open(path)
        .unwrap()
        .dataset("tokens")
        .unwrap()
        .offset()
        .expect("contiguous tokens dataset");
    let mut bytes = std::fs::read(path).unwrap();
    let (a, b) = ((offset + 2 * i) as usize, (offset + 2 * j) as usize);
    bytes.swap(a, b);
    bytes.swap(a + 1, b + 1);
    std::fs::write(path, bytes).unwrap();
}

fn set_manifest_crc(ds: &Path, file: &str, crc: u32) {
    let mut m = Manifest::load(ds).unwrap();
    m.shards.iter_mut().find(|s| s.file == file).unwrap().crc32 = crc;
    m.save(ds).unwrap();
}

#[test]
fn changed_tokens_fail_training_on_every_rank() {
    let tmp = tempdir();
    let ds = dataset(tmp.path(), 1);
    let shard = ds.join("train_000.h5");
    swap_tokens_on_disk(&shard, 100, 1000);
    // Only the checksum sees it: every id is in the vocabulary, the file opens.
    zt_ok(&["data", "inspect", ds.to_str().unwrap()]);
    let (want, got) = (
        format!("{:08x}", manifest_crc(&ds, "train_000.h5")),
        format!("{:08x}", data_crc(&shard)),
    );
    let out = train(&ds, &["train.steps=3"]);
    assert_fails_naming(
        &out,
        &[0, 1],
        &["train_000.h5", "checksum mismatch", &want, &got],
    );
    // data.verify = false trains on the changed data.
    assert_trains(&train(&ds, &["train.steps=3", "data.verify=false"]));
}

#[test]
fn a_wrong_manifest_checksum_fails_on_every_rank() {
    let tmp = tempdir();
    let ds = dataset(tmp.path(), 2);
    let real = manifest_crc(&ds, "val_000.h5");
    let wrong = real ^ 0x0100_0000;
    set_manifest_crc(&ds, "val_000.h5", wrong);
    // The val shard, read for evaluation during set-up.
    let out = train(&ds, &["train.steps=2", "train.eval_every=1"]);
    assert_fails_naming(
        &out,
        &[0, 1],
        &[
            "val_000.h5",
            "checksum mismatch",
            &format!("{wrong:08x}"),
            &format!("{real:08x}"),
        ],
    );
}

#[test]
fn a_clean_dataset_trains_and_evaluates() {
    let tmp = tempdir();
    let ds = dataset(tmp.path(), 3);
    zt_ok(&["data", "inspect", ds.to_str().unwrap(), "--verify"]);
    let out = train(&ds, &["train.steps=4", "train.eval_every=2"]);
    assert_trains(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("val_loss"),
        "no evaluation"
    );
}

/// A shard this job first reads after training started: the loader thread's error is
/// an error of that `next_batch`, which aborts the job (non-zero, the message, no hang).
#[test]
fn a_shard_first_read_mid_run_aborts_the_job() {
    let tmp = tempdir();
    let ds = dataset(tmp.path(), 4);
    // The shards each rank reads, global micro-batch by global micro-batch (epoch mode).
    let reads: Vec<Vec<Vec<usize>>> = (0..2)
        .map(|r| {
            let sp = spec(r, 2, 2, CTX, SEED, Sampling::Epoch);
            let (_, mut s) = open_sampler(&ds, &sp, None).unwrap();
            (0..50)
                .map(|_| s.next_refs().iter().map(|x| x.shard).collect())
                .collect()
        })
        .collect();
    let first_read = |shard: usize| {
        (0..50)
            .flat_map(|g| (0..2).map(move |r| (g, r)))
            .find(|&(g, r)| reads[r][g].contains(&shard))
    };
    let (shard, g, rank) = (0..4)
        .filter_map(|s| first_read(s).map(|(g, r)| (s, g, r)))
        .find(|&(_, g, _)| g >= 1)
        .expect("a shard first read after global micro-batch 0");
    let file = format!("train_{shard:03}.h5");
    let real = manifest_crc(&ds, &file);
    set_manifest_crc(&ds, &file, real ^ 1);
    let steps = format!("train.steps={}", g + 2);
    let t = Instant::now();
    let out = train(&ds, &["data.sampling=\"epoch\"", &steps]);
    let err = assert_fails_naming(
        &out,
        &[rank],
        &[
            &file,
            "checksum mismatch",
            &format!("global micro-batch {g}"),
            &format!("{real:08x}"),
        ],
    );
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "took {:?}:\n{err}",
        t.elapsed()
    );
}

/// `flock -x FILE sleep`, the lock HDF5 itself takes (flock(2)), held by another process
/// until dropped.
struct HeldLock(Child);

impl HeldLock {
    fn on(path: &Path) -> HeldLock {
        // --no-fork: the pid we kill is the process holding the lock.
        let child = Command::new("flock")
            .args(["--no-fork", "-x"])
            .arg(path)
            .args(["sleep", "120"])
            .spawn()
            .expect("flock (util-linux)");
        let held = HeldLock(child);
        let t = Instant::now();
        // Held once a non-blocking shared lock is refused.
        while Command::new("flock")
            .args(["-n", "-s"])
            .arg(path)
            .arg("true")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
        {
            assert!(t.elapsed() < Duration::from_secs(10), "flock never held");
            std::thread::sleep(Duration::from_millis(20));
        }
        held
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether the `flock` program (util-linux) is here; says the test skips when not.
fn have_flock() -> bool {
    let here = Command::new("flock").arg("--version").output().is_ok();
    if !here {
        println!("skipping: flock (util-linux) is not installed");
    }
    here
}

#[test]
fn a_shard_locked_by_another_process_still_trains() {
    if !have_flock() {
        return;
    }
    let tmp = tempdir();
    let ds = dataset(tmp.path(), 2);
    let d = ds.to_str().unwrap();
    let _lock = HeldLock::on(&ds.join("train_000.h5"));
    // The lock is real: HDF5 with its locking forced on cannot open the shard.
    let forced = zerotrain_with_locking(&["data", "inspect", d], Some("TRUE"));
    let msg = String::from_utf8_lossy(&forced.stderr);
    assert!(
        !forced.status.success() && msg.contains("unable to lock file"),
        "{msg}"
    );
    let verified = zerotrain_with_locking(&["data", "inspect", d, "--verify"], None);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert_trains(&train(&ds, &["train.steps=3", "train.eval_every=3"]));
}

#[test]
fn a_write_that_meets_a_lock_names_the_fix() {
    if !have_flock() {
        return;
    }
    let tmp = tempdir();
    // data prepare over an existing dataset whose shard another process holds locked.
    let ds = dataset(tmp.path(), 1);
    let _lock = HeldLock::on(&ds.join("train_000.h5"));
    let txt = tmp.path().join("input.txt");
    let (t, d) = (txt.to_str().unwrap(), ds.to_str().unwrap());
    let out = zerotrain_with_locking(&["data", "prepare", "--text", t, "--out", d], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "prepare wrote a locked file\n{err}");
    for part in [
        "train_000.h5",
        "unable to lock file",
        "HDF5_USE_FILE_LOCKING=FALSE",
    ] {
        assert!(err.contains(part), "error lacks {part:?}:\n{err}");
    }
    // And the fix it names works.
    let fixed =
        zerotrain_with_locking(&["data", "prepare", "--text", t, "--out", d], Some("FALSE"));
    assert!(
        fixed.status.success(),
        "{}",
        String::from_utf8_lossy(&fixed.stderr)
    );
}

/// The binary (one process) with `HDF5_USE_FILE_LOCKING` set to `locking`, or unset.
fn zerotrain_with_locking(args: &[&str], locking: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zerotrain"));
    c.args(args);
    match locking {
        Some(v) => c.env(LOCKING_ENV, v),
        None => c.env_remove(LOCKING_ENV),
    };
    run_with_timeout(c, Duration::from_secs(60))
}

/// Checksums are written as 8 hex digits (the notation of meta.json too), and a manifest
/// in the older notation, integers, still loads and verifies.
#[test]
fn manifest_checksums_are_hex_and_integers_still_read() {
    let dir = tempdir();
    let ds = dataset(dir.path(), 2);
    let path = ds.join("manifest.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let want = manifest_crc(&ds, "train_000.h5");
    assert_eq!(v["shards"][0]["crc32"], format!("{want:08x}"));
    for s in v["shards"].as_array_mut().unwrap() {
        let hex = s["crc32"].as_str().unwrap().to_string();
        s["crc32"] = u32::from_str_radix(&hex, 16).unwrap().into();
    }
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    assert_eq!(manifest_crc(&ds, "train_000.h5"), want);
    let report = zt_ok(&["data", "inspect", ds.to_str().unwrap(), "--verify"]);
    assert!(report.contains(&format!("{want:08x}")), "{report}");
}
