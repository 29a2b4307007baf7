//! Finite-difference gradient checks of every layer on the CPU backend.
//!
//! Each check takes a scalar L = sum_i out_i * r_i (r fixed random), evaluates the layer's
//! backward with d(out) = r, and compares every input and parameter gradient element with
//! the central difference (L(x + eps) - L(x - eps)) / 2 eps, L summed in f64.
//! Tolerance: with eps = 1e-2 and outputs O(1), the f32 rounding in L is ~1e-6, i.e.
//! ~5e-5 after dividing by 2 eps, and the truncation error eps^2 f'''/6 is ~1e-5 for these
//! smooth layers; |fd - analytic| <= 2e-3 + 1e-2 |analytic| leaves a wide margin for that
//! while a wrong formula (a missing term, a wrong index) is off by O(|analytic|).
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use zerotrain::device::{Backend, Cpu, CpuBuf, Gemm};
use zerotrain::model::attention::{self, Dims};
use zerotrain::model::linear::Linear;

const EPS: f32 = 1e-2;

fn rnd(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0) * scale).collect()
}

fn buf(be: &Cpu, v: &[f32]) -> CpuBuf {
    let mut b = be.alloc(v.len()).unwrap();
    be.upload(&mut b, v);
    b
}

fn host(be: &Cpu, b: &CpuBuf) -> Vec<f32> {
    be.host(b).unwrap().to_vec()
}

fn dot(a: &[f32], r: &[f32]) -> f64 {
    a.iter().zip(r).map(|(a, r)| *a as f64 * *r as f64).sum()
}

/// Compares `grads[j]` with central differences of `loss` w.r.t. every element of `xs[j]`.
fn fd_check(
    name: &str,
    xs: &mut [Vec<f32>],
    grads: &[Vec<f32>],
    loss: impl Fn(&[Vec<f32>]) -> f64,
) {
    let mut worst = 0.0f64;
    for j in 0..xs.len() {
        assert_eq!(xs[j].len(), grads[j].len(), "{name}: input {j} length");
        for k in 0..xs[j].len() {
            let x0 = xs[j][k];
            xs[j][k] = x0 + EPS;
            let lp = loss(xs);
            xs[j][k] = x0 - EPS;
            let lm = loss(xs);
            xs[j][k] = x0;
            let fd = (lp - lm) / (2.0 * EPS as f64);
            let an = grads[j][k] as f64;
            let err = (fd - an).abs();
            assert!(
                err <= 2e-3 + 1e-2 * an.abs(),
                "{name}: input {j} element {k}: finite difference {fd} vs analytic {an}"
            );
            worst = worst.max(err);
        }
    }
    eprintln!("{name}: worst abs error {worst:.2e}");
}

#[test]
fn linear_with_bias_and_residual() {
    let be = Cpu::new(1);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (n, din, dout) = (5, 4, 3);
    let lin = Linear {
        w: 2,
        b: 2 + din * dout,
        din,
        dout,
    }; // params at an offset
    let p = rnd(&mut rng, 2 + din * dout + dout + 1, 1.0);
    let x = rnd(&mut rng, n * din, 1.0);
    let res = rnd(&mut rng, n * dout, 1.0);
    let r = rnd(&mut rng, n * dout, 1.0);
    let fwd = |xs: &[Vec<f32>]| {
        let mut out = be.alloc(n * dout).unwrap();
        lin.forward(
            &be,
            &mut out,
            &buf(&be, &xs[0]),
            &buf(&be, &xs[1]),
            n,
            Some(&buf(&be, &xs[2])),
        );
        dot(&host(&be, &out), &r)
    };
    let mut g = be.alloc(p.len()).unwrap();
    let mut dx = buf(&be, &vec![0.5; n * din]); // accumulate onto 0.5
    lin.backward(
        &be,
        Some((&mut dx, true)),
        &mut g,
        &buf(&be, &r),
        &buf(&be, &x),
        &buf(&be, &p),
        n,
    );
    let dx: Vec<f32> = host(&be, &dx).iter().map(|v| v - 0.5).collect();
    let mut gp = host(&be, &g);
    // elements outside the layer's views must stay untouched
    assert_eq!((gp[0], gp[1], gp[p.len() - 1]), (0.0, 0.0, 0.0));
    gp[0] = 0.0;
    fd_check("linear", &mut [x, p, res], &[dx, gp, r.clone()], fwd);
}

