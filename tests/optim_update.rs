//! Optimizers against independent f64 reference formulas, first-step closed forms, and
//! sharded updates against unsharded ones.
use zerotrain::config::{OptimizerKind, TrainConfig};
use zerotrain::optim::{build_optimizer, StepHyper};

/// Deterministic values in [lo, hi) (xorshift64*), so the test needs no data files.
fn values(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let u = (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
            lo + (hi - lo) * u
        })
        .collect()
}

fn cfg(kind: OptimizerKind, wd: f64) -> TrainConfig {
    TrainConfig {
        optimizer: kind,
        betas: [0.9, 0.95],
        eps: 1e-8,
        weight_decay: wd,
        momentum: 0.9,
        ..TrainConfig::default()
    }
}

/// The reference update of one element in f64, written from the PyTorch docs'
/// pseudo-code independently of the implementation. State: (m, v) or (buf, _).
#[allow(clippy::too_many_arguments)]
fn reference(
    kind: OptimizerKind,
    c: &TrainConfig,
    p: &mut f64,
    st: &mut (f64, f64),
    g: f64,
    lr: f64,
    t: i32,
    decay: bool,
) {
    let wd = if decay { c.weight_decay } else { 0.0 };
    match kind {
        OptimizerKind::Sgd => {
            let g = g + wd * *p;
            st.0 = if t == 1 { g } else { c.momentum * st.0 + g };
            *p -= lr * st.0;
        }
        OptimizerKind::Adam | OptimizerKind::Adamw => {
            let (b1, b2) = (c.betas[0], c.betas[1]);
            let mut g = g;
            if kind == OptimizerKind::Adamw {
                *p *= 1.0 - lr * wd;
            } else {
                g += wd * *p;
            }
            st.0 = b1 * st.0 + (1.0 - b1) * g;
            st.1 = b2 * st.1 + (1.0 - b2) * g * g;
            let mhat = st.0 / (1.0 - b1.powi(t));
            let vhat = st.1 / (1.0 - b2.powi(t));
            *p -= lr * mhat / (vhat.sqrt() + c.eps);
        }
    }
}

/// Runs `steps` steps of the optimizer and of the f64 reference on the same data and
/// returns the largest absolute difference and the largest parameter movement.
fn compare(kind: OptimizerKind, wd: f64, decay: bool, steps: usize) -> (f64, f64) {
    let n = 1037; // odd length: no lane-multiple assumptions
    let c = cfg(kind, wd);
    let p0 = values(1, n, -1.0, 1.0);
    let mut p = p0.clone();
    let mut pr: Vec<f64> = p0.iter().map(|&x| x as f64).collect();
    let mut st = vec![(0.0, 0.0); n];
    let mut opt = build_optimizer(&c, n);
    for t in 1..=steps {
        let g = values(100 + t as u64, n, -0.5, 0.5);
        let lr = 1e-2 * t as f32; // lr changes per step like a warm-up
        opt.update(0, &mut p, &g, decay, &StepHyper { lr, step: t as u64 });
        for i in 0..n {
            reference(
                kind,
                &c,
                &mut pr[i],
                &mut st[i],
                g[i] as f64,
                lr as f64,
                t as i32,
                decay,
            );
        }
    }
    let diff = p
        .iter()
        .zip(&pr)
        .map(|(&a, &b)| (a as f64 - b).abs())
        .fold(0.0, f64::max);
    let moved = p0
        .iter()
        .zip(&pr)
        .map(|(&a, &b)| (a as f64 - b).abs())
        .fold(0.0, f64::max);
    (diff, moved)
}

// Tolerance: parameters are O(1) and each step is a handful of f32 operations, each
// rounding by at most 2^-24 relative (6e-8); over 5 steps the f32 result stays within a
// few ulps of the f64 reference (measured: at most 2.3e-7). 2e-6 leaves margin yet is
// ~10^5 times smaller than how far the updates move parameters (`moved` > 1e-2), and
// confusing Adam's L2 with AdamW's decoupled decay changes results by ~1e-3.
const TOL: f64 = 2e-6;

#[test]
fn every_optimizer_matches_f64_reference() {
    for kind in [
        OptimizerKind::Sgd,
        OptimizerKind::Adam,
        OptimizerKind::Adamw,
    ] {
        for (wd, decay) in [(0.0, true), (0.1, true), (0.1, false)] {
            let (diff, moved) = compare(kind, wd, decay, 5);
            assert!(
                diff < TOL,
                "{kind:?} wd={wd} decay={decay}: max diff {diff}"
            );
            assert!(moved > 1e-2, "{kind:?}: parameters barely moved ({moved})");
        }
    }
}

#[test]
fn weight_decay_flag_changes_the_update() {
    // The decay and no-decay paths must differ by far more than TOL, or the
    // reference comparison above would not tell them apart.
    for kind in [
        OptimizerKind::Sgd,
        OptimizerKind::Adam,
        OptimizerKind::Adamw,
    ] {
        let c = cfg(kind, 0.5);
        let g = values(7, 64, -0.5, 0.5);
        let mut a = values(8, 64, 0.5, 1.0);
        let mut b = a.clone();
        let hp = StepHyper { lr: 0.1, step: 1 };
        build_optimizer(&c, 64).update(0, &mut a, &g, true, &hp);
        build_optimizer(&c, 64).update(0, &mut b, &g, false, &hp);
        let d = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(
            d as f64 > 100.0 * TOL,
            "{kind:?}: decay made no difference ({d})"
        );
    }
}

