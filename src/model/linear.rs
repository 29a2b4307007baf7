//! The linear layer `y = x W + b` (W stored (in, out) row-major, as GPT-2's Conv1D), on
//! any backend. Weights and bias are views into a unit's flat buffer.
use crate::device::{Backend, Gemm};

/// Where a linear layer's parameters sit in its unit and its sizes.
#[derive(Debug, Clone, Copy)]
pub struct Linear {
    pub w: usize,
    pub b: usize,
    pub din: usize,
    pub dout: usize,
}

impl Linear {
    /// out: (n, dout) = x (n, din) · W + b (+ resid (n, dout) when given).
    pub fn forward<B: Backend>(
        &self,
        be: &B,
        out: &mut B::Buf,
        x: &B::Buf,
        params: &B::Buf,
        n: usize,
        resid: Option<&B::Buf>,
    ) {
        // bias (+ resid) first, then the product accumulates onto it (beta = 1): one
        // pass over out instead of BLAS zeroing it and a second pass adding the bias.
        be.bias_residual_set(out, n, self.dout, (params, self.b), resid);
        let g = Gemm::new(n, self.dout, self.din, false, false)
            .offsets(0, self.w, 0)
            .scaled(1.0, 1.0);
        be.gemm(&g, x, params, out);
    }

    /// Given dy (n, dout): grads += dW = xᵀ dy and db = colsum(dy); when `dx` is given,
    /// dx (n, din) = dy Wᵀ (overwritten, or added to when `accumulate`).
    #[allow(clippy::too_many_arguments)]
    pub fn backward<B: Backend>(
        &self,
        be: &B,
        dx: Option<(&mut B::Buf, bool)>,
        grads: &mut B::Buf,
        dy: &B::Buf,
        x: &B::Buf,
        params: &B::Buf,
        n: usize,
    ) {
        if let Some((dx, accumulate)) = dx {
            let beta = if accumulate { 1.0 } else { 0.0 };
            let g = Gemm::new(n, self.din, self.dout, false, true)
                .offsets(0, self.w, 0)
                .scaled(1.0, beta);
            be.gemm(&g, dy, params, dx);
        }
        let g = Gemm::new(self.din, self.dout, n, true, false)
            .offsets(0, 0, self.w)
            .scaled(1.0, 1.0);
        be.gemm(&g, x, dy, grads);
        be.bias_bwd(grads, self.b, dy, n, self.dout);
    }
}
