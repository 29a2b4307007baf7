//! Finite-difference gradient checks of the whole GPT and MLP, run unit by unit as the
//! training engine runs them.
//!
//! For each tensor, a random unit-norm direction v over its elements: the analytic
//! directional derivative g·v against (L(θ + eps v) - L(θ - eps v)) / 2 eps, L the mean
//! loss. Tolerance: the loss is an f32 mean of O(1) terms whose rounding is ~1e-6, so with
//! eps = 1e-2 the difference quotient carries ~5e-5 of noise; truncation is
//! eps^2 |L'''| / 6 ~ 1e-5. |fd - g·v| <= 2e-4 + 2e-2 |g·v| is well above both, while a
//! wrong or missing gradient path (e.g. the tied head's share of wte) is off by O(|g·v|).
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use zerotrain::config::{ModelConfig, ModelKind};
use zerotrain::data::batch::Batch;
use zerotrain::device::{Backend, Cpu};
use zerotrain::model::{build_model, LocalState};

const EPS: f32 = 1e-2;

fn check_model(name: &str, cfg: &ModelConfig, batch: &Batch, grad_scale: f32) {
    let be = Arc::new(Cpu::new(1));
    let mut model = build_model(cfg, 4, be.clone()).unwrap();
    model.set_batch(batch).unwrap();
    let mut st = LocalState::new(&*be, &*model, 42).unwrap();
    // perturb the init so LayerNorm weights / biases are not all 1 / 0 (gradient paths
    // through them would otherwise be partly invisible)
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for p in &mut st.params {
        for v in be.host_mut(p).unwrap() {
            *v += rng.gen_range(-0.1..0.1);
        }
    }
    model.set_grad_scale(grad_scale);
    st.forward(&mut *model).unwrap();
    st.backward(&*be, &mut *model).unwrap();
    let specs = model.units().to_vec();
    let mut worst = 0.0f64;
    for (u, spec) in specs.iter().enumerate() {
        for t in &spec.tensors {
            let n = t.numel();
            let mut dir: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let norm = dir.iter().map(|v| v * v).sum::<f32>().sqrt();
            dir.iter_mut().for_each(|v| *v /= norm);
            let g = &be.host(&st.grads[u]).unwrap()[t.offset..t.offset + n];
            let an: f64 = g
                .iter()
                .zip(&dir)
                .map(|(g, d)| *g as f64 * *d as f64)
                .sum::<f64>()
                / grad_scale as f64;
            let mut eval = |sign: f32| {
                let p = &mut be.host_mut(&mut st.params[u]).unwrap()[t.offset..t.offset + n];
                p.iter_mut()
                    .zip(&dir)
                    .for_each(|(p, d)| *p += sign * EPS * d);
                let l = st.forward(&mut *model).unwrap() as f64;
                let p = &mut be.host_mut(&mut st.params[u]).unwrap()[t.offset..t.offset + n];
                p.iter_mut()
                    .zip(&dir)
                    .for_each(|(p, d)| *p -= sign * EPS * d);
                l
            };
            let fd = (eval(1.0) - eval(-1.0)) / (2.0 * EPS as f64);
            let err = (fd - an).abs();
            assert!(
                err <= 2e-4 + 2e-2 * an.abs(),
                "{name}: {}: finite difference {fd} vs analytic {an}",
                t.name
            );
            worst = worst.max(err);
        }
    }
    eprintln!("{name}: worst abs error {worst:.2e}");
}

#[test]
fn gpt_whole_model_gradients() {
    let cfg = ModelConfig {
        kind: ModelKind::Gpt,
        n_layer: 2,
        n_head: 2,
        d_model: 8,
        ctx: 6,
        vocab: 7,
        ..ModelConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (b, t) = (3, 5); // t < ctx on purpose
    let inputs: Vec<u32> = (0..b * t).map(|_| rng.gen_range(0..7)).collect();
    let targets: Vec<u32> = (0..b * t).map(|_| rng.gen_range(0..7)).collect();
    // grad scale 2: the analytic gradient is divided by it before comparing
    check_model(
        "gpt",
        &cfg,
        &Batch::Tokens {
            b,
            t,
            inputs,
            targets,
        },
        2.0,
    );
}

#[test]
fn mlp_whole_model_gradients() {
    let cfg = ModelConfig {
        kind: ModelKind::Mlp,
        inputs: 5,
        hidden: vec![7, 6],
        classes: 4,
        ..ModelConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (b, d) = (4, 5);
    let x: Vec<f32> = (0..b * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let y: Vec<u32> = (0..b).map(|_| rng.gen_range(0..4)).collect();
    check_model("mlp", &cfg, &Batch::Features { b, d, x, y }, 1.0);
}
