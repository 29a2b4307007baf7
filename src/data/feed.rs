//! What the samples must look like, as the data part needs to know it: the caller says
//! what its model consumes, so the data part knows nothing of models.
use crate::config::{ModelConfig, ModelKind};

/// The sample shape a model consumes (the key names are for error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Token windows (length: the loader's ctx) with ids below `vocab`.
    Tokens { vocab: usize },
    /// Feature rows of `inputs` values with a class label below `classes`.
    Rows { inputs: usize, classes: usize },
}

impl From<&ModelConfig> for Feed {
    fn from(m: &ModelConfig) -> Feed {
        match m.kind {
            ModelKind::Gpt => Feed::Tokens { vocab: m.vocab },
            ModelKind::Mlp => Feed::Rows {
                inputs: m.inputs,
                classes: m.classes,
            },
        }
    }
}
