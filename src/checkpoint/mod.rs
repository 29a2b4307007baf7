//! The `checkpoint` part (see docs/architecture.md and docs/checkpoint-format.md): per-rank shard
//! files, atomic commit, exact resume, load-time resharding to any world size and
//! stage, and the single-process tools (inspect, verify, consolidate).
//!
//! Layout: `<dir>/step-00000020/{meta.json, rank-00000.h5, ...}` and `<dir>/latest`.
mod error;
mod fsio;
pub mod hf;
mod json_path;
mod load;
mod lock;
mod meta;
mod meta_check;
mod paths;
mod plan;
mod rank_file;
mod reader;
mod save;
mod saver;
mod share;
mod tools;

pub use error::CkptError;
pub use load::{resume, Resumed};
pub use lock::{lock_dir, DirLock, LOCK_FILE};
pub use meta::{config_digest, FileEntry, Meta, TensorEntry, UnitEntry, FORMAT, META_FILE};
pub use paths::{list_steps, rank_file_name, resolve, step_dir_name, LATEST};
pub use plan::resumes;
pub use reader::Checkpoint;
pub use save::{save, should_save};
pub use saver::{Due, Saver, WriteFailed};
pub use tools::{consolidate, inspect, load_full_params, verify, Consolidated};