#[test]
fn adam_first_step_is_lr_times_sign() {
    // Step 1: m̂ = g and v̂ = g², so Δp = -lr·g/(|g| + ε) = -lr·sign(g) up to ε/|g| ~ 1e-7.
    for kind in [OptimizerKind::Adam, OptimizerKind::Adamw] {
        let c = cfg(kind, 0.0);
        let g = [0.3f32, -2.0, 1e-3, -0.05];
        let mut p = [1.0f32; 4];
        build_optimizer(&c, 4).update(0, &mut p, &g, true, &StepHyper { lr: 0.01, step: 1 });
        for (pi, gi) in p.iter().zip(g) {
            let want = 1.0 - 0.01 * gi.signum();
            assert!((pi - want).abs() < 1e-6, "{kind:?}: {pi} vs {want}");
        }
    }
}

#[test]
fn sgd_momentum_by_hand() {
    // p=1, g=0.5, lr=0.1, μ=0.9, wd=0: buf1=0.5, p1=0.95; buf2=0.9·0.5+0.5=0.95, p2=0.855.
    let c = TrainConfig {
        optimizer: OptimizerKind::Sgd,
        momentum: 0.9,
        weight_decay: 0.0,
        ..TrainConfig::default()
    };
    let mut opt = build_optimizer(&c, 1);
    let mut p = [1.0f32];
    for (t, want) in [(1u64, 0.95f32), (2, 0.855)] {
        opt.update(0, &mut p, &[0.5], true, &StepHyper { lr: 0.1, step: t });
        assert!((p[0] - want).abs() < 1e-6, "step {t}: {} vs {want}", p[0]);
    }
    assert_eq!(opt.state_names(), &["momentum"]);
    assert!((opt.state()[0][0] - 0.95).abs() < 1e-6);
}

#[test]
fn sgd_without_momentum_keeps_no_state() {
    let c = TrainConfig {
        optimizer: OptimizerKind::Sgd,
        momentum: 0.0,
        ..TrainConfig::default()
    };
    let mut opt = build_optimizer(&c, 10);
    assert_eq!(opt.state_bytes(), 0);
    assert!(opt.state_names().is_empty() && opt.state().is_empty());
    let mut p = [1.0f32];
    opt.update(3, &mut p, &[2.0], false, &StepHyper { lr: 0.25, step: 1 });
    assert_eq!(p[0], 0.5);
}

#[test]
fn state_layout_and_bytes() {
    let opt = build_optimizer(&cfg(OptimizerKind::Adamw, 0.1), 100);
    assert_eq!(opt.state_names(), &["exp_avg", "exp_avg_sq"]);
    assert_eq!(opt.state_bytes(), 2 * 100 * 4);
    assert!(opt.state().iter().all(|s| s.len() == 100));
    let sgd = build_optimizer(&cfg(OptimizerKind::Sgd, 0.1), 100);
    assert_eq!(sgd.state_bytes(), 100 * 4);
}

/// The same steps applied to the whole shard at once and in two pieces with offsets
/// (second piece first) must agree bit for bit: the update is element-wise, so nothing
/// may depend on how the shard is cut. A second pair cuts with different decay flags
/// per piece and checks the flags land on the right elements.
#[test]
fn sharded_update_equals_unsharded() {
    for kind in [
        OptimizerKind::Sgd,
        OptimizerKind::Adam,
        OptimizerKind::Adamw,
    ] {
        let c = cfg(kind, 0.1);
        let (n, k) = (301, 117);
        let p0 = values(3, n, -1.0, 1.0);
        let (mut whole, mut cut) = (p0.clone(), p0.clone());
        let (mut ow, mut oc) = (build_optimizer(&c, n), build_optimizer(&c, n));
        let (mut nodecay, mut mixed) = (p0.clone(), p0.clone());
        let (mut on, mut om) = (build_optimizer(&c, n), build_optimizer(&c, n));
        for t in 1..=4u64 {
            let g = values(50 + t, n, -0.5, 0.5);
            let hp = StepHyper { lr: 0.05, step: t };
            ow.update(0, &mut whole, &g, true, &hp);
            let (lo, hi) = cut.split_at_mut(k);
            oc.update(k, hi, &g[k..], true, &hp);
            oc.update(0, lo, &g[..k], true, &hp);

            on.update(0, &mut nodecay, &g, false, &hp);
            let (lo, hi) = mixed.split_at_mut(k);
            om.update(0, lo, &g[..k], true, &hp);
            om.update(k, hi, &g[k..], false, &hp);
        }
        assert_eq!(whole, cut, "{kind:?}: piecewise update differs");
        assert_eq!(ow.state(), oc.state(), "{kind:?}: state differs");
        assert_eq!(mixed[..k], whole[..k], "{kind:?}: decayed piece differs");
        assert_eq!(
            mixed[k..],
            nodecay[k..],
            "{kind:?}: undecayed piece differs"
        );
        assert_ne!(
            whole[k..],
            nodecay[k..],
            "{kind:?}: decay flag had no effect"
        );
    }
}
