//! Architecture hyperparameters of a Llama-family model.

use std::path::Path;

use serde::Serialize;

use super::LlmError;
use crate::gguf::Gguf;

/// Llama 3's frequency-dependent RoPE scaling (`rope_scaling.rope_type = "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Llama3RopeScaling {
    /// `factor`.
    pub factor: f64,
    /// `low_freq_factor`.
    pub low_freq_factor: f64,
    /// `high_freq_factor`.
    pub high_freq_factor: f64,
    /// `original_max_position_embeddings`.
    pub original_max_position: f64,
}

/// Where a [`LlamaConfig`] was read from (for the keys its errors name).
#[derive(Debug, Clone, Copy)]
enum Source {
    Gguf,
    HfConfig,
}

/// The shape of a Llama-family decoder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlamaConfig {
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// SwiGLU width.
    pub intermediate_size: usize,
    /// Decoder blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// Longest context the RoPE tables are built for.
    pub max_position: usize,
    /// Whether the output head is the transposed embedding.
    pub tie_embeddings: bool,
    /// Llama 3 RoPE scaling, if any.
    pub rope_scaling: Option<Llama3RopeScaling>,
}

impl LlamaConfig {
    /// Reads `llama.*` metadata of a GGUF file (`general.architecture` must be `llama`).
    pub fn from_gguf(file: &Gguf) -> Result<Self, LlmError> {
        let arch = file.str("general.architecture")?;
        if arch != "llama" {
            return Err(LlmError::Unsupported {
                path: file.path().to_owned(),
                what: format!(
                    "architecture `{arch}` (key general.architecture; Llama-family models are supported)"
                ),
            });
        }
        let u = |k: &str| file.u32(&format!("llama.{k}")).map(|v| v as usize);
        let hidden_size = u("embedding_length")?;
        let num_heads = u("attention.head_count")?;
        let vocab_size = match u("vocab_size") {
            Ok(v) => v,
            Err(_) => file.tensor("token_embd.weight")?.shape()[0],
        };
        Self {
            vocab_size,
            hidden_size,
            intermediate_size: u("feed_forward_length")?,
            num_layers: u("block_count")?,
            num_heads,
            num_kv_heads: u("attention.head_count_kv").unwrap_or(num_heads),
            head_dim: u("attention.key_length")
                .unwrap_or(hidden_size.checked_div(num_heads).unwrap_or(0)),
            rope_theta: file.f64("llama.rope.freq_base").unwrap_or(10_000.0),
            rms_eps: file.f64("llama.attention.layer_norm_rms_epsilon")?,
            max_position: u("context_length").unwrap_or(4096),
            tie_embeddings: file.tensor("output.weight").is_err(),
            // Llama 3 GGUFs carry the scaling as the `rope_freqs.weight` tensor instead.
            rope_scaling: None,
        }
        .checked(file.path(), Source::Gguf)
    }

    /// Reads a Hugging Face `config.json` (`model_type` llama, or a Llama-shaped model).
    pub fn from_hf_config(path: &Path) -> Result<Self, LlmError> {
        let v = super::read_json(path)?;
        let missing = |k: &str| LlmError::Missing {
            path: path.to_owned(),
            what: format!("key `{k}`"),
        };
        let int = |k: &str| -> Result<usize, LlmError> {
            v.get(k)
                .and_then(serde_json::Value::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| missing(k))
        };
        let float = |k: &str, default: f64| v.get(k).and_then(|x| x.as_f64()).unwrap_or(default);
        let model_type = v.get("model_type").and_then(|x| x.as_str()).unwrap_or("");
        if !matches!(model_type, "llama" | "mistral" | "") {
            return Err(LlmError::Unsupported {
                path: path.to_owned(),
                what: format!("model_type `{model_type}` (Llama-family models are supported)"),
            });
        }
        let hidden_size = int("hidden_size")?;
        let num_heads = int("num_attention_heads")?;
        let rope_scaling = match v.get("rope_scaling") {
            Some(serde_json::Value::Object(s)) => {
                let ty = s
                    .get("rope_type")
                    .or_else(|| s.get("type"))
                    .and_then(|x| x.as_str())
                    .unwrap_or("");
                if ty != "llama3" {
                    return Err(LlmError::Unsupported {
                        path: path.to_owned(),
                        what: format!("rope_scaling type `{ty}` (only `llama3` is supported)"),
                    });
                }
                let f = |k: &str| {
                    s.get(k)
                        .and_then(|x| x.as_f64())
                        .ok_or_else(|| missing(&format!("rope_scaling.{k}")))
                };
                Some(Llama3RopeScaling {
                    factor: f("factor")?,
                    low_freq_factor: f("low_freq_factor")?,
                    high_freq_factor: f("high_freq_factor")?,
                    original_max_position: f("original_max_position_embeddings")?,
                })
            }
            _ => None,
        };
        Self {
            vocab_size: int("vocab_size")?,
            hidden_size,
            intermediate_size: int("intermediate_size")?,
            num_layers: int("num_hidden_layers")?,
            num_heads,
            num_kv_heads: int("num_key_value_heads").unwrap_or(num_heads),
            head_dim: int("head_dim").unwrap_or(hidden_size.checked_div(num_heads).unwrap_or(0)),
            rope_theta: float("rope_theta", 10_000.0),
            rms_eps: float("rms_norm_eps", 1e-6),
            max_position: int("max_position_embeddings").unwrap_or(4096),
            tie_embeddings: v
                .get("tie_word_embeddings")
                .and_then(|x| x.as_bool())
                .unwrap_or(false),
            rope_scaling,
        }
        .checked(path, Source::HfConfig)
    }

