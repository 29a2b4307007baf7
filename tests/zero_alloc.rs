//! A steady-state optimizer step of the ZeRO engine (every stage, fp32 and bf16, with
//! accumulation and clipping) performs no heap allocation on the training thread: all its
//! buffers come from pools filled during the first steps. A counting global allocator
//! counts this thread's allocations; MPI runs as a singleton (world size 1), which
//! exercises the same code paths (buckets, non-blocking collectives, gathers). Both on the
//! CPU and on the simulated device, where MPI is not CUDA-aware here, so collectives go
//! through the staged transport's host buffers.
use std::sync::Arc;
use zerotrain::config::Config;
use zerotrain::data::Batch;
use zerotrain::device::Cpu;
use zerotrain::dist::Dist;
use zerotrain::model::build_model;
use zerotrain::zero::{Engine, Groups};

mod alloc_counter;
use alloc_counter::allocs;

fn batches(n: usize) -> Vec<Batch> {
    (0..n)
        .map(|k| Batch::Tokens {
            b: 2,
            t: 16,
            inputs: (0..32).map(|i| ((i * 7 + k * 3) % 64) as u32).collect(),
            targets: (0..32).map(|i| ((i * 5 + k) % 64) as u32).collect(),
        })
        .collect()
}

#[test]
fn steady_state_engine_steps_do_not_allocate() {
    let dist = Dist::init("off").unwrap();
    for (device, stage) in [false, true]
        .into_iter()
        .flat_map(|sim| (0..=3).map(move |s| (sim, s)))
    {
        for dtype in ["fp32", "bf16"] {
            let sets = [
                format!("zero.stage={stage}"),
                format!("precision.dtype=\"{dtype}\""),
                "train.micro_batch=2".into(),
                "train.grad_accum=2".into(),
                "train.clip_grad=0.5".into(),
                "zero.bucket_mb=0.05".into(),
            ];
            let cfg = Config::load(None, &sets).unwrap();
            let backend = Arc::new(if device { Cpu::sim(1) } else { Cpu::new(1) });
            let model = build_model(&cfg.model, 2, backend.clone()).unwrap();
            let mut engine = Engine::new(Groups::flat(dist.world()), backend, model, &cfg).unwrap();
            let mut data = batches(12);
            let mut next = move || Ok(data.pop().unwrap_or_else(|| unreachable!()));
            for _ in 0..3 {
                engine.train_step(&mut next, 1e-3, false).unwrap();
            }
            let before = allocs();
            for _ in 0..2 {
                engine.train_step(&mut next, 1e-3, false).unwrap();
            }
            let n = allocs() - before;
            assert_eq!(
                n, 0,
                "sim {device} stage {stage} {dtype}: {n} allocations in two steady-state steps"
            );
        }
    }
}