#[test]
fn layernorm() {
    let be = Cpu::new(1);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (rows, c) = (3, 6);
    let x = rnd(&mut rng, rows * c, 2.0);
    let p = rnd(&mut rng, 2 * c, 1.0); // weight then bias
    let r = rnd(&mut rng, rows * c, 1.0);
    let run = |x: &[f32], p: &[f32]| {
        let (mut out, mut st) = (be.alloc(rows * c).unwrap(), be.alloc(2 * rows).unwrap());
        be.layernorm_fwd(&mut out, &mut st, &buf(&be, x), &buf(&be, p), 0, c, rows, c);
        (out, st)
    };
    let (_, st) = run(&x, &p);
    let mut dx = be.alloc(rows * c).unwrap();
    let mut g = be.alloc(2 * c).unwrap();
    let (xb, pb) = (buf(&be, &x), buf(&be, &p));
    be.layernorm_bwd(&mut dx, &mut g, 0, c, &buf(&be, &r), &xb, &pb, &st, rows, c);
    let grads = [host(&be, &dx), host(&be, &g)];
    fd_check("layernorm", &mut [x, p], &grads, |xs| {
        dot(&host(&be, &run(&xs[0], &xs[1]).0), &r)
    });
}

#[test]
fn gelu_and_relu() {
    let be = Cpu::new(1);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let n = 40;
    // keep ReLU inputs away from its kink at 0, where the difference quotient is wrong
    let x: Vec<f32> = rnd(&mut rng, n, 3.0)
        .into_iter()
        .map(|v| if v.abs() < 0.05 { v + 0.1 } else { v })
        .collect();
    let r = rnd(&mut rng, n, 1.0);
    let gelu = |x: &[f32]| {
        let mut o = be.alloc(n).unwrap();
        be.gelu_fwd(&mut o, &buf(&be, x), n);
        host(&be, &o)
    };
    let mut d = buf(&be, &r);
    be.gelu_bwd(&mut d, &buf(&be, &x), n);
    fd_check("gelu", &mut [x.clone()], &[host(&be, &d)], |xs| {
        dot(&gelu(&xs[0]), &r)
    });
    // gelu(x) matches the tanh formula at a few points
    let g = gelu(&x);
    for (gx, xv) in g.iter().zip(&x) {
        let want = 0.5 * xv * (1.0 + (0.797_884_6 * (xv + 0.044715 * xv.powi(3))).tanh());
        assert!(
            (gx - want).abs() <= 1e-5 * (1.0 + want.abs()),
            "gelu({xv}) = {gx}, want {want}"
        );
    }
    let relu = |x: &[f32]| {
        let mut o = buf(&be, x);
        be.relu_fwd(&mut o, n);
        host(&be, &o)
    };
    let y = buf(&be, &relu(&x));
    let mut d = buf(&be, &r);
    be.relu_bwd(&mut d, &y, n);
    fd_check("relu", &mut [x], &[host(&be, &d)], |xs| {
        dot(&relu(&xs[0]), &r)
    });
}

#[test]
fn embedding() {
    let be = Cpu::new(1);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (b, t, c, vocab, ctx) = (2, 3, 4, 5, 4);
    let ids_v: Vec<u32> = vec![1, 4, 1, 0, 3, 1]; // repeats: gradients must add up
    let mut ids = be.alloc_ids(b * t).unwrap();
    be.upload_ids(&mut ids, &ids_v);
    let p = rnd(&mut rng, (vocab + ctx) * c, 1.0);
    let r = rnd(&mut rng, b * t * c, 1.0);
    let wpe = vocab * c;
    let fwd = |p: &[f32]| {
        let mut o = be.alloc(b * t * c).unwrap();
        be.embedding_fwd(&mut o, &ids, &buf(&be, p), 0, wpe, b, t, c);
        host(&be, &o)
    };
    let mut g = be.alloc(p.len()).unwrap();
    be.embedding_bwd(&mut g, 0, wpe, &buf(&be, &r), &ids, b, t, c);
    fd_check("embedding", &mut [p], &[host(&be, &g)], |xs| {
        dot(&fwd(&xs[0]), &r)
    });
}

