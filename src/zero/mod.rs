//! The `zero` part: flat buffers, partition layout, buckets, the per-stage schedule, and
//! memory and communication accounting. It drives any `model::Model` on any backend.
mod layout;
mod plan;

pub use layout::{Layout, UnitLayout, ALIGN};
pub use plan::{
    buckets, optimizer_states, GradReduction, MemPlan, Placement, Placements, StagePlan,
};
mod comm;
mod engine;
mod grads;
mod params;
mod state_io;
mod update;

pub use comm::CommStats;
pub use engine::{Engine, StepOutcome};
pub use state_io::UnitPiece;
