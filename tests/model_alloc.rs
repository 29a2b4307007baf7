//! A steady-state GPT and MLP forward + backward performs no heap allocation: a counting
//! global allocator counts the allocations made by this test's thread during one step.
use std::sync::Arc;
use zerotrain::config::{ModelConfig, ModelKind};
use zerotrain::data::batch::Batch;
use zerotrain::device::Cpu;
use zerotrain::model::{build_model, LocalState};

mod alloc_counter;
use alloc_counter::allocs;

fn steady_state_allocations(cfg: &ModelConfig, batch: &Batch) -> usize {
    let be = Arc::new(Cpu::new(1));
    let mut model = build_model(cfg, 4, be.clone()).unwrap();
    let mut st = LocalState::new(&*be, &*model, 1).unwrap();
    for _ in 0..2 {
        model.set_batch(batch).unwrap();
        st.forward(&mut *model).unwrap();
        st.backward(&*be, &mut *model).unwrap();
    }
    let before = allocs();
    model.set_batch(batch).unwrap();
    let loss = st.forward(&mut *model).unwrap();
    st.backward(&*be, &mut *model).unwrap();
    let n = allocs() - before;
    assert!(loss.is_finite());
    n
}

#[test]
fn no_allocation_in_a_steady_state_step() {
    let gpt = ModelConfig {
        kind: ModelKind::Gpt,
        n_layer: 2,
        n_head: 2,
        d_model: 32,
        ctx: 16,
        vocab: 20,
        ..ModelConfig::default()
    };
    let toks: Vec<u32> = (0..4 * 16).map(|i| (i * 7 % 20) as u32).collect();
    let b = Batch::Tokens {
        b: 4,
        t: 16,
        inputs: toks.clone(),
        targets: toks,
    };
    assert_eq!(steady_state_allocations(&gpt, &b), 0, "gpt step allocated");
    // the counter does see allocations
    let before = allocs();
    let v = std::hint::black_box(vec![1u8; 10]);
    assert_eq!(allocs() - before, 1);
    drop(v);

    let mlp = ModelConfig {
        kind: ModelKind::Mlp,
        inputs: 6,
        hidden: vec![16, 8],
        classes: 3,
        ..ModelConfig::default()
    };
    let b = Batch::Features {
        b: 4,
        d: 6,
        x: vec![0.5; 24],
        y: vec![0, 1, 2, 1],
    };
    assert_eq!(steady_state_allocations(&mlp, &b), 0, "mlp step allocated");
}
