//! A sentence encoder (BERT, e.g. all-MiniLM-L6-v2) in burn: the frozen feature extractor of the
//! reward model. Loaded from a sentence-transformers folder (`config.json`, `model.safetensors`,
//! `tokenizer.json`, `1_Pooling/config.json`): token + position + type embeddings, post-LayerNorm
//! encoder blocks with exact GELU, mean pooling over the attention mask, L2 normalisation.

use std::path::{Path, PathBuf};

use burn::tensor::{DType, Device, Int, Tensor, TensorData, activation};
use rayon::prelude::*;
use tokenizers::{PaddingParams, TruncationParams};

use crate::llm::LlmError;
use crate::llm::weights::{HostTensor, WeightSource};

#[derive(Debug, Clone)]
struct Dense {
    w: Tensor<2>,
    b: Tensor<1>,
}

#[derive(Debug, Clone)]
struct Norm {
    g: Tensor<1>,
    b: Tensor<1>,
}

#[derive(Debug, Clone)]
struct Layer {
    q: Dense,
    k: Dense,
    v: Dense,
    o: Dense,
    attn_norm: Norm,
    up: Dense,
    down: Dense,
    out_norm: Norm,
}

/// A BERT sentence encoder with its tokenizer.
#[derive(Debug, Clone)]
pub struct SentenceEncoder {
    path: PathBuf,
    tokenizer: tokenizers::Tokenizer,
    word: Tensor<2>,
    position: Tensor<2>,
    token_type: Tensor<2>,
    emb_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
    eps: f64,
    max_positions: usize,
    /// Whether the folder asks for L2-normalised embeddings (a `Normalize` module).
    pub normalize: bool,
    device: Device,
}

/// A folder's `config.json`, checked to be a BERT with exact GELU (what this encoder runs).
fn bert_config(dir: &Path) -> Result<(std::path::PathBuf, serde_json::Value), LlmError> {
    let cfg_path = dir.join("config.json");
    let cfg = crate::llm::read_json(&cfg_path)?;
    let model_type = cfg.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
    if model_type != "bert" {
        return Err(LlmError::Unsupported {
            path: cfg_path,
            what: format!("encoder model_type `{model_type}` (BERT is supported)"),
        });
    }
    let act = cfg
        .get("hidden_act")
        .and_then(|v| v.as_str())
        .unwrap_or("gelu");
    if act != "gelu" {
        return Err(LlmError::Unsupported {
            path: cfg_path,
            what: format!("hidden_act `{act}` (exact `gelu` is supported)"),
        });
    }
    Ok((cfg_path, cfg))
}

impl SentenceEncoder {
    /// Checks a sentence-transformers folder before any work: `config.json` parses as a BERT
    /// config, `tokenizer.json` is there, and `model.safetensors`'s header fits the file.
    pub fn check(dir: &Path) -> Result<(), LlmError> {
        bert_config(dir)?;
        let tj = dir.join("tokenizer.json");
        if !tj.is_file() {
            return Err(LlmError::Missing {
                path: tj,
                what: "tokenizer.json (the encoder's tokenizer)".into(),
            });
        }
        for file in crate::llm::weights::safetensors_files(dir)? {
            crate::llm::weights::check_safetensors_header(&file)?;
        }
        Ok(())
    }

    /// Loads a sentence-transformers folder onto `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, LlmError> {
        let (cfg_path, cfg) = bert_config(dir)?;
        let int = |k: &str| {
            cfg.get(k)
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
                .ok_or_else(|| LlmError::Missing {
                    path: cfg_path.clone(),
                    what: format!("key `{k}`"),
                })
        };
        let pooling = dir.join("1_Pooling/config.json");
        if pooling.is_file() {
            let p = crate::llm::read_json(&pooling)?;
            if p.get("pooling_mode_mean_tokens").and_then(|v| v.as_bool()) != Some(true) {
                return Err(LlmError::Unsupported {
                    path: pooling,
                    what: "pooling mode (mean pooling is supported)".into(),
                });
            }
        }
        let normalize = std::fs::read_to_string(dir.join("modules.json"))
            .map(|m| m.contains("Normalize"))
            .unwrap_or(false);
        let (hidden, heads, layers_n) = (
            int("hidden_size")?,
            int("num_attention_heads")?,
            int("num_hidden_layers")?,
        );
        let inter = int("intermediate_size")?;
        let max_positions = int("max_position_embeddings")?;
        let eps = cfg
            .get("layer_norm_eps")
            .and_then(|v| v.as_f64())
            .unwrap_or(1e-12);

