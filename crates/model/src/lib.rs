//! burn modules of the workspace and the one place where the tensor backend is chosen.
//!
//! - [`backend`]: `BackendKind` -> burn `Device` (flex and ndarray on CPU; wgpu and cuda behind
//!   cargo features).
//! - [`toy_mlp`]: the neural-network toy's reward model as burn tensor ops, the reference the
//!   hand-written `f64` version in `fpo::toy::mlp` is checked against.
//! - [`encoder`]: the BERT sentence encoder of the reward model (all-MiniLM-L6-v2).
//! - [`gguf`]: the GGUF reader (metadata, tensors, dequantisation).
//! - [`llm`]: the Llama-family LLM: weights, tokenizer, decoder, LoRA, generation.

pub mod backend;
pub mod encoder;
pub mod gguf;
pub mod llm;
pub mod toy_mlp;

pub use backend::{BackendKind, device};
