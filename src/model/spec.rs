//! Unit and tensor descriptions: names, shapes and offsets within a unit's flat buffer.

/// One named tensor: a view into its unit's flat buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Full name, e.g. `h.0.attn.c_attn.weight`.
    pub name: String,
    /// Row-major shape; linear weights are (in, out).
    pub shape: Vec<usize>,
    /// Offset of the first element within the unit.
    pub offset: usize,
    /// Whether weight decay applies (as nanoGPT groups them: matmul weights and the
    /// token embedding yes; biases, LayerNorm and the position embedding no).
    pub decay: bool,
}

impl TensorSpec {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// One unit: an ordered list of tensors packed without gaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSpec {
    pub name: String,
    pub tensors: Vec<TensorSpec>,
    /// Elements in the unit (sum of the tensors).
    pub numel: usize,
}

impl UnitSpec {
    /// An empty unit called `name`.
    pub fn new(name: impl Into<String>) -> UnitSpec {
        UnitSpec {
            name: name.into(),
            tensors: Vec::new(),
            numel: 0,
        }
    }
    /// Appends a tensor and returns its offset.
    pub fn push(&mut self, name: impl Into<String>, shape: &[usize], decay: bool) -> usize {
        let offset = self.numel;
        let t = TensorSpec {
            name: name.into(),
            shape: shape.to_vec(),
            offset,
            decay,
        };
        self.numel += t.numel();
        self.tensors.push(t);
        offset
    }
    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorSpec> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// The checks every model runs before a unit's forward or backward: unit `u` exists, a
/// batch is set, and the parameter (and gradient) buffers hold the whole unit.
pub(crate) fn check_unit_call(
    model: &str,
    units: &[UnitSpec],
    u: usize,
    batch_set: bool,
    params_len: usize,
    grads_len: Option<usize>,
) -> anyhow::Result<()> {
    let spec = units
        .get(u)
        .ok_or_else(|| anyhow::anyhow!("{model}: no unit {u} (have {})", units.len()))?;
    anyhow::ensure!(
        batch_set,
        "{model}: set_batch must come before forward/backward"
    );
    anyhow::ensure!(
        params_len >= spec.numel,
        "{model}: unit {u} ({}) needs {} parameters, buffer has {params_len}",
        spec.name,
        spec.numel
    );
    if let Some(len) = grads_len {
        anyhow::ensure!(
            len >= spec.numel,
            "{model}: gradient buffer of unit {u} too short"
        );
    }
    Ok(())
}