        let tj = dir.join("tokenizer.json");
        if !tj.is_file() {
            return Err(LlmError::Missing {
                path: tj,
                what: "tokenizer.json".into(),
            });
        }
        let mut tokenizer =
            tokenizers::Tokenizer::from_file(&tj).map_err(|e| LlmError::Tokenizer {
                path: tj.clone(),
                message: e.to_string(),
            })?;
        tokenizer.with_padding(None::<PaddingParams>);

        let src = WeightSource::safetensors_dir(dir)?;
        let get = |name: &str, shape: &[usize]| -> Result<HostTensor, LlmError> {
            let t = src.get_raw(name)?;
            if t.shape != shape {
                return Err(LlmError::Tensor {
                    path: dir.join("model.safetensors"),
                    name: name.to_owned(),
                    message: format!("shape {:?}, expected {:?}", t.shape, shape),
                });
            }
            Ok(t)
        };
        let mat = |t: HostTensor| {
            let s = [t.shape[0], t.shape[1]];
            Tensor::<2>::from_data(TensorData::new(t.data, s), (device, DType::F32))
        };
        let vec1 = |t: HostTensor| {
            let n = t.data.len();
            Tensor::<1>::from_data(TensorData::new(t.data, [n]), (device, DType::F32))
        };
        let dense = |name: &str, out: usize, inp: usize| -> Result<Dense, LlmError> {
            Ok(Dense {
                // [out, in] -> [in, out] (a transposed view; the matmul reads it as such).
                w: mat(get(&format!("{name}.weight"), &[out, inp])?).transpose(),
                b: vec1(get(&format!("{name}.bias"), &[out])?),
            })
        };
        let norm = |name: &str| -> Result<Norm, LlmError> {
            Ok(Norm {
                g: vec1(get(&format!("{name}.weight"), &[hidden])?),
                b: vec1(get(&format!("{name}.bias"), &[hidden])?),
            })
        };
        let vocab = int("vocab_size")?;
        let types = int("type_vocab_size").unwrap_or(2);
        let mut layers = Vec::with_capacity(layers_n);
        for i in 0..layers_n {
            let p = |n: &str| format!("encoder.layer.{i}.{n}");
            layers.push(Layer {
                q: dense(&p("attention.self.query"), hidden, hidden)?,
                k: dense(&p("attention.self.key"), hidden, hidden)?,
                v: dense(&p("attention.self.value"), hidden, hidden)?,
                o: dense(&p("attention.output.dense"), hidden, hidden)?,
                attn_norm: norm(&p("attention.output.LayerNorm"))?,
                up: dense(&p("intermediate.dense"), inter, hidden)?,
                down: dense(&p("output.dense"), hidden, inter)?,
                out_norm: norm(&p("output.LayerNorm"))?,
            });
        }
        Ok(Self {
            path: dir.to_owned(),
            tokenizer,
            word: mat(get("embeddings.word_embeddings.weight", &[vocab, hidden])?),
            position: mat(get(
                "embeddings.position_embeddings.weight",
                &[max_positions, hidden],
            )?),
            token_type: mat(get(
                "embeddings.token_type_embeddings.weight",
                &[types, hidden],
            )?),
            emb_norm: norm("embeddings.LayerNorm")?,
            layers,
            heads,
            hidden,
            eps,
            max_positions,
            normalize,
            device: device.clone(),
        })
    }

    /// Width of the embeddings.
    pub fn dim(&self) -> usize {
        self.hidden
    }

    /// Token ids of `text` with `[CLS]`/`[SEP]`, truncated to `max_len` tokens in all.
    pub fn encode(&self, text: &str, max_len: usize) -> Result<Vec<u32>, LlmError> {
        self.encode_with(&self.truncating(max_len)?, text)
    }

    /// The tokenizer, truncating to `max_len` tokens (one copy per call: a copy per text had
    /// been a third of the loop's RM features).
    fn truncating(&self, max_len: usize) -> Result<tokenizers::Tokenizer, LlmError> {
        let mut tok = self.tokenizer.clone();
        tok.with_truncation(Some(TruncationParams {
            max_length: max_len.min(self.max_positions),
            ..Default::default()
        }))
        .map_err(|e| LlmError::Tokenizer {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        Ok(tok)
    }

    fn encode_with(&self, tok: &tokenizers::Tokenizer, text: &str) -> Result<Vec<u32>, LlmError> {
        let enc = tok
            .encode_fast(text, true)
            .map_err(|e| LlmError::Tokenizer {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// Mean-pooled embeddings (L2-normalised when the model asks for it) of `texts`, each
    /// truncated to `max_len` tokens, batched `batch` at a time, shortest first. One row per
    /// text, in `texts`' order.
    pub fn embed(
        &self,
        texts: &[&str],
        max_len: usize,
        batch: usize,
    ) -> Result<Vec<Vec<f32>>, LlmError> {
        self.embed_pooled(texts, max_len, batch, self.normalize)
    }

    /// [`Self::embed`], L2-normalised when `normalize` says so, whatever the folder asks.
    pub fn embed_pooled(
        &self,
        texts: &[&str],
        max_len: usize,
        batch: usize,
        normalize: bool,
    ) -> Result<Vec<Vec<f32>>, LlmError> {
        let tok = self.truncating(max_len)?;
        let ids = texts
            .iter()
            .map(|t| self.encode_with(&tok, t))
            .collect::<Result<Vec<_>, _>>()?;
        // Batched by length (then by tokens), so that a batch pads to little more than its
        // texts and the batches do not depend on the texts' order. Padded keys weigh exactly 0;
        // only the last bits of a text's embedding depend on its batch (burn's products take
        // another path for a few rows than for many).
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by(|&a, &b| (ids[a].len(), &ids[a]).cmp(&(ids[b].len(), &ids[b])));
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(batch.max(1)) {
            let batch_ids: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
            let vals = crate::backend::host_f32(self.pool(&batch_ids, normalize));
            for (&i, row) in chunk.iter().zip(vals.chunks(self.hidden)) {
                out[i] = row.to_vec();
            }
        }
        Ok(out)
    }

    fn layer_norm(&self, x: Tensor<2>, n: &Norm) -> Tensor<2> {
        let mean = x.clone().mean_dim(1);
        let centred = x - mean;
        let var = centred.clone().square().mean_dim(1);
        centred / (var + self.eps).sqrt() * n.g.clone().unsqueeze() + n.b.clone().unsqueeze()
    }

    fn dense(x: Tensor<2>, d: &Dense) -> Tensor<2> {
        x.matmul(d.w.clone()) + d.b.clone().unsqueeze()
    }

    /// Pooled embeddings `[batch, hidden]` of right-padded token ids.
    fn pool(&self, ids: &[Vec<u32>], normalize: bool) -> Tensor<2> {
        let (b, t, h) = (
            ids.len(),
            ids.iter().map(Vec::len).max().unwrap_or(1),
            self.hidden,
        );
        let dev = &self.device;
        let flat: Vec<i64> = ids
            .iter()
            .flat_map(|s| {
                s.iter()
                    .map(|&i| i64::from(i))
                    .chain(std::iter::repeat_n(0, t - s.len()))
            })
            .collect();
        let mask: Vec<f32> = ids
            .iter()
            .flat_map(|s| (0..t).map(move |j| if j < s.len() { 1.0 } else { 0.0 }))
            .collect();
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, t]), (dev, DType::F32));
        let ids_t = Tensor::<1, Int>::from_data(TensorData::new(flat, [b * t]), dev);
        let pos = Tensor::<1, Int>::from_data(
            TensorData::new((0..b).flat_map(|_| 0..t as i64).collect(), [b * t]),
            dev,
        );
        let x = self.word.clone().select(0, ids_t)
            + self.position.clone().select(0, pos)
            + self.token_type.clone().narrow(0, 0, 1);
        let mut x = self.layer_norm(x, &self.emb_norm);
        let (nh, hd) = (self.heads, h / self.heads);
        // Additive key mask [b, 1, 1, t].
        let key_bias = (mask.clone() - 1.0).reshape([b, 1, 1, t]) * 1e30;
        let split = |m: Tensor<2>| m.reshape([b, t, nh, hd]).swap_dims(1, 2);
        for l in &self.layers {
            let q = split(Self::dense(x.clone(), &l.q));
            let k = split(Self::dense(x.clone(), &l.k));
            let v = split(Self::dense(x.clone(), &l.v));
            let scores = q.matmul(k.swap_dims(2, 3)) / (hd as f64).sqrt() + key_bias.clone();
            let att = activation::softmax(scores, 3)
                .matmul(v)
                .swap_dims(1, 2)
                .reshape([b * t, h]);
            x = self.layer_norm(Self::dense(att, &l.o) + x, &l.attn_norm);
            let up = gelu(Self::dense(x.clone(), &l.up));
            x = self.layer_norm(Self::dense(up, &l.down) + x, &l.out_norm);
        }
        let x = x.reshape([b, t, h]);
        let m = mask.clone().reshape([b, t, 1]);
        let summed = (x * m).sum_dim(1).reshape([b, h]);
        let counts = mask.sum_dim(1).clamp_min(1e-9);
        let pooled = summed / counts;
        if normalize {
            let norm = pooled.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
            pooled / norm
        } else {
            pooled
        }
    }
}

/// Exact GELU. On burn's flex backend on rayon's threads with flex's own formula and `erf`
/// (`0.5 * x * (1 + erf(x / √2))`, libm's `erff`), so the same bits as [`activation::gelu`],
/// which runs it on one thread (a third of the RM features' time in the loop); elsewhere
/// burn's.
fn gelu(x: Tensor<2>) -> Tensor<2> {
    let device = x.device();
    if !crate::backend::on_flex(&device) {
        return activation::gelu(x);
    }
    let shape = x.dims();
    let mut v = crate::backend::host_f32(x);
    let sqrt2 = std::f32::consts::SQRT_2;
    v.par_iter_mut()
        .with_min_len(1 << 12)
        .for_each(|x| *x = 0.5 * *x * (1.0 + libm::erff(*x / sqrt2)));
    Tensor::from_data(TensorData::new(v, shape), &device)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Tensor, TensorData, activation};

    /// The host GELU is burn's bit for bit on flex (`x · (1/√2)` for `x / √2`, `erf` in f64, or
    /// the tanh approximation would differ in the last bits), across both tails, zero and
    /// erf's range boundaries, on more values than one thread's share.
    #[test]
    fn host_gelu_equals_burns_bit_for_bit() {
        let dev = crate::backend::device(crate::BackendKind::Flex, false).unwrap();
        let mut v: Vec<f32> = (0..40_000)
            .map(|i| (i as f32 - 20_000.0) * 7.3e-4)
            .collect();
        v.extend([
            0.0, -0.0, 0.84375, -0.84375, 1.25, 2.857_143, 6.0, -6.0, 10.0, -10.0,
        ]);
        let shape = [v.len() / 10, 10];
        let x = Tensor::<2>::from_data(TensorData::new(v, shape), &dev);
        let ours = crate::backend::host_f32(super::gelu(x.clone()));
        let burns = crate::backend::host_f32(activation::gelu(x));
        let differing = ours
            .iter()
            .zip(&burns)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differing, 0, "{differing} of {} values differ", ours.len());
    }
}
