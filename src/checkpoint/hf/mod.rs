//! Hugging Face GPT-2 interop (docs/architecture.md, "Hugging Face interop";
//! docs/checkpoint-format.md, "Hugging Face export"): `zerotrain export --format hf`
//! writes a checkpoint as `GPT2LMHeadModel` safetensors (`export.rs`), and
//! `model.init = "hf:DIR"` starts training from such a directory (`import.rs`). Both
//! share the tensor names and `config.json` (`names.rs`) and the element conversions
//! (`dtype.rs`); `tokenizer.rs` copies a GPT-2 dataset's tokenizer files.
mod dtype;
mod export;
mod import;
mod names;
mod tokenizer;

pub use export::{export_hf, ExportOptions, Exported};
pub use import::{init_dir, HfInit};
pub use names::{ConfigJson, CONFIG_FILE, INDEX_FILE, SINGLE_FILE};
