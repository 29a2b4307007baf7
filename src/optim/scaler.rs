//! The dynamic loss scaler for fp16 training: the loss is multiplied by `scale` before
//! backward; a step whose gradients overflow (inf/NaN on any rank) is skipped and the
//! scale halved; after `window` clean steps in a row the scale doubles.
use crate::config::{DType, PrecisionConfig};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Loss-scaler failures.
#[derive(Debug, Error, PartialEq)]
pub enum ScalerError {
    /// Overflow at the smallest allowed scale: fp16 cannot represent these gradients.
    #[error(
        "fp16 loss scale hit its floor (precision.min_loss_scale = {floor}) and the gradients \
         still overflow; fp16 cannot represent them: use precision.dtype = \"bf16\" \
         (or lower precision.min_loss_scale)"
    )]
    Floor { floor: f64 },
    /// A scaler setting out of range.
    #[error("precision.{key}: {msg}")]
    Invalid { key: &'static str, msg: String },
}

/// Largest scale the doubling stops at, so the scale stays finite in f32.
const MAX_SCALE: f64 = 1.8e19; // ~2^64

/// Dynamic (fp16) or disabled (fp32/bf16, scale 1) loss scaler. Its whole state
/// serialises for checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    enabled: bool,
    scale: f64,
    window: usize,
    min_scale: f64,
    /// Clean steps since the last change of scale.
    good_steps: usize,
}

impl LossScaler {
    /// A scaler that always returns 1 and never changes (fp32, bf16).
    pub fn disabled() -> Self {
        LossScaler {
            enabled: false,
            scale: 1.0,
            window: 0,
            min_scale: 1.0,
            good_steps: 0,
        }
    }

    /// A dynamic scaler starting at `init`, doubling after `window` clean steps, never
    /// below `min_scale`.
    pub fn dynamic(init: f64, window: usize, min_scale: f64) -> Result<Self, ScalerError> {
        let bad = |key, msg: String| Err(ScalerError::Invalid { key, msg });
        if !(min_scale.is_finite() && min_scale > 0.0) {
            return bad(
                "min_loss_scale",
                format!("must be positive and finite, got {min_scale}"),
            );
        }
        if !(init.is_finite() && init >= min_scale && init <= MAX_SCALE) {
            return bad(
                "loss_scale_init",
                format!("must be in [min_loss_scale = {min_scale}, {MAX_SCALE:e}], got {init}"),
            );
        }
        if window == 0 {
            return bad("loss_scale_window", "must be at least 1".into());
        }
        Ok(LossScaler {
            enabled: true,
            scale: init,
            window,
            min_scale,
            good_steps: 0,
        })
    }

    /// Dynamic for `dtype = "fp16"`, disabled otherwise.
    pub fn from_config(p: &PrecisionConfig) -> Result<Self, ScalerError> {
        match p.dtype {
            DType::Fp16 => Self::dynamic(p.loss_scale_init, p.loss_scale_window, p.min_loss_scale),
            DType::Fp32 | DType::Bf16 => Ok(Self::disabled()),
        }
    }

    /// Whether this state is one the scaler can reach (a checkpoint's, read back): on
    /// failure, the field at fault and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !self.enabled {
            if self.scale != 1.0 {
                return Err((
                    "scale",
                    format!("{} for a disabled scaler (always 1)", self.scale),
                ));
            }
            return Ok(());
        }
        if !positive(self.min_scale) {
            return Err((
                "min_scale",
                format!("must be positive and finite, got {}", self.min_scale),
            ));
        }
        if !(self.scale.is_finite() && self.scale >= self.min_scale && self.scale <= MAX_SCALE) {
            return Err((
                "scale",
                format!(
                    "must be in [min_scale = {}, {MAX_SCALE:e}], got {}",
                    self.min_scale, self.scale
                ),
            ));
        }
        if self.window == 0 {
            return Err(("window", "must be at least 1".into()));
        }
        if self.good_steps >= self.window {
            return Err((
                "good_steps",
                format!("{} is not below window = {}", self.good_steps, self.window),
            ));
        }
        Ok(())
    }

    /// The factor the loss is multiplied by (gradients are divided by it afterwards).
    pub fn scale(&self) -> f32 {
        self.scale as f32
    }

    /// Whether the scale is dynamic.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Clean steps since the scale last changed.
    pub fn good_steps(&self) -> usize {
        self.good_steps
    }

    /// Records one step's outcome: `overflow` (the step is skipped) halves the scale,
    /// `window` clean steps in a row double it. Errors when halving would go below the
    /// floor; the scale is then left unchanged.
    pub fn update(&mut self, overflow: bool) -> Result<(), ScalerError> {
        if !self.enabled {
            return Ok(());
        }
        if overflow {
            let halved = self.scale / 2.0;
            if halved < self.min_scale {
                return Err(ScalerError::Floor {
                    floor: self.min_scale,
                });
            }
            self.scale = halved;
            self.good_steps = 0;
        } else {
            self.good_steps += 1;
            if self.good_steps >= self.window {
                self.scale = (self.scale * 2.0).min(MAX_SCALE);
                self.good_steps = 0;
            }
        }
        Ok(())
    }
}
