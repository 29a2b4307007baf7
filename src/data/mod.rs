//! The `data` part: HDF5 shard format, manifest, sampler, prefetching loader, synthetic data.
pub mod batch;
pub use batch::Batch;