#[test]
fn causal_attention() {
    let be = Cpu::new(1);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let d = Dims {
        b: 2,
        t: 4,
        c: 6,
        h: 2,
    };
    let n = d.b * d.t;
    let qkv = rnd(&mut rng, n * 3 * d.c, 1.5);
    let r = rnd(&mut rng, n * d.c, 1.0);
    let fwd = |q: &[f32]| {
        let (mut y, mut att) = (
            be.alloc(n * d.c).unwrap(),
            be.alloc(d.b * d.h * d.t * d.t).unwrap(),
        );
        let qb = buf(&be, q);
        let mut heads = attention::Heads::new(&be, n, d.c).unwrap();
        attention::forward(&be, &mut y, &mut att, &qb, &mut heads, d);
        (host(&be, &y), att)
    };
    let (y, att) = fwd(&qkv);
    // causality: the first position attends only to itself, so y there equals its v
    for s in 0..d.b {
        for j in 0..d.c {
            let v = qkv[s * d.t * 3 * d.c + 2 * d.c + j];
            assert!((y[s * d.t * d.c + j] - v).abs() < 1e-6);
        }
    }
    let mut dq = be.alloc(n * 3 * d.c).unwrap();
    let mut datt = be.alloc(d.b * d.h * d.t * d.t).unwrap();
    let mut heads = attention::Heads::new(&be, n, d.c).unwrap();
    attention::backward(
        &be,
        &mut dq,
        &mut datt,
        &buf(&be, &r),
        &att,
        &buf(&be, &qkv),
        &mut heads,
        d,
    );
    fd_check("attention", &mut [qkv], &[host(&be, &dq)], |xs| {
        dot(&fwd(&xs[0]).0, &r)
    });
}

#[test]
fn softmax_cross_entropy() {
    let be = Cpu::new(1);
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let (rows, v) = (4, 5);
    let tg: Vec<u32> = vec![0, 4, 2, 2];
    let mut targets = be.alloc_ids(rows).unwrap();
    be.upload_ids(&mut targets, &tg);
    let logits = rnd(&mut rng, rows * v, 3.0);
    let fwd = |l: &[f32]| {
        let mut losses = be.alloc(rows).unwrap();
        be.crossentropy_fwd(&mut losses, &buf(&be, l), &targets, rows, v);
        host(&be, &losses)
    };
    // the forward is -log softmax at the target
    let ls = fwd(&logits);
    for i in 0..rows {
        let row = &logits[i * v..(i + 1) * v];
        let lse = row.iter().map(|x| (*x as f64).exp()).sum::<f64>().ln();
        assert!((ls[i] as f64 - (lse - row[tg[i] as usize] as f64)).abs() < 1e-5);
    }
    // the backward takes one scale for all rows (the models pass grad_scale / rows):
    // check L = 0.7 * sum_i loss_i against scale = 0.7.
    let mut d = buf(&be, &logits);
    be.crossentropy_bwd(&mut d, &targets, rows, v, 0.7);
    let ones = vec![0.7f32; rows];
    fd_check("cross-entropy", &mut [logits], &[host(&be, &d)], |xs| {
        dot(&fwd(&xs[0]), &ones)
    });
}

#[test]
fn gemm_transposes_and_batches_match_naive() {
    let be = Cpu::new(1);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (m, n, k, batch) = (5, 7, 3, 3);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        // padded row strides and offsets, as views into larger buffers
        let (lda, ldb, ldc) = (
            if ta { m } else { k } + 2,
            if tb { k } else { n } + 1,
            n + 3,
        );
        let (ra, rb) = (if ta { k } else { m }, if tb { n } else { k });
        let (sa, sb, sc) = (ra * lda + 1, rb * ldb + 2, m * ldc + 1);
        let a = rnd(&mut rng, 4 + batch * sa, 1.0);
        let b = rnd(&mut rng, 3 + batch * sb, 1.0);
        let c0 = rnd(&mut rng, 2 + batch * sc, 1.0);
        let g = Gemm::new(m, n, k, ta, tb)
            .offsets(4, 3, 2)
            .lds(lda, ldb, ldc)
            .batched(batch, sa, sb, sc)
            .scaled(0.5, 2.0);
        let mut c = buf(&be, &c0);
        be.gemm(&g, &buf(&be, &a), &buf(&be, &b), &mut c);
        let c = host(&be, &c);
        let mut want = c0.clone();
        for bi in 0..batch {
            for i in 0..m {
                for j in 0..n {
                    let mut s = 0.0f64;
                    for p in 0..k {
                        let av = if ta {
                            a[4 + bi * sa + p * lda + i]
                        } else {
                            a[4 + bi * sa + i * lda + p]
                        };
                        let bv = if tb {
                            b[3 + bi * sb + j * ldb + p]
                        } else {
                            b[3 + bi * sb + p * ldb + j]
                        };
                        s += av as f64 * bv as f64;
                    }
                    let ci = 2 + bi * sc + i * ldc + j;
                    want[ci] = (0.5 * s + 2.0 * c0[ci] as f64) as f32;
                }
            }
        }
        for (i, (x, y)) in c.iter().zip(&want).enumerate() {
            assert!(
                (x - y).abs() < 1e-5,
                "ta={ta} tb={tb}: C[{i}] = {x}, want {y}"
            );
        }
    }
}
