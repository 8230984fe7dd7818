//! LoRA adapters on the attention projections (PEFT's semantics): `y = x W + (alpha / r) *
//! dropout(x) A B`, `A` (`[in, r]`) initialised Kaiming-uniform, `B` (`[r, out]`) zero, so a
//! fresh adapter leaves the model unchanged. Only the adapters are parameters; the base weights
//! are constants of the decoder.
//!
//! burn ships a LoRA reparameterisation (`Module::apply_lora`), but it folds the update into the
//! weight, which cannot express dropout on the adapter's input and ties the adapters to one
//! copy of the base; these adapters are a module of their own, passed to the decoder's forward.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, Param, ParamId};
use burn::tensor::{DType, Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

use super::{LlamaConfig, LlmError, io_err};

/// Shape of the adapters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank `r`.
    pub rank: usize,
    /// Scale numerator: updates are multiplied by `alpha / rank`.
    pub alpha: f64,
    /// Dropout probability on the adapters' input (training only).
    pub dropout: f64,
    /// Which projections get adapters: any of `q`, `k`, `v`, `o`.
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.05,
            targets: ["q", "k", "v", "o"].map(String::from).to_vec(),
        }
    }
}

impl LoraConfig {
    /// Checks the settings: known targets (q, k, v, o), at least one, a rank of at least 1,
    /// dropout in [0, 1), a finite alpha. The error is the setting's name (`targets`, `rank`,
    /// `dropout`, `alpha`) and what is wrong with it.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(t) = self.targets.iter().find(|t| !SLOTS.contains(&t.as_str())) {
            return Err((
                "targets",
                format!("unknown projection `{t}` (expected q, k, v or o)"),
            ));
        }
        if self.targets.is_empty() {
            return Err(("targets", "names no projection".into()));
        }
        if self.rank == 0 {
            return Err(("rank", "must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err((
                "dropout",
                format!("must be in [0, 1), got {}", self.dropout),
            ));
        }
        if !self.alpha.is_finite() {
            return Err(("alpha", format!("must be finite, got {}", self.alpha)));
        }
        Ok(())
    }
}

/// One adapter: `A` `[in, r]`, `B` `[r, out]`.
#[derive(Module, Debug)]
pub struct LoraPair {
    /// Down-projection.
    pub a: Param<Tensor<2>>,
    /// Up-projection.
    pub b: Param<Tensor<2>>,
}

/// The adapters of one block.
#[derive(Module, Debug)]
pub struct LayerAdapters {
    /// On the query projection.
    pub q: Option<LoraPair>,
    /// On the key projection.
    pub k: Option<LoraPair>,
    /// On the value projection.
    pub v: Option<LoraPair>,
    /// On the output projection.
    pub o: Option<LoraPair>,
}

/// The adapters of a whole model: the trainable module.
#[derive(Module, Debug)]
pub struct Adapters {
    /// Per block.
    pub layers: Vec<LayerAdapters>,
    /// `alpha / rank`.
    pub scale: f64,
}

const SLOTS: [&str; 4] = ["q", "k", "v", "o"];

/// Parameter ids are a function of the adapter's place (layer, projection, `A` or `B`), so that
/// adapters read back from a checkpoint match the optimiser state saved with them (burn keys
/// optimiser records by parameter id).
const PARAM_ID_BASE: u64 = 0x4c6f_5241_0000_0000;

fn param(data: Vec<f32>, shape: [usize; 2], id: u64, device: &Device) -> Param<Tensor<2>> {
    let mut p = Param::from_tensor(Tensor::from_data(
        TensorData::new(data, shape),
        (device, DType::F32),
    ));
    p.id = ParamId::from(PARAM_ID_BASE + id);
    p
}

