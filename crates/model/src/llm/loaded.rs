//! A model ready to run: its configuration, tokenizer and decoder, loaded from a `.gguf` file
//! or a Hugging Face folder.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::weights::WeightSource;
use super::{Llama, LlamaConfig, LlmError, TextTokenizer};
use crate::backend::BackendKind;
use crate::gguf::Gguf;

/// A model ready to run: weights on a device, tokenizer, config.
#[derive(Debug)]
pub struct LoadedModel {
    /// The file or folder it came from.
    pub path: PathBuf,
    /// Architecture.
    pub config: LlamaConfig,
    /// Tokenizer and chat template.
    pub tokenizer: TextTokenizer,
    /// The decoder.
    pub model: Llama,
}

impl LoadedModel {
    /// Loads a `.gguf` file or a Hugging Face folder onto the device of `backend` (`autodiff`:
    /// tracked for training). On a CPU backend a quantised GGUF model also keeps its blocks for
    /// fast gradient-free inference.
    pub fn load(path: &Path, backend: BackendKind, autodiff: bool) -> Result<Self, LlmError> {
        let device = crate::backend::device(backend, autodiff)?;
        Self::load_on(path, &device, backend.is_cpu())
    }

    /// Checks a model before any work: its metadata or config (shapes, constants), its
    /// tokenizer (special ids inside the vocabulary) and its tensor directory, every extent
    /// against the file's size. A GGUF file is read whole (its values' finiteness is checked
    /// too); a Hugging Face folder's safetensors by their headers alone.
    pub fn check(path: &Path) -> Result<(), LlmError> {
        if open(path)?.2.is_none() {
            for file in super::weights::safetensors_files(path)? {
                super::weights::check_safetensors_header(&file)?;
            }
        }
        Ok(())
    }

    /// Loads onto an existing device; `cpu_inference` as in [`Llama::from_source`].
    pub fn load_on(path: &Path, device: &Device, cpu_inference: bool) -> Result<Self, LlmError> {
        let (config, tokenizer, gguf) = open(path)?;
        let source = match gguf {
            Some(file) => WeightSource::Gguf(Box::new(file)),
            None => WeightSource::safetensors_dir(path)?,
        };
        let model = Llama::from_source(&config, &source, path, device, cpu_inference)?;
        Ok(Self {
            path: path.to_owned(),
            config,
            tokenizer,
            model,
        })
    }
}

/// A model's shape and tokenizer, read and checked (`LlamaConfig`'s and the tokenizer's checks),
/// and for a GGUF file the parsed file; a Hugging Face folder's weights are not read here. A
/// kernel path `FPO_CPU` forces and the CPU lacks is refused here, before any kernel runs.
fn open(path: &Path) -> Result<(LlamaConfig, TextTokenizer, Option<Gguf>), LlmError> {
    crate::cpu::CpuPath::from_env()?;
    if !path.exists() {
        return Err(LlmError::Missing {
            path: path.to_owned(),
            what: "model file (run `just models` to fetch the defaults)".into(),
        });
    }
    if path.is_dir() {
        let config = LlamaConfig::from_hf_config(&path.join("config.json"))?;
        Ok((config, TextTokenizer::from_hf_dir(path)?, None))
    } else {
        let file = Gguf::open(path)?;
        let config = LlamaConfig::from_gguf(&file)?;
        let tokenizer = TextTokenizer::from_gguf(&file)?;
        Ok((config, tokenizer, Some(file)))
    }
}
