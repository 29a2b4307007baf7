//! `data.source = "synthetic"`: seeded random data, no files. Sample i of global
//! micro-batch g is global sample g·(micro_batch·world) + i and comes from a generator
//! seeded by (seed, split, global sample), so the stream is the same for any world size
//! and any split of a step into accumulated micro-batches, and
//! follows the same global-sequence / rank-slice rule as the HDF5 loader. Tokens are
//! uniform in `[0, model.vocab)`; classification rows are x ~ N(0, 1) labelled by a fixed
//! random linear teacher (seeded by `seed` alone, so train and val share the task). The
//! stream is endless; `sampling` is recorded in the state but both modes draw alike.
use super::rng::{rng_for, SYNTH};
use super::sampler::LoaderState;
use super::source::{start_state, LoaderSpec, Producer};
use super::teacher::Teacher;
use super::Feed;
use super::{Batch, Split};
use anyhow::{bail, Result};
use rand::Rng;

pub struct SyntheticProducer {
    seed: u64,
    split: u64,
    first: usize,
    /// Samples in one global micro-batch (micro_batch · world).
    global_batch: u64,
    micro_batch: usize,
    /// ctx (tokens) or features (classify)
    width: usize,
    vocab: u32,
    teacher: Option<Teacher>,
    state: LoaderState,
}

impl SyntheticProducer {
    pub fn new(feed: Feed, spec: &LoaderSpec, resume: Option<LoaderState>) -> Result<Self> {
        let state = start_state(spec, resume)?;
        let (width, teacher, vocab) = match feed {
            Feed::Tokens { vocab } => {
                if spec.ctx == 0 || vocab == 0 {
                    bail!("synthetic data: ctx and model.vocab must be at least 1");
                }
                (spec.ctx, None, vocab)
            }
            Feed::Rows { inputs, classes } => {
                if inputs == 0 || classes < 2 {
                    bail!("synthetic data: model.inputs >= 1 and model.classes >= 2 needed");
                }
                (inputs, Some(Teacher::new(spec.seed, inputs, 0, classes)), 0)
            }
        };
        Ok(SyntheticProducer {
            seed: spec.seed,
            split: match spec.split {
                Split::Train => 1,
                Split::Val => 2,
            },
            first: spec.rank * spec.micro_batch,
            global_batch: (spec.micro_batch * spec.world) as u64,
            micro_batch: spec.micro_batch,
            width,
            vocab: vocab.min(u32::MAX as usize) as u32,
            teacher,
            state,
        })
    }
}

impl Producer for SyntheticProducer {
    fn produce(&mut self) -> Result<Batch> {
        let g = self.state.batches;
        let (b, w) = (self.micro_batch, self.width);
        let sample0 = g * self.global_batch + self.first as u64;
        let rng = |j: usize| rng_for(&[self.seed, SYNTH, self.split, sample0 + j as u64]);
        let batch = match &self.teacher {
            Some(t) => {
                // x: (b, w) row-major
                let mut x = vec![0f32; b * w];
                let y = (0..b)
                    .map(|j| t.sample(&mut rng(j), &mut x[j * w..(j + 1) * w]))
                    .collect();
                Batch::Features { b, d: w, x, y }
            }
            None => {
                // inputs, targets: (b, w) row-major, from windows of w + 1 tokens
                let mut inputs = Vec::with_capacity(b * w);
                let mut targets = Vec::with_capacity(b * w);
                for j in 0..b {
                    let mut r = rng(j);
                    let win: Vec<u32> = (0..=w).map(|_| r.gen_range(0..self.vocab)).collect();
                    inputs.extend_from_slice(&win[..w]);
                    targets.extend_from_slice(&win[1..]);
                }
                Batch::Tokens {
                    b,
                    t: w,
                    inputs,
                    targets,
                }
            }
        };
        self.state.batches += 1;
        Ok(batch)
    }
    fn state(&self) -> LoaderState {
        self.state
    }
}
