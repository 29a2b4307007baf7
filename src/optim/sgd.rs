//! SGD with momentum, with PyTorch's semantics (`torch.optim.SGD`, dampening 0,
//! no Nesterov): `g' = g + wd·p` (coupled weight decay), `buf = μ·buf + g'`, `p -= lr·buf`.
//! With μ = 0 there is no buffer and `p -= lr·g'`.
use super::{window, Optimizer, StepHyper};

/// SGD's update rule: its hyper-parameters, no state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdRule {
    pub momentum: f32,
    pub weight_decay: f32,
}

impl SgdRule {
    /// Whether a slice with (`decay`) or without weight decay has the decay term.
    pub fn decays(&self, decay: bool) -> bool {
        decay && self.weight_decay != 0.0
    }
    /// One step over a slice; `buf` is the momentum buffer (`None` when momentum is 0).
    pub fn apply(
        &self,
        p: &mut [f32],
        g: &[f32],
        buf: Option<&mut [f32]>,
        decay: bool,
        hp: &StepHyper,
    ) {
        let (lr, mu, wd) = (hp.lr, self.momentum, self.weight_decay);
        if self.decays(decay) {
            step::<true>(p, g, buf, lr, mu, wd);
        } else {
            step::<false>(p, g, buf, lr, mu, wd);
        }
    }
}

/// SGD with optional momentum and coupled (L2) weight decay.
pub struct Sgd {
    rule: SgdRule,
    /// Momentum buffer, shard-long; empty when `momentum == 0`.
    buf: Vec<f32>,
    shard_len: usize,
}

impl Sgd {
    /// An SGD optimizer for a shard of `shard_len` elements.
    pub fn new(shard_len: usize, momentum: f32, weight_decay: f32) -> Self {
        let buf = if momentum != 0.0 {
            vec![0.0; shard_len]
        } else {
            Vec::new()
        };
        Sgd {
            rule: SgdRule {
                momentum,
                weight_decay,
            },
            buf,
            shard_len,
        }
    }
}

/// One SGD step over a slice; `DECAY` selects the weight-decay term at compile time so
/// the loop has no branch. A zero-initialised buffer makes the first step `buf = g'`,
/// exactly as PyTorch's `buf = clone(g')`.
#[inline]
fn step<const DECAY: bool>(
    p: &mut [f32],
    g: &[f32],
    buf: Option<&mut [f32]>,
    lr: f32,
    mu: f32,
    wd: f32,
) {
    match buf {
        Some(buf) => {
            for ((p, &g), b) in p.iter_mut().zip(g).zip(buf.iter_mut()) {
                let g = if DECAY { g + wd * *p } else { g };
                *b = mu * *b + g;
                *p -= lr * *b;
            }
        }
        None => {
            for (p, &g) in p.iter_mut().zip(g) {
                let g = if DECAY { g + wd * *p } else { g };
                *p -= lr * g;
            }
        }
    }
}

impl Optimizer for Sgd {
    fn update(
        &mut self,
        offset: usize,
        params: &mut [f32],
        grads: &[f32],
        decay: bool,
        hp: &StepHyper,
    ) {
        super::check_slice("sgd", offset, params, grads, self.shard_len);
        let n = params.len();
        let buf = if self.buf.is_empty() {
            None
        } else {
            Some(window(&mut self.buf, offset, n))
        };
        self.rule.apply(params, grads, buf, decay, hp);
    }

    fn state_names(&self) -> &'static [&'static str] {
        if self.buf.is_empty() {
            &[]
        } else {
            &["momentum"]
        }
    }

    fn state(&self) -> Vec<&[f32]> {
        if self.buf.is_empty() {
            Vec::new()
        } else {
            vec![&self.buf[..]]
        }
    }

    fn state_mut(&mut self) -> Vec<&mut [f32]> {
        if self.buf.is_empty() {
            Vec::new()
        } else {
            vec![&mut self.buf[..]]
        }
    }

    fn state_bytes(&self) -> usize {
        self.buf.len() * std::mem::size_of::<f32>()
    }
}
