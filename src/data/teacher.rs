//! A fixed random teacher network that labels points: `y = argmax(W2 tanh(W1 x + b1))`,
//! or `y = argmax(W x)` with no hidden layer. Seeded, so the same seed gives the same task.
use super::rng::{rng_for, TEACHER};
use rand::Rng;
use rand_distr::StandardNormal;

pub struct Teacher {
    d: usize,
    hidden: usize,
    classes: usize,
    /// w1: (hidden, d) row-major, scaled by 1/sqrt(d); b1: (hidden)
    w1: Vec<f32>,
    b1: Vec<f32>,
    /// w2: (classes, hidden or d) row-major
    w2: Vec<f32>,
}

fn normal(r: &mut impl Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| r.sample::<f32, _>(StandardNormal) * scale)
        .collect()
}

impl Teacher {
    /// `hidden = 0` gives a linear teacher.
    pub fn new(seed: u64, d: usize, hidden: usize, classes: usize) -> Teacher {
        let mut r = rng_for(&[seed, TEACHER]);
        let inner = if hidden == 0 { d } else { hidden };
        let w1 = normal(&mut r, hidden * d, 1.0 / (d as f32).sqrt());
        let b1 = normal(&mut r, hidden, 0.5);
        let w2 = normal(&mut r, classes * inner, 1.0 / (inner.max(1) as f32).sqrt());
        Teacher {
            d,
            hidden,
            classes,
            w1,
            b1,
            w2,
        }
    }

    /// Class of point `x` (length d).
    pub fn label(&self, x: &[f32]) -> u32 {
        let h: Vec<f32> = if self.hidden == 0 {
            x.to_vec()
        } else {
            (0..self.hidden)
                .map(|j| {
                    let row = &self.w1[j * self.d..(j + 1) * self.d];
                    let z: f32 = row.iter().zip(x).map(|(w, v)| w * v).sum();
                    (z + self.b1[j]).tanh()
                })
                .collect()
        };
        let n = h.len();
        let mut best = (0u32, f32::NEG_INFINITY);
        for c in 0..self.classes {
            let z: f32 = self.w2[c * n..(c + 1) * n]
                .iter()
                .zip(&h)
                .map(|(w, v)| w * v)
                .sum();
            if z > best.1 {
                best = (c as u32, z);
            }
        }
        best.0
    }

    /// Fills `x` (length d) with N(0, 1) draws from `r` and returns its label.
    pub fn sample(&self, r: &mut impl Rng, x: &mut [f32]) -> u32 {
        for v in x.iter_mut() {
            *v = r.sample(StandardNormal);
        }
        self.label(x)
    }
}
