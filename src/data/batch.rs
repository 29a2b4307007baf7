//! One micro-batch as the model consumes it.

/// A micro-batch for one rank.
#[derive(Debug, Clone, PartialEq)]
pub enum Batch {
    /// Language modelling: `inputs` and `targets` are (b, t) row-major token ids;
    /// `targets[i]` is the token after `inputs[i]`.
    Tokens {
        b: usize,
        t: usize,
        inputs: Vec<u32>,
        targets: Vec<u32>,
    },
    /// Classification: `x` is (b, d) row-major, `y` is (b) class ids.
    Features {
        b: usize,
        d: usize,
        x: Vec<f32>,
        y: Vec<u32>,
    },
}

impl Batch {
    /// Number of samples (sequences or rows).
    pub fn len(&self) -> usize {
        match self {
            Batch::Tokens { b, .. } | Batch::Features { b, .. } => *b,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of prediction targets (tokens or rows): the denominator of the mean loss.
    pub fn targets(&self) -> usize {
        match self {
            Batch::Tokens { b, t, .. } => b * t,
            Batch::Features { b, .. } => *b,
        }
    }
}
