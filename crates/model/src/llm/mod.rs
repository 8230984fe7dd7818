//! A Llama-family instruct LLM (SmolLM2, Llama 3.x, TinyLlama) in burn: weights from GGUF or
//! Hugging Face safetensors, tokenizer and chat template, KV-cached batched generation,
//! per-token log-likelihoods and LoRA adapters.
//!
//! - [`config`]: the architecture hyperparameters, read from GGUF metadata or `config.json`.
//! - [`weights`]: tensors by Hugging Face name from either file format.
//! - [`decoder`]: the transformer ([`Llama`]) and its KV cache.
//! - [`lora`]: trainable low-rank adapters on the attention projections.
//! - [`quant`]: CPU matrix products straight from GGUF's quantised blocks (inference).
//! - [`generate`]: sampling, generation and log-likelihood scoring.
//! - [`best_of`]: many continuations of one prompt (best-of-n): the prompt once per model,
//!   groups of rows with their own adapters decoded together, scoring after the prompt.
//! - [`tokenizer`]: BPE tokenizer and chat template.

use std::path::{Path, PathBuf};

pub mod best_of;
pub mod config;
pub mod decoder;
mod exp;
pub mod generate;
mod loaded;
pub mod lora;
pub mod panels;
pub mod quant;
pub mod tokenizer;
pub mod weights;

pub use best_of::{PromptPass, SampleGroup};
pub use config::LlamaConfig;
pub use decoder::{Input, KvCache, Llama};
pub use generate::LogProbs;
pub use generate::{Generation, Sampling, TokenScores};
pub use loaded::LoadedModel;
pub use lora::{Adapters, LoraConfig};
pub use tokenizer::{Message, TextTokenizer};

use crate::gguf::GgufError;

/// An error loading or running an LLM; every variant names the file (and key or tensor).
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// A GGUF-level error (truncated file, missing key or tensor, unsupported quantisation).
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A file that could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A JSON file that does not parse.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// A required file or key that is absent.
    #[error("{path}: missing {what}")]
    Missing {
        /// The file (or folder).
        path: PathBuf,
        /// What is missing.
        what: String,
    },
    /// An architecture, tensor type or option this crate does not support.
    #[error("{path}: unsupported {what}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What.
        what: String,
    },
    /// A metadata or config value out of range (a head count of 0, a non-finite epsilon).
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, as the file names it.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor with the wrong shape or an unreadable safetensors file.
    #[error("{path}: tensor `{name}`: {message}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The tokenizer could not be built or run.
    #[error("{path}: tokenizer: {message}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A request the model cannot serve (empty prompt, context too long, bad sampling value).
    #[error("{0}")]
    Request(String),
    /// The backend the model was asked to load on is not available.
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    /// `FPO_CPU` forces a kernel path this CPU lacks.
    #[error(transparent)]
    Cpu(#[from] crate::cpu::CpuPathError),
}

/// File name of the default policy inside the models folder (`just models`).
pub const DEFAULT_LLM: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Folder name of the default reward-model encoder inside the models folder.
pub const DEFAULT_ENCODER: &str = "all-MiniLM-L6-v2";

/// The models folder: `FPO_MODELS_DIR`, else `~/.cache/fpo/models` (where `just models` puts them).
pub fn models_dir() -> PathBuf {
    std::env::var_os("FPO_MODELS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/fpo/models")))
        .unwrap_or_else(|| PathBuf::from("models"))
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LlmError + '_ {
    move |source| LlmError::Io {
        path: path.to_owned(),
        source,
    }
}

pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value, LlmError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|source| LlmError::Json {
        path: path.to_owned(),
        source,
    })
}
