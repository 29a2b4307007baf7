//! The optimizer's kernels on the device (kernels/optim.cu): the sum of squares of a
//! gradient slice, and the fused SGD and Adam/AdamW updates with their per-step scalars
//! computed on the host by `optim` itself, so every backend rounds the same.
use super::mem::{Counted, DeviceMemCounter};
use super::{grid1, u, Cuda, CudaBuf, BLOCK};
use crate::device::Backend;
use crate::optim::{AdamDecay, StepHyper, UpdateRule};
use anyhow::Context as _;
use cudarc::driver::{CudaStream, LaunchConfig, PushKernelArg};
use std::sync::Arc;

/// Blocks of `sum_squares`' first pass at most: one f64 partial sum each.
const SUMSQ_BLOCKS: usize = 1024;

/// `sum_squares`' device scratch: (SUMSQ_BLOCKS) partial sums, then (1) the result.
pub(super) fn sum_squares_scratch(
    stream: &Arc<CudaStream>,
    mem: &Arc<DeviceMemCounter>,
) -> anyhow::Result<Counted<f64>> {
    let n = SUMSQ_BLOCKS + 1;
    let s = stream
        .alloc_zeros::<f64>(n)
        .context("allocating on the device")?;
    Ok(Counted::new(s, n, mem))
}

/// `decay` as adam_f32 takes it (`ADAM_NO_DECAY`, `ADAM_L2`, `ADAM_DECOUPLED`).
fn adam_decay_code(decay: AdamDecay) -> i32 {
    match decay {
        AdamDecay::None => 0,
        AdamDecay::L2 => 1,
        AdamDecay::Decoupled => 2,
    }
}

impl Cuda {
    /// Σ x² over `x[off..off + len]` in f64: each of up to [`SUMSQ_BLOCKS`] blocks sums
    /// its grid-stride elements, one block sums the partials, the host reads 8 bytes (and
    /// waits, returning any error recorded so far). The order depends only on `len`, so
    /// the result is deterministic; it differs from the CPU's order by rounding only.
    pub(super) fn sum_squares_dev(
        &self,
        x: &CudaBuf,
        off: usize,
        len: usize,
    ) -> anyhow::Result<f64> {
        let blocks = len.div_ceil(BLOCK as usize).clamp(1, SUMSQ_BLOCKS);
        let cfg = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let one_block = LaunchConfig {
            grid_dim: (1, 1, 1),
            ..cfg
        };
        let mut scratch = self.sumsq.lock().unwrap_or_else(|p| p.into_inner());
        let (mut partial, mut out) = scratch.s.split_at_mut(SUMSQ_BLOCKS);
        let xv = x.s.slice(off..off + len);
        let (n, nb) = (u(len), u(blocks));
        launch!(self, sum_squares_partial, cfg, &mut partial, &xv, &n);
        let partial = partial.as_view();
        launch!(self, sum_f64, one_block, &mut out, &partial, &nb);
        let mut r = [0f64];
        self.transfers.d2h(std::mem::size_of_val(&r));
        let copied = self.stream.memcpy_dtoh(&out, &mut r);
        self.record("sum_squares download", copied);
        self.sync().context("sum of squares on the device")?;
        Ok(r[0])
    }

    /// The fused update of `rule` (see `Backend::optimizer_update`): SGD without or with a
    /// momentum buffer, or Adam/AdamW with `states` = [m, v].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn update_dev(
        &self,
        rule: &UpdateRule,
        hp: &StepHyper,
        decay: bool,
        params: &mut CudaBuf,
        poff: usize,
        grads: &CudaBuf,
        goff: usize,
        states: &mut [CudaBuf],
        soff: usize,
        len: usize,
    ) {
        if len == 0 {
            return;
        }
        let (cfg, n) = (grid1(len), u(len));
        let mut p = params.s.slice_mut(poff..poff + len);
        let g = grads.s.slice(goff..goff + len);
        let s = soff..soff + len;
        match (rule, states) {
            (UpdateRule::Sgd(r), states @ ([] | [_])) => {
                let (lr, mu, wd) = (hp.lr, r.momentum, r.weight_decay);
                let dec = r.decays(decay) as i32;
                match states {
                    [buf] => {
                        let mut b = buf.s.slice_mut(s);
                        let f = 1i32;
                        launch!(self, sgd, cfg, &mut p, &g, &mut b, &n, &lr, &mu, &wd, &dec, &f);
                    }
                    _ => {
                        let f = 0i32; // no buffer: the kernel never reads the dummy
                        let b = &self.dummy;
                        launch!(self, sgd, cfg, &mut p, &g, b, &n, &lr, &mu, &wd, &dec, &f);
                    }
                }
            }
            (UpdateRule::Adam(r), [m, v]) => {
                let c = r.coef(decay, hp);
                let (mut mv, mut vv) = (m.s.slice_mut(s.clone()), v.s.slice_mut(s));
                let form = adam_decay_code(c.decay);
                launch!(
                    self,
                    adam,
                    cfg,
                    &mut p,
                    &g,
                    &mut mv,
                    &mut vv,
                    &n,
                    &c.one_m_b1,
                    &c.b2,
                    &c.one_m_b2,
                    &c.step_size,
                    &c.bc2_sqrt,
                    &c.eps,
                    &c.l2,
                    &c.shrink,
                    &form
                );
            }
            (rule, states) => {
                let e = crate::optim::state_count_error(rule, states.len());
                self.record("optimizer_update", Err::<(), _>(e));
            }
        }
    }
}
