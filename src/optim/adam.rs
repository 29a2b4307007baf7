//! Adam and AdamW with PyTorch's semantics (`torch.optim.Adam` / `AdamW`, amsgrad off):
//!
//! ```text
//! Adam:  g' = g + wd·p                       (L2 decay folded into the gradient)
//! AdamW: p  = p·(1 − lr·wd),  g' = g         (decoupled decay)
//! m = β1·m + (1−β1)·g'       v = β2·v + (1−β2)·g'²
//! p -= lr/(1−β1^t) · m / (√v / √(1−β2^t) + ε)
//! ```
use super::{window, Optimizer, StepHyper};

/// Adam's update rule: its hyper-parameters, no state (`decoupled`: AdamW).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamRule {
    pub betas: [f64; 2],
    pub eps: f32,
    pub weight_decay: f32,
    pub decoupled: bool,
}

/// Adam (`decoupled = false`) or AdamW (`decoupled = true`) with its moments.
pub struct Adam {
    rule: AdamRule,
    /// First moment, shard-long.
    m: Vec<f32>,
    /// Second moment, shard-long.
    v: Vec<f32>,
}

impl Adam {
    /// An Adam/AdamW optimizer for a shard of `shard_len` elements.
    pub fn new(
        shard_len: usize,
        betas: [f64; 2],
        eps: f32,
        weight_decay: f32,
        decoupled: bool,
    ) -> Self {
        Adam {
            rule: AdamRule {
                betas,
                eps,
                weight_decay,
                decoupled,
            },
            m: vec![0.0; shard_len],
            v: vec![0.0; shard_len],
        }
    }
}

/// Which weight-decay form a step applies (decided once per call, so the loop carries no
/// branch on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdamDecay {
    /// No decay (none configured, or `decay` false for this slice).
    None,
    /// Adam: `l2 * p` added to the gradient.
    L2,
    /// AdamW: the parameter multiplied by `shrink` first.
    Decoupled,
}

/// The scalars of one step, computed once per call on the host in f64 and cast to f32
/// (bias corrections included): what every backend's update kernel takes, so that all
/// of them round exactly as [`AdamRule::apply`] does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamCoef {
    pub one_m_b1: f32,
    pub b2: f32,
    pub one_m_b2: f32,
    /// lr / (1 − β1^t)
    pub step_size: f32,
    /// √(1 − β2^t)
    pub bc2_sqrt: f32,
    pub eps: f32,
    /// L2 coefficient added to the gradient (Adam with decay), else 0.
    pub l2: f32,
    /// Factor the parameter is multiplied by first (AdamW with decay), else 1.
    pub shrink: f32,
    pub decay: AdamDecay,
}

/// One Adam step over a slice. `L2` and `SHRINK` pick the decay form at compile time so
/// the loop carries no branch; zipped iterators keep it free of bounds checks.
#[inline]
fn step<const L2: bool, const SHRINK: bool>(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    c: AdamCoef,
) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        if SHRINK {
            *p *= c.shrink;
        }
        let g = if L2 { g + c.l2 * *p } else { g };
        *m += c.one_m_b1 * (g - *m); // = β1·m + (1−β1)·g, as torch's lerp_
        *v = c.b2 * *v + c.one_m_b2 * g * g;
        let denom = v.sqrt() / c.bc2_sqrt + c.eps;
        *p -= c.step_size * (*m / denom);
    }
}

impl AdamRule {
    /// The scalars of the step `hp` for a slice with (`decay`) or without weight decay.
    pub fn coef(&self, decay: bool, hp: &StepHyper) -> AdamCoef {
        let t = hp.step.max(1) as i32;
        let [b1, b2] = self.betas;
        let lr = hp.lr as f64;
        let wd = if decay { self.weight_decay } else { 0.0 };
        AdamCoef {
            one_m_b1: (1.0 - b1) as f32,
            b2: b2 as f32,
            one_m_b2: (1.0 - b2) as f32,
            step_size: (lr / (1.0 - b1.powi(t))) as f32,
            bc2_sqrt: (1.0 - b2.powi(t)).sqrt() as f32,
            eps: self.eps,
            l2: if self.decoupled { 0.0 } else { wd },
            shrink: if self.decoupled {
                (1.0 - lr * wd as f64) as f32
            } else {
                1.0
            },
            decay: match (wd != 0.0, self.decoupled) {
                (false, _) => AdamDecay::None,
                (true, false) => AdamDecay::L2,
                (true, true) => AdamDecay::Decoupled,
            },
        }
    }

    /// One step over a slice: `p`, `g`, `m`, `v` of equal length. No allocation.
    pub fn apply(
        &self,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        decay: bool,
        hp: &StepHyper,
    ) {
        let c = self.coef(decay, hp);
        match c.decay {
            AdamDecay::None => step::<false, false>(p, g, m, v, c),
            AdamDecay::L2 => step::<true, false>(p, g, m, v, c),
            AdamDecay::Decoupled => step::<false, true>(p, g, m, v, c),
        }
    }
}

impl Optimizer for Adam {
    fn update(
        &mut self,
        offset: usize,
        params: &mut [f32],
        grads: &[f32],
        decay: bool,
        hp: &StepHyper,
    ) {
        super::check_slice("adam", offset, params, grads, self.m.len());
        let n = params.len();
        let m = window(&mut self.m, offset, n);
        let v = window(&mut self.v, offset, n);
        self.rule.apply(params, grads, m, v, decay, hp);
    }

    fn state_names(&self) -> &'static [&'static str] {
        &["exp_avg", "exp_avg_sq"]
    }

    fn state(&self) -> Vec<&[f32]> {
        vec![&self.m[..], &self.v[..]]
    }

    fn state_mut(&mut self) -> Vec<&mut [f32]> {
        vec![&mut self.m[..], &mut self.v[..]]
    }

    fn state_bytes(&self) -> usize {
        (self.m.len() + self.v.len()) * std::mem::size_of::<f32>()
    }
}
