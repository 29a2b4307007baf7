//! The `metrics` part (see docs/architecture.md): memory and communication counters, the
//! JSONL metrics writer, console progress, the start-up summary table and the `report`
//! plots.
mod comm;
mod font;
mod mem;
mod plot;
mod progress;
mod record;
pub mod report;
mod table;
mod timer;
mod writer;

pub use comm::{CommCounter, CommKind, NodeBytes};
pub use mem::{peak_rss, MemCounter, Transient};
pub use progress::Progress;
pub use record::StepRecord;
pub use report::write_report;
pub use table::summary_table;
pub use timer::PhaseTimes;
pub use writer::{read_records, MetricsError, MetricsWriter};
