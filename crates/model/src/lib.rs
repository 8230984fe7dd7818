//! burn modules of the workspace and the one place where the tensor backend is chosen.
//!
//! - [`backend`]: `BackendKind` -> burn `Device` (flex and ndarray on CPU; wgpu and cuda behind
//!   cargo features).
//! - [`cpu`]: which CPU kernel path the host kernels take (AVX-512, AVX2, portable; `FPO_CPU`).
//! - [`toy_mlp`]: the neural-network toy's reward model as burn tensor ops, a batch of MLPs (one
//!   per seed): what the toys' tensor programs (`fpo::toy::tensor`) train, and the reference the
//!   hand-written `f64` version in `fpo::toy::mlp` is checked against.
//! - [`encoder`]: the BERT sentence encoder of the reward model (all-MiniLM-L6-v2).
//! - [`gguf`]: the GGUF reader (metadata, tensors, dequantisation).
//! - [`llm`]: the Llama-family LLM: weights, tokenizer, decoder, LoRA, generation.

pub mod backend;
pub mod cpu;
pub mod encoder;
pub mod gguf;
pub mod llm;
pub mod toy_mlp;

pub use backend::{BackendKind, UnknownBackend, device};
pub use cpu::{CpuPath, CpuPathError};

/// The burn release this crate is built on (the workspace pins it exactly), for run records.
pub const BURN_VERSION: &str = "0.22.1";

#[cfg(test)]
mod tests {
    #[test]
    fn burn_version_matches_the_workspace_pin() {
        let manifest = include_str!("../../../Cargo.toml");
        let pin = format!("burn = {{ version = \"={}\"", super::BURN_VERSION);
        assert!(manifest.contains(&pin), "Cargo.toml does not pin {pin}");
    }
}
