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

/// The safetensors files of a Hugging Face folder: `model.safetensors`, or the shards its
/// `model.safetensors.index.json` names.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>, LlmError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
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
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Checks a safetensors file by its header alone (the data is not read): the header's length
/// fits the file, and safetensors' own `Metadata` parses it and checks every tensor's extent
/// against its dtype and shape; the extents must end where the file does.
pub fn check_safetensors_header(path: &Path) -> Result<(), LlmError> {
    use std::io::Read;
    let bad = |message: String| LlmError::Tensor {
        path: path.to_owned(),
        name: "(header)".into(),
        message,
    };
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|_| {
        bad(format!(
            "the file has {len} bytes, not even a header length"
        ))
    })?;
    let n = u64::from_le_bytes(n);
    if n > 100 << 20 || 8 + n > len {
        return Err(bad(format!(
            "a header of {n} bytes does not fit a file of {len} bytes"
        )));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(io_err(path))?;
    let meta: safetensors::tensor::Metadata =
        serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))?;
    let data = len - 8 - n;
    if meta.data_len() as u64 != data {
        return Err(bad(format!(
            "the tensors take {} bytes, the data section holds {data}",
            meta.data_len()
        )));
    }
    Ok(())
}

impl WeightSource {
    /// The safetensors files of a Hugging Face folder (one file or a sharded index).
    pub fn safetensors_dir(dir: &Path) -> Result<Self, LlmError> {
        let names = safetensors_files(dir)?;
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
