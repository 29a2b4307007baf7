//! The `zero` part (see docs/architecture.md): flat buffers, partition layout, placements,
//! buckets, the schedule, and memory and communication accounting. It drives any
//! `model::Model` on any backend.
//!
//! The engine (`engine.rs`) drives three parts that own their state: the parameters
//! (`params.rs`), the gradients (`grads.rs`) and the sharded optimizer (`optimizer.rs`),
//! which share the backend, layout, plan and groups through `core.rs`.
mod comm;
mod core;
mod engine;
mod grads;
mod layout;
mod optimizer;
mod params;
mod plan;
mod state_io;

pub use comm::{ring_bytes, CommStats};
pub use engine::{Engine, EvalOutcome, Groups, StepOutcome};
pub use layout::{Layout, UnitLayout, ALIGN};
pub use plan::{
    buckets, optimizer_states, GradReduction, MemPlan, Placement, Placements, StagePlan, Topology,
};
pub use state_io::UnitPiece;
