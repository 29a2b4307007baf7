//! zerotrain: data-parallel training with DDP and ZeRO stages 1-3 over MPI.
//! The parts and how a step flows through them are described in docs/architecture.md.
pub mod checkpoint;
pub mod checksum;
pub mod cli;
pub mod config;
pub mod data;
pub mod device;
pub mod dist;
pub mod dtype;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod zero;