impl Adapters {
    /// Fresh adapters (`B = 0`), `A` drawn from `seed`.
    pub fn new(
        config: &LoraConfig,
        model: &LlamaConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self, LlmError> {
        Self::build(config, model, device, |li, slot, (fan_in, r, out)| {
            // One stream per (layer, projection), so adapters are independent of each other.
            let k = SLOTS.iter().position(|s| *s == slot).unwrap_or(0) as u64;
            let stream = (li as u64) * SLOTS.len() as u64 + k;
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(stream);
            let bound = 1.0 / (fan_in as f32).sqrt();
            let a = (0..fan_in * r)
                .map(|_| rng.random_range(-bound..bound))
                .collect();
            Ok((a, vec![0.0; r * out]))
        })
    }

    fn build(
        config: &LoraConfig,
        model: &LlamaConfig,
        device: &Device,
        mut init: impl FnMut(
            usize,
            &str,
            (usize, usize, usize),
        ) -> Result<(Vec<f32>, Vec<f32>), LlmError>,
    ) -> Result<Self, LlmError> {
        config
            .check()
            .map_err(|(key, m)| LlmError::Request(format!("lora.{key}: {m}")))?;
        let (hid, q, kv) = (
            model.hidden_size,
            model.num_heads * model.head_dim,
            model.num_kv_heads * model.head_dim,
        );
        let dims = |slot: &str| match slot {
            "q" => (hid, q),
            "k" | "v" => (hid, kv),
            _ => (q, hid),
        };
        let r = config.rank;
        let mut layers = Vec::with_capacity(model.num_layers);
        for li in 0..model.num_layers {
            let mut make = |slot: &str| -> Result<Option<LoraPair>, LlmError> {
                if !config.targets.iter().any(|t| t == slot) {
                    return Ok(None);
                }
                let (fan_in, out) = dims(slot);
                let (a, b) = init(li, slot, (fan_in, r, out))?;
                let k = SLOTS.iter().position(|s| *s == slot).unwrap_or(0) as u64;
                let id = 2 * (li as u64 * SLOTS.len() as u64 + k);
                Ok(Some(LoraPair {
                    a: param(a, [fan_in, r], id, device),
                    b: param(b, [r, out], id + 1, device),
                }))
            };
            layers.push(LayerAdapters {
                q: make("q")?,
                k: make("k")?,
                v: make("v")?,
                o: make("o")?,
            });
        }
        Ok(Self {
            layers,
            scale: config.alpha / r as f64,
        })
    }

    /// Every adapter with its name (`layers.{i}.{slot}`).
    fn named(&self) -> Vec<(String, &LoraPair)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            for (slot, p) in SLOTS.iter().zip([&l.q, &l.k, &l.v, &l.o]) {
                if let Some(p) = p {
                    out.push((format!("layers.{i}.{slot}"), p));
                }
            }
        }
        out
    }

    /// Writes the adapters as safetensors (`layers.{i}.{slot}.lora_a` / `.lora_b`, f32), with
    /// the LoRA config in the metadata; atomically (temporary file, then rename).
    pub fn save(&self, config: &LoraConfig, path: &Path) -> Result<(), LlmError> {
        let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, p) in self.named() {
            for (suffix, t) in [("lora_a", p.a.val()), ("lora_b", p.b.val())] {
                let shape = t.dims().to_vec();
                let vals = crate::backend::host_f32(t);
                let bytes = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
                bufs.push((format!("{name}.{suffix}"), shape, bytes));
            }
        }
        let views: Vec<(String, TensorView<'_>)> = bufs
            .iter()
            .map(|(n, s, b)| {
                (
                    n.clone(),
                    TensorView::new(Dtype::F32, s.clone(), b).expect("consistent buffer"),
                )
            })
            .collect();
        let meta = HashMap::from([(
            "lora_config".to_owned(),
            serde_json::to_string(config).expect("serialisable"),
        )]);
        let tmp = path.with_extension("safetensors.partial");
        safetensors::serialize_to_file(views, Some(meta), &tmp).map_err(|e| LlmError::Tensor {
            path: tmp.clone(),
            name: "(file)".into(),
            message: e.to_string(),
        })?;
        std::fs::rename(&tmp, path).map_err(io_err(path))
    }

    /// Reads adapters written by [`Adapters::save`] for a model of shape `model`.
    pub fn load(
        path: &Path,
        model: &LlamaConfig,
        device: &Device,
    ) -> Result<(Self, LoraConfig), LlmError> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let bad = |name: &str, message: String| LlmError::Tensor {
            path: path.to_owned(),
            name: name.to_owned(),
            message,
        };
        let (_, meta) =
            SafeTensors::read_metadata(&bytes).map_err(|e| bad("(header)", e.to_string()))?;
        let config: LoraConfig = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("lora_config"))
            .ok_or_else(|| LlmError::Missing {
                path: path.to_owned(),
                what: "metadata key `lora_config`".into(),
            })
            .and_then(|s| {
                serde_json::from_str(s).map_err(|source| LlmError::Json {
                    path: path.to_owned(),
                    source,
                })
            })?;
        config.check().map_err(|(key, message)| LlmError::Invalid {
            path: path.to_owned(),
            key: format!("lora_config.{key}"),
            message,
        })?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad("(header)", e.to_string()))?;
        let read = |name: String, shape: [usize; 2]| -> Result<Vec<f32>, LlmError> {
            let v = st.tensor(&name).map_err(|e| bad(&name, e.to_string()))?;
            if v.dtype() != Dtype::F32 || v.shape() != shape {
                return Err(bad(
                    &name,
                    format!("{:?} {:?}, expected F32 {:?}", v.dtype(), v.shape(), shape),
                ));
            }
            Ok(v.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let adapters = Self::build(&config, model, device, |li, slot, (fan_in, r, out)| {
            let n = format!("layers.{li}.{slot}");
            Ok((
                read(format!("{n}.lora_a"), [fan_in, r])?,
                read(format!("{n}.lora_b"), [r, out])?,
            ))
        })?;
        Ok((adapters, config))
    }

    /// The adapters' values, flattened (for comparisons and checksums).
    pub fn flat_values(&self) -> Vec<f32> {
        let mut out = Vec::new();
        for (_, p) in self.named() {
            for t in [p.a.val(), p.b.val()] {
                out.extend(crate::backend::host_f32(t));
            }
        }
        out
    }
}

/// Seeded inverted-dropout masks for the adapters' inputs during training.
#[derive(Debug)]
pub struct DropoutMasks {
    rng: ChaCha8Rng,
    p: f64,
    rows: usize,
    device: Device,
}

impl DropoutMasks {
    /// Masks for `rows` tokens with drop probability `p`; `None` when `p` is 0.
    pub fn new(p: f64, rows: usize, seed: u64, device: &Device) -> Option<Self> {
        (p > 0.0).then(|| Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            p,
            rows,
            device: device.clone(),
        })
    }

    /// The next mask (entries 0 or `1 / (1 - p)`).
    pub fn next(&mut self, cols: usize) -> Tensor<2> {
        let data = self.next_host(cols);
        Tensor::from_data(
            TensorData::new(data, [self.rows, cols]),
            (&self.device, DType::F32),
        )
    }

    /// [`DropoutMasks::next`] on the host (`[rows, cols]`, row-major): the same draws.
    pub fn next_host(&mut self, cols: usize) -> Vec<f32> {
        let keep = (1.0 / (1.0 - self.p)) as f32;
        (0..self.rows * cols)
            .map(|_| {
                if self.rng.random::<f64>() < self.p {
                    0.0
                } else {
                    keep
                }
            })
            .collect()
    }
}
