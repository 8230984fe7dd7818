//! Model files: a GGUF file or a Hugging Face folder (`config.json`, `*.safetensors`,
//! `tokenizer.json`), read into `f32` tensors named as Hugging Face names them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use super::{LlamaConfig, LlmError, io_err};
use crate::gguf::{Gguf, unpermute_qk};

/// A host-side tensor: row-major values and shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Values, row-major.
    pub data: Vec<f32>,
    /// Shape (`[out, in]` for a projection, as Hugging Face stores it).
    pub shape: Vec<usize>,
}

/// Where tensors come from.
#[derive(Debug)]
pub enum WeightSource {
    /// A GGUF file (dequantised on load; Q/K rows un-permuted).
    Gguf(Box<Gguf>),
    /// Safetensors files of a Hugging Face checkpoint, tensor name -> (file index).
    Safetensors {
        /// The files' bytes.
        files: Vec<(PathBuf, Vec<u8>)>,
        /// Which file holds each tensor.
        index: BTreeMap<String, usize>,
    },
}

/// The GGUF name of a Hugging Face tensor name.
fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_owned());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, name) = rest.split_once('.')?;
    let g = match name {
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{layer}.{g}"))
}

impl WeightSource {
    /// The safetensors files of a Hugging Face folder (one file or a sharded index).
    pub fn safetensors_dir(dir: &Path) -> Result<Self, LlmError> {
        let single = dir.join("model.safetensors");
        let names: Vec<PathBuf> = if single.is_file() {
            vec![single]
        } else {
            let idx = dir.join("model.safetensors.index.json");
            if !idx.is_file() {
                return Err(LlmError::Missing {
                    path: dir.to_owned(),
                    what: "model.safetensors or model.safetensors.index.json".into(),
                });
            }
            let v = super::read_json(&idx)?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| LlmError::Missing {
                    path: idx.clone(),
                    what: "key `weight_map`".into(),
                })?;
            let mut files: Vec<String> = map
                .values()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect();
            files.sort();
            files.dedup();
            files.into_iter().map(|f| dir.join(f)).collect()
        };
        let mut files = Vec::new();
        let mut index = BTreeMap::new();
        for (i, path) in names.into_iter().enumerate() {
            let bytes = std::fs::read(&path).map_err(io_err(&path))?;
            let st = SafeTensors::deserialize(&bytes).map_err(|e| LlmError::Tensor {
                path: path.clone(),
                name: "(header)".into(),
                message: e.to_string(),
            })?;
            for name in st.names() {
                index.insert(name.to_owned(), i);
            }
            files.push((path, bytes));
        }
        Ok(Self::Safetensors { files, index })
    }

    /// Whether the source holds `hf_name`.
    pub fn contains(&self, hf_name: &str) -> bool {
        match self {
            Self::Gguf(g) => gguf_name(hf_name).is_some_and(|n| g.tensor(&n).is_ok()),
            Self::Safetensors { index, .. } => index.contains_key(hf_name),
        }
    }

    /// A tensor by Hugging Face name, as `f32`.
    pub fn get(&self, hf_name: &str, config: &LlamaConfig) -> Result<HostTensor, LlmError> {
        match self {
            Self::Gguf(g) => {
                let name = gguf_name(hf_name).ok_or_else(|| LlmError::Tensor {
                    path: g.path().to_owned(),
                    name: hf_name.to_owned(),
                    message: "no GGUF name for this tensor".into(),
                })?;
                let shape = g.tensor(&name)?.shape();
                let mut data = g.dequantize(&name)?;
                let heads = if hf_name.ends_with("q_proj.weight") {
                    Some(config.num_heads)
                } else if hf_name.ends_with("k_proj.weight") {
                    Some(config.num_kv_heads)
                } else {
                    None
                };
                if let Some(h) = heads {
                    data = unpermute_qk(&data, shape[0], shape[1], h);
                }
                Ok(HostTensor { data, shape })
            }
            Self::Safetensors { .. } => self.get_raw(hf_name),
        }
    }

    /// A tensor of a safetensors checkpoint by its stored name, as `f32`.
    pub fn get_raw(&self, hf_name: &str) -> Result<HostTensor, LlmError> {
        match self {
            Self::Gguf(g) => Err(LlmError::Unsupported {
                path: g.path().to_owned(),
                what: format!("raw tensor access to `{hf_name}` in a GGUF file"),
            }),
            Self::Safetensors { files, index } => {
                let missing = || LlmError::Tensor {
                    path: files.first().map(|f| f.0.clone()).unwrap_or_default(),
                    name: hf_name.to_owned(),
                    message: "not in the checkpoint".into(),
                };
                let (path, bytes) = &files[*index.get(hf_name).ok_or_else(missing)?];
                let bad = |message: String| LlmError::Tensor {
                    path: path.clone(),
                    name: hf_name.to_owned(),
                    message,
                };
                let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
                let view = st.tensor(hf_name).map_err(|e| bad(e.to_string()))?;
                let raw = view.data();
                let data: Vec<f32> = match view.dtype() {
                    Dtype::F32 => raw
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                    Dtype::F16 => raw
                        .chunks_exact(2)
                        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                        .collect(),
                    Dtype::BF16 => raw
                        .chunks_exact(2)
                        .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                        .collect(),
                    other => return Err(bad(format!("unsupported dtype {other:?}"))),
                };
                Ok(HostTensor {
                    data,
                    shape: view.shape().to_vec(),
                })
            }
        }
    }
}
