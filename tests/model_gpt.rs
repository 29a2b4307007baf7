//! GPT behaviour: layout and init, initial loss, causality, bad input, and overfitting a
//! fixed batch with a plain Adam loop over the flat unit buffers.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use zerotrain::config::{ModelConfig, ModelKind};
use zerotrain::data::batch::Batch;
use zerotrain::device::{Backend, Cpu};
use zerotrain::model::{build_model, param_count, unit_specs, LocalState};

fn gpt(n_layer: usize, n_head: usize, d_model: usize, ctx: usize, vocab: usize) -> ModelConfig {
    ModelConfig {
        kind: ModelKind::Gpt,
        n_layer,
        n_head,
        d_model,
        ctx,
        vocab,
        ..ModelConfig::default()
    }
}

fn random_batch(seed: u64, b: usize, t: usize, vocab: usize) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let toks: Vec<u32> = (0..b * t + 1)
        .map(|_| rng.gen_range(0..vocab as u32))
        .collect();
    Batch::Tokens {
        b,
        t,
        inputs: toks[..b * t].to_vec(),
        targets: toks[1..].to_vec(),
    }
}

#[test]
fn layout_counts_and_init() {
    let cfg = gpt(3, 2, 16, 8, 11);
    let (c, l) = (16, 3);
    let units = unit_specs(&cfg);
    assert_eq!(units.len(), l + 2);
    assert_eq!(
        param_count(&cfg),
        11 * c + 8 * c + l * (12 * c * c + 13 * c) + 2 * c
    );
    for u in &units {
        let mut off = 0;
        for t in &u.tensors {
            assert_eq!(t.offset, off, "{}: tensors packed without gaps", t.name);
            off += t.numel();
        }
        assert_eq!(off, u.numel);
    }
    let e = &units[0];
    assert!(e.tensor("wte.weight").unwrap().decay && !e.tensor("wpe.weight").unwrap().decay);
    assert!(units[1].tensor("h.0.attn.c_attn.weight").unwrap().decay);
    assert!(!units[1].tensor("h.0.ln_1.weight").unwrap().decay);
    assert!(!units[1].tensor("h.0.mlp.c_fc.bias").unwrap().decay);

    let be = Arc::new(Cpu::new(1));
    let model = build_model(&cfg, 2, be).unwrap();
    assert_eq!(model.tied_root(), Some(0));
    let blk = model.init_unit(2, 7);
    assert_eq!(blk, model.init_unit(2, 7), "init is deterministic");
    assert_ne!(blk, model.init_unit(2, 8), "and depends on the seed");
    assert_ne!(blk, model.init_unit(1, 7), "and differs between units");
    let std = |name: &str, spec: &zerotrain::model::UnitSpec, v: &[f32]| {
        let t = spec.tensor(name).unwrap();
        let s = &v[t.offset..t.offset + t.numel()];
        (s.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
    };
    let spec = &units[2];
    // 1024+ draws: the sample std is within ~5% of the true one
    assert!((std("h.1.mlp.c_fc.weight", spec, &blk) - 0.02).abs() < 0.002);
    let proj = 0.02 / (6.0f64).sqrt();
    assert!((std("h.1.mlp.c_proj.weight", spec, &blk) - proj).abs() < 0.1 * proj);
    assert_eq!(std("h.1.ln_2.weight", spec, &blk), 1.0);
    assert_eq!(std("h.1.attn.c_attn.bias", spec, &blk), 0.0);
}

#[test]
fn initial_loss_is_log_vocab() {
    let cfg = gpt(2, 2, 32, 32, 65);
    let be = Arc::new(Cpu::new(1));
    let mut model = build_model(&cfg, 8, be.clone()).unwrap();
    model.set_batch(&random_batch(1, 8, 32, 65)).unwrap();
    let st = LocalState::new(&*be, &*model, 1337).unwrap();
    let loss = st.forward(&mut *model).unwrap();
    let want = (65f32).ln();
    assert!(
        (loss - want).abs() < 0.1,
        "initial loss {loss}, ln(65) = {want}"
    );
}

#[test]
fn causal_and_shorter_sequences() {
    let cfg = gpt(2, 2, 16, 8, 13);
    let be = Arc::new(Cpu::new(1));
    let mut model = build_model(&cfg, 2, be.clone()).unwrap();
    let st = LocalState::new(&*be, &*model, 5).unwrap();
    let Batch::Tokens {
        inputs, targets, ..
    } = random_batch(2, 2, 5, 13)
    else {
        unreachable!()
    };
    let mut logits = |inputs: &[u32]| {
        let b = Batch::Tokens {
            b: 2,
            t: 5,
            inputs: inputs.to_vec(),
            targets: targets.clone(),
        };
        model.set_batch(&b).unwrap();
        st.forward(&mut *model).unwrap();
        let mut out = vec![0.0; 5 * 13];
        for p in 0..5 {
            model.logits_at(1, p, &mut out[p * 13..(p + 1) * 13]);
        }
        out
    };
    let a = logits(&inputs);
    let mut changed = inputs.clone();
    changed[5 + 3] = (changed[5 + 3] + 1) % 13; // sequence 1, position 3
    let b = logits(&changed);
    assert_eq!(
        a[..3 * 13],
        b[..3 * 13],
        "positions before 3 must not see the change"
    );
    assert_ne!(a[3 * 13..4 * 13], b[3 * 13..4 * 13]);
}

#[test]
fn bad_batches_are_errors() {
    let cfg = gpt(1, 1, 8, 4, 10);
    let be = Arc::new(Cpu::new(1));
    let mut model = build_model(&cfg, 2, be).unwrap();
    let tok = |b, t, inputs: Vec<u32>| Batch::Tokens {
        b,
        t,
        targets: vec![0; inputs.len()],
        inputs,
    };
    let e = model
        .set_batch(&tok(1, 4, vec![1, 2, 10, 3]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("10") && e.contains("position 2"), "{e}");
    assert!(model.set_batch(&tok(1, 5, vec![0; 5])).is_err(), "t > ctx");
    assert!(
        model.set_batch(&tok(3, 4, vec![0; 12])).is_err(),
        "b > max_batch"
    );
    assert!(
        model.set_batch(&tok(1, 4, vec![0; 3])).is_err(),
        "wrong length"
    );
    let f = Batch::Features {
        b: 1,
        d: 2,
        x: vec![0.0; 2],
        y: vec![0],
    };
    assert!(model.set_batch(&f).is_err(), "feature batch for a GPT");
    let be2 = Arc::new(Cpu::new(1));
    let p = be2.alloc(3).unwrap();
    assert!(
        model.forward_unit(0, &p, None).is_err(),
        "forward before set_batch"
    );
}

#[test]
fn overfits_a_fixed_batch() {
    let cfg = gpt(2, 2, 32, 16, 16);
    let be = Arc::new(Cpu::new(1));
    let mut model = build_model(&cfg, 4, be.clone()).unwrap();
    model.set_batch(&random_batch(3, 4, 16, 16)).unwrap();
    let mut st = LocalState::new(&*be, &*model, 1).unwrap();
    let mut mv: Vec<(Vec<f32>, Vec<f32>)> = model
        .units()
        .iter()
        .map(|u| (vec![0.0; u.numel], vec![0.0; u.numel]))
        .collect();
    let (lr, b1, b2) = (1e-2f32, 0.9f32, 0.99f32);
    let mut loss = f32::NAN;
    for step in 1..=300 {
        loss = st.forward(&mut *model).unwrap();
        if loss < 0.05 {
            eprintln!("loss {loss} after {step} steps");
            break;
        }
        st.backward(&*be, &mut *model).unwrap();
        let (c1, c2) = (1.0 - b1.powi(step), 1.0 - b2.powi(step));
        for (u, (m, v)) in mv.iter_mut().enumerate() {
            let g = be.host(&st.grads[u]).unwrap().to_vec();
            let p = be.host_mut(&mut st.params[u]).unwrap();
            for i in 0..p.len() {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                p[i] -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + 1e-8);
            }
        }
    }
    assert!(loss < 0.05, "loss after training on one batch: {loss}");
}
