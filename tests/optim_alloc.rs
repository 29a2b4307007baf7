//! `Optimizer::update` and the gradient-norm helpers perform no heap allocation
//! (a steady-state step must not allocate). Counts allocations made by this thread
//! with a counting global allocator, so other test threads cannot disturb the count.
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use zerotrain::config::{OptimizerKind, TrainConfig};
use zerotrain::optim::{build_optimizer, clip_coef, has_non_finite, sum_squares, StepHyper};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> usize {
    ALLOCS.with(|c| c.get())
}

#[test]
fn update_does_not_allocate() {
    let n = 4096;
    let mut p = vec![0.5f32; n];
    let g = vec![0.1f32; n];
    for kind in [
        OptimizerKind::Sgd,
        OptimizerKind::Adam,
        OptimizerKind::Adamw,
    ] {
        let c = TrainConfig {
            optimizer: kind,
            weight_decay: 0.1,
            ..TrainConfig::default()
        };
        let mut opt = build_optimizer(&c, n);
        let before = allocs();
        let mut s = 0.0;
        for t in 1..=3u64 {
            let hp = StepHyper { lr: 1e-3, step: t };
            opt.update(0, &mut p[..1000], &g[..1000], true, &hp);
            opt.update(1000, &mut p[1000..], &g[1000..], false, &hp);
            s += sum_squares(&g) + clip_coef(1.0, 0.5) as f64;
            assert!(!has_non_finite(&p));
        }
        assert_eq!(allocs() - before, 0, "{kind:?} allocated");
        assert!(s > 0.0);
    }
    // The counter works: an allocation is seen.
    let before = allocs();
    let v = std::hint::black_box(vec![1u8; 10]);
    assert!(allocs() > before && v.len() == 10);
}
