//! The `data` part: HDF5 shard format, manifest, distributed sampler, prefetching
//! loader, synthetic data, tokenizers (GPT-2 BPE, `Vocab`), and the
//! `data prepare / import / synth / inspect` tools.
//! The on-disk format is described in docs/data-format.md.
pub mod batch;
pub mod bench;
pub mod error;
mod feed;
pub mod gpt2_bpe;
pub mod h5file;
pub mod hdf5_source;
pub mod import;
pub mod inspect;
pub mod manifest;
pub mod prefetch;
pub mod prepare;
mod rng;
pub mod sampler;
pub mod shard;
pub mod source;
pub mod synth;
pub mod synthetic;
pub mod teacher;
pub mod vocab;
pub mod writer;

pub use batch::Batch;
pub use error::DataError;
pub use feed::Feed;
pub use hdf5_source::open_sampler;
pub use manifest::{IntType, Kind, Manifest, ShardEntry, Split};
pub use sampler::{LoaderState, SampleRef, Sampler};
pub use source::{open_source, BatchSource, LoaderSpec};
pub use synth::{addition_answer_as_read, addition_val_problems};
pub use vocab::Vocab;
