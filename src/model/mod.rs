//! PROVISIONAL (replaced by the model part): the unit description the engine reads.
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub decay: bool,
}
pub struct UnitSpec {
    pub name: String,
    pub tensors: Vec<TensorSpec>,
    pub numel: usize,
}