    /// Refuses shapes no model has (a size of 0, query heads that the key/value heads do not
    /// divide, sizes past any Llama's) and non-finite or non-positive constants, naming the key
    /// as the file spells it; they would divide by zero or allocate without bound later.
    fn checked(self, path: &Path, source: Source) -> Result<Self, LlmError> {
        let key = |gguf: &str, hf: &str| match source {
            Source::Gguf => format!("llama.{gguf}"),
            Source::HfConfig => hf.to_owned(),
        };
        let invalid = |key: String, message: String| LlmError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        for (value, k, max) in [
            (self.vocab_size, key("vocab_size", "vocab_size"), 1 << 22),
            (
                self.hidden_size,
                key("embedding_length", "hidden_size"),
                1 << 16,
            ),
            (
                self.intermediate_size,
                key("feed_forward_length", "intermediate_size"),
                1 << 18,
            ),
            (
                self.num_layers,
                key("block_count", "num_hidden_layers"),
                1 << 10,
            ),
            (
                self.num_heads,
                key("attention.head_count", "num_attention_heads"),
                1 << 10,
            ),
            (
                self.num_kv_heads,
                key("attention.head_count_kv", "num_key_value_heads"),
                1 << 10,
            ),
            (
                self.head_dim,
                key("attention.key_length", "head_dim"),
                1 << 12,
            ),
            (
                self.max_position,
                key("context_length", "max_position_embeddings"),
                1 << 21,
            ),
        ] {
            if !(1..=max).contains(&value) {
                return Err(invalid(
                    k,
                    format!("must be between 1 and {max}, got {value}"),
                ));
            }
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(LlmError::Unsupported {
                path: path.to_owned(),
                what: format!("odd head dimension {} (RoPE rotates pairs)", self.head_dim),
            });
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(invalid(
                key("attention.head_count_kv", "num_key_value_heads"),
                format!(
                    "{} key/value heads do not divide {} query heads",
                    self.num_kv_heads, self.num_heads
                ),
            ));
        }
        let scaling = self.rope_scaling.map_or(vec![], |s| {
            vec![
                (s.factor, "rope_scaling.factor"),
                (s.low_freq_factor, "rope_scaling.low_freq_factor"),
                (s.high_freq_factor, "rope_scaling.high_freq_factor"),
                (
                    s.original_max_position,
                    "rope_scaling.original_max_position_embeddings",
                ),
            ]
        });
        for (x, k) in [
            (self.rope_theta, key("rope.freq_base", "rope_theta")),
            (
                self.rms_eps,
                key("attention.layer_norm_rms_epsilon", "rms_norm_eps"),
            ),
        ]
        .into_iter()
        .chain(scaling.into_iter().map(|(x, k)| (x, k.to_owned())))
        {
            if !(x.is_finite() && x > 0.0) {
                return Err(invalid(
                    k,
                    format!("must be a positive finite number, got {x}"),
                ));
            }
        }
        Ok(self)
    }

    /// RoPE inverse frequencies (`head_dim / 2` of them), Llama 3 scaling applied.
    pub fn inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim;
        (0..d / 2)
            .map(|i| {
                let f = 1.0 / self.rope_theta.powf((2 * i) as f64 / d as f64);
                match self.rope_scaling {
                    None => f,
                    Some(s) => {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        let low = s.original_max_position / s.low_freq_factor;
                        let high = s.original_max_position / s.high_freq_factor;
                        if wavelen < high {
                            f
                        } else if wavelen > low {
                            f / s.factor
                        } else {
                            let smooth = (s.original_max_position / wavelen - s.low_freq_factor)
                                / (s.high_freq_factor - s.low_freq_factor);
                            (1.0 - smooth) * f / s.factor + smooth * f
                        }
                    }
                }
            })
            .collect()
    }
}
