//! The Llama-family decoder: token embedding, blocks of (RMSNorm, grouped-query attention with
//! rotate-half RoPE, RMSNorm, SwiGLU), final RMSNorm, tied or untied output head.
//!
//! Projection weights are stored `[in, out]` so that activations multiply them on the right.
//! They are plain tensors, never trained: training goes through [`Adapters`] (LoRA), passed
//! to [`Llama::forward`] beside the input, so one set of base weights serves the policy (with
//! adapters), the frozen oracle and the reference (without).

use std::path::Path;

use rayon::prelude::*;

use burn::tensor::{DType, Device, Int, Tensor, TensorData, activation};

use super::lora::{Adapters, DropoutMasks, LoraPair};
use super::quant::QMatrix;
use super::weights::{HostTensor, WeightSource};
use super::{LlamaConfig, LlmError};

mod dense;
mod host;
mod host_step;
mod quantized;

use dense::{Dense, dense_products};
pub use host::{HostDecoder, HostPrefix};
pub use host_step::{AdapterGradient, HostStep, StepGradients};
use quantized::{Quantized, quantized};

/// Longest context the RoPE tables are built for (Llama 3.2 declares 131072).
const MAX_ROPE_POSITIONS: usize = 16_384;
/// Up to this many token rows, inference through burn multiplies from the quantised blocks
/// (bandwidth-bound: each block is dequantised once for all rows); above it, burn's f32 matmul
/// (AVX-512 gemm micro-kernels) on one cache-resident matrix is as fast or faster (`cargo bench
/// --bench qmatmul`). Generation and `next_logits` do not come here on such a model: they run
/// on the host ([`HostDecoder`]); this serves scoring (short continuations).
const QUANT_MAX_ROWS: usize = 8;
/// Additive mask value of a hidden key (finite, so a fully masked row stays finite).
const MASKED: f32 = -1e30;

#[derive(Debug, Clone)]
struct Block {
    attn_norm: Tensor<1>,
    wq: Dense,
    wk: Dense,
    wv: Dense,
    wo: Dense,
    ffn_norm: Tensor<1>,
    w_gate: Dense,
    w_up: Dense,
    w_down: Dense,
}

/// A Llama-family decoder on one device.
#[derive(Debug, Clone)]
pub struct Llama {
    /// Architecture.
    pub config: LlamaConfig,
    embed: Tensor<2>,
    blocks: Vec<Block>,
    norm: Tensor<1>,
    head: Tensor<2>,
    cos: Tensor<2>,
    sin: Tensor<2>,
    device: Device,
    /// Quantised copies of the projections for gradient-free CPU inference (GGUF models).
    quantized: Option<std::sync::Arc<Quantized>>,
}

/// Keys and values of earlier positions, per layer (`[batch, kv_heads, len, head_dim]`), as
/// burn tensors or, for a context scored on the host, as a [`HostPrefix`].
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    /// Positions held.
    pub len: usize,
    host: Option<std::sync::Arc<HostPrefix>>,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cache of a one-row batch repeated for `n` rows (to continue one shared context in
    /// `n` different ways).
    pub fn expand_batch(&self, n: usize) -> Self {
        let grow = |t: &Tensor<4>| {
            let [_, h, s, d] = t.dims();
            t.clone().expand([n, h, s, d])
        };
        Self {
            layers: self
                .layers
                .iter()
                .map(|l| l.as_ref().map(|(k, v)| (grow(k), grow(v))))
                .collect(),
            len: self.len,
            host: None,
        }
    }

    /// The cache of a context computed on the host.
    pub fn from_host(prefix: HostPrefix) -> Self {
        Self {
            layers: Vec::new(),
            len: prefix.len,
            host: Some(std::sync::Arc::new(prefix)),
        }
    }

    /// The host copy, for a context computed on the host.
    pub fn host(&self) -> Option<&HostPrefix> {
        self.host.as_deref()
    }
}

/// One forward call's input: `batch x seq` token ids with their RoPE positions and, when the
/// batch is padded, which keys (cached ones included) are real tokens.
#[derive(Debug, Clone)]
pub struct Input {
    /// Token ids, row-major `[batch, seq]`.
    pub ids: Vec<u32>,
    /// Rows.
    pub batch: usize,
    /// Columns.
    pub seq: usize,
    /// RoPE position of each token, `[batch, seq]`.
    pub positions: Vec<usize>,
    /// `[batch, cache.len + seq]`: whether each key is a real token; `None`: all are.
    pub key_valid: Option<Vec<bool>>,
    /// `[batch, seq, cache.len + seq]`: which keys each query may see, in place of the causal
    /// mask and `key_valid` (several continuations packed into one row); `None`: causal.
    pub attend: Option<Vec<bool>>,
}

impl Input {
    /// One unpadded sequence starting at position `start`.
    pub fn single(ids: &[u32], start: usize) -> Self {
        Self {
            ids: ids.to_vec(),
            batch: 1,
            seq: ids.len(),
            positions: (start..start + ids.len()).collect(),
            key_valid: None,
            attend: None,
        }
    }
}

fn host_to_device(t: HostTensor, device: &Device) -> Tensor<2> {
    let shape = [t.shape[0], t.shape.get(1).copied().unwrap_or(1)];
    Tensor::from_data(TensorData::new(t.data, shape), (device, DType::F32))
}

fn vector(t: HostTensor, device: &Device) -> Tensor<1> {
    let n = t.data.len();
    Tensor::from_data(TensorData::new(t.data, [n]), (device, DType::F32))
}

/// `[out, in]` on the host to `[in, out]` on the device.
fn projection(t: HostTensor, device: &Device) -> Tensor<2> {
    Dense::new(t, device, false).parts.remove(0)
}

fn rms_norm<const D: usize>(x: Tensor<D>, weight: &Tensor<1>, eps: f64) -> Tensor<D> {
    let rms = (x.clone().square().mean_dim(D - 1) + eps).sqrt();
    (x / rms) * weight.clone().unsqueeze()
}

/// `base` (`x @ w`) plus the LoRA update `scale * drop(x) @ a @ b`.
fn project(
    base: Tensor<2>,
    x: Tensor<2>,
    lora: Option<&LoraPair>,
    scale: f64,
    drop: Option<Tensor<2>>,
) -> Tensor<2> {
    match lora {
        None => base,
        Some(pair) => {
            let xin = match drop {
                Some(mask) => x * mask,
                None => x,
            };
            base + xin.matmul(pair.a.val()).matmul(pair.b.val()) * scale
        }
    }
}

impl Llama {
    /// Builds the decoder from a weight source. With `cpu_inference` (a gradient-free copy on a
    /// CPU), the f32 projections are split into parallel column parts ([`Dense`]), and a GGUF
    /// model whose projections are Q4_0/Q4_1/Q8_0 also keeps them in their blocks: generation
    /// and scoring multiply from those (see [`super::quant`]).
    pub fn from_source(
        config: &LlamaConfig,
        source: &WeightSource,
        path: &Path,
        device: &Device,
        cpu_inference: bool,
    ) -> Result<Self, LlmError> {
        let get = |name: &str, shape: &[usize]| -> Result<HostTensor, LlmError> {
            let t = source.get(name, config)?;
            if t.shape != shape {
                return Err(LlmError::Tensor {
                    path: path.to_owned(),
                    name: name.to_owned(),
                    message: format!("shape {:?}, expected {:?}", t.shape, shape),
                });
            }
            Ok(t)
        };
        let c = config;
        let (h, kv) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let embed = host_to_device(
            get("model.embed_tokens.weight", &[c.vocab_size, c.hidden_size])?,
            device,
        );
        // The layers' weights are read, dequantised and laid out on rayon's threads: loading
        // was one thread's work (two copies of SmolLM2: ~1.5 s).
        let block = |i: usize| -> Result<Block, LlmError> {
            let p = |n: &str| format!("model.layers.{i}.{n}");
            Ok(Block {
                attn_norm: vector(get(&p("input_layernorm.weight"), &[c.hidden_size])?, device),
                wq: Dense::new(
                    get(&p("self_attn.q_proj.weight"), &[h, c.hidden_size])?,
                    device,
                    cpu_inference,
                ),
                wk: Dense::new(
                    get(&p("self_attn.k_proj.weight"), &[kv, c.hidden_size])?,
                    device,
                    cpu_inference,
                ),
                wv: Dense::new(
                    get(&p("self_attn.v_proj.weight"), &[kv, c.hidden_size])?,
                    device,
                    cpu_inference,
                ),
                wo: Dense::new(
                    get(&p("self_attn.o_proj.weight"), &[c.hidden_size, h])?,
                    device,
                    cpu_inference,
                ),
                ffn_norm: vector(
                    get(&p("post_attention_layernorm.weight"), &[c.hidden_size])?,
                    device,
                ),
                w_gate: Dense::new(
                    get(
                        &p("mlp.gate_proj.weight"),
                        &[c.intermediate_size, c.hidden_size],
                    )?,
                    device,
                    cpu_inference,
                ),
                w_up: Dense::new(
                    get(
                        &p("mlp.up_proj.weight"),
                        &[c.intermediate_size, c.hidden_size],
                    )?,
                    device,
                    cpu_inference,
                ),
                w_down: Dense::new(
                    get(
                        &p("mlp.down_proj.weight"),
                        &[c.hidden_size, c.intermediate_size],
                    )?,
                    device,
                    cpu_inference,
                ),
            })
        };
        let blocks = (0..c.num_layers)
            .into_par_iter()
            .map(block)
            .collect::<Result<Vec<_>, _>>()?;
        let norm = vector(get("model.norm.weight", &[c.hidden_size])?, device);
        let head = if source.contains("lm_head.weight") && !c.tie_embeddings {
            projection(
                get("lm_head.weight", &[c.vocab_size, c.hidden_size])?,
                device,
            )
        } else {
            embed.clone().transpose()
        };
        let (cos, sin) = rope_tables(c, device);
        let quantized = match source {
            WeightSource::Gguf(g) if cpu_inference => quantized(g, c, &blocks, &norm)?,
            _ => None,
        };
        Ok(Self {
            quantized,
            config: config.clone(),
            embed,
            blocks,
            norm,
            head,
            cos,
            sin,
            device: device.clone(),
        })
    }

    /// A copy with the adapters folded into the weights (`W + scale * A B`): same outputs as
    /// `forward(.., Some(adapters), ..)` without dropout, at the cost of one plain forward.
    pub fn merged(&self, adapters: &Adapters) -> Self {
        let mut out = self.clone();
        let fold = |w: &mut Dense, pair: &Option<LoraPair>| {
            if let Some(p) = pair {
                w.add(p.a.val().detach().matmul(p.b.val().detach()) * adapters.scale);
            }
        };
        for (blk, l) in out.blocks.iter_mut().zip(&adapters.layers) {
            fold(&mut blk.wq, &l.q);
            fold(&mut blk.wk, &l.k);
            fold(&mut blk.wv, &l.v);
            fold(&mut blk.wo, &l.o);
        }
        out
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Final hidden states (after the last RMSNorm), `[batch, seq, hidden]`. Appends this
    /// call's keys and values to `cache` when given. `adapters` adds LoRA updates; `dropout`
    /// (training only) masks the adapters' inputs.
    pub fn forward(
        &self,
        input: &Input,
        cache: Option<&mut KvCache>,
        adapters: Option<&Adapters>,
        dropout: Option<&mut DropoutMasks>,
    ) -> Tensor<3> {
        self.run(input, cache, adapters, dropout, None)
    }

    /// [`Llama::forward`] without gradients through the base weights: on a CPU, with a
    /// quantised GGUF model, the projections multiply from their blocks.
    pub fn forward_inference(
        &self,
        input: &Input,
        cache: Option<&mut KvCache>,
        adapters: Option<&Adapters>,
    ) -> Tensor<3> {
        self.run(input, cache, adapters, None, self.quantized.as_deref())
    }

    /// Pooled final hidden states (after the last RMSNorm) of each sequence, without gradients
    /// and without adapters: the mean over its tokens, or (`last`) its last token's. One pass
    /// per sequence, unpadded; an empty sequence pools to zeros.
    pub fn pooled_hidden(&self, seqs: &[Vec<u32>], last: bool) -> Vec<Vec<f32>> {
        let h = self.config.hidden_size;
        seqs.iter()
            .map(|ids| {
                if ids.is_empty() {
                    return vec![0.0; h];
                }
                let n = ids.len();
                let hidden = self.forward_inference(&Input::single(ids, 0), None, None);
                let rows = crate::backend::host_f32(hidden.reshape([n, h]));
                if last {
                    return rows[(n - 1) * h..].to_vec();
                }
                let mut mean = vec![0.0f32; h];
                for row in rows.chunks(h) {
                    mean.iter_mut().zip(row).for_each(|(m, x)| *m += x);
                }
                mean.iter_mut().for_each(|m| *m /= n as f32);
                mean
            })
            .collect()
    }

    /// Whether continuation scoring runs on the host kernels ([`HostDecoder::pass_packed`])
    /// rather than through burn's f32 gemm: on a model with quantised blocks, on the AVX2 path.
    /// Chosen by measurement (TruthfulQA MC, 100 questions, 2 threads): on this AVX-512
    /// machine gemm's AVX-512 kernels took 21.4 s and the host's 22.4, so gemm stays there;
    /// the host's AVX2 kernels took 25.2 s, and on an AVX2 CPU gemm runs its narrower kernels
    /// too. The portable kernels have no panel for many inputs; gemm stays there as well.
    pub fn scores_on_host(&self) -> bool {
        self.quantized.is_some() && crate::cpu::CpuPath::active() == crate::cpu::CpuPath::Avx2
    }

    /// Whether gradient-free inference multiplies from quantised blocks.
    pub fn has_quantized_inference(&self) -> bool {
        self.quantized.is_some()
    }

    /// A copy that always multiplies by the f32 weights (for comparisons).
    pub fn without_quantized(&self) -> Self {
        Self {
            quantized: None,
            ..self.clone()
        }
    }

    fn run(
        &self,
        input: &Input,
        mut cache: Option<&mut KvCache>,
        adapters: Option<&Adapters>,
        mut dropout: Option<&mut DropoutMasks>,
        quant: Option<&Quantized>,
    ) -> Tensor<3> {
        let c = &self.config;
        let (b, t) = (input.batch, input.seq);
        let past = cache.as_ref().map_or(0, |k| k.len);
        let dev = &self.device;
        let ids = Tensor::<1, Int>::from_data(
            TensorData::new(input.ids.iter().map(|&i| i64::from(i)).collect(), [b * t]),
            dev,
        );
        let pos = Tensor::<1, Int>::from_data(
            TensorData::new(input.positions.iter().map(|&p| p as i64).collect(), [b * t]),
            dev,
        );
        let hd = c.head_dim;
        let cos = self
            .cos
            .clone()
            .select(0, pos.clone())
            .reshape([b, 1, t, hd]);
        let sin = self.sin.clone().select(0, pos).reshape([b, 1, t, hd]);
        let rep = c.num_heads / c.num_kv_heads;
        let mask = self.mask(input, past, rep);
        let mut x = self
            .embed
            .clone()
            .select(0, ids)
            .reshape([b * t, c.hidden_size]);
        if let Some(cache) = cache.as_deref_mut()
            && cache.layers.len() != self.blocks.len()
        {
            cache.layers = vec![None; self.blocks.len()];
        }
        let (nh, nkv) = (c.num_heads, c.num_kv_heads);
        let scale_attn = 1.0 / (hd as f64).sqrt();
        for (li, blk) in self.blocks.iter().enumerate() {
            let lora = adapters.map(|a| &a.layers[li]);
            // The quantised blocks serve this call only for few token rows (see QUANT_MAX_ROWS).
            let qb = quant
                .filter(|_| b * t <= QUANT_MAX_ROWS)
                .map(|q| &q.blocks[li]);
            let base = |x: &Tensor<2>, w: &Dense, q: Option<&QMatrix>| match q {
                Some(q) => self.qmatmul(x, q),
                None => dense_products(&[(x, w)]).remove(0),
            };
            let scale = adapters.map_or(0.0, |a| a.scale);
            let xn = rms_norm(x.clone(), &blk.attn_norm, c.rms_eps);
            let mut drop = |cols: usize| dropout.as_deref_mut().map(|d| d.next(cols));
            // With the quantised blocks, Q/K/V come from one stacked product.
            let fused = qb.map(|qb| self.qmatmul(&xn, &qb.qkv));
            let (qw, kvw) = (nh * hd, nkv * hd);
            let (q_base, k_base, v_base) = match fused {
                Some(f) => (
                    f.clone().narrow(1, 0, qw),
                    f.clone().narrow(1, qw, kvw),
                    f.narrow(1, qw + kvw, kvw),
                ),
                None => {
                    let mut p = dense_products(&[(&xn, &blk.wq), (&xn, &blk.wk), (&xn, &blk.wv)])
                        .into_iter();
                    let mut next = || p.next().expect("three products");
                    (next(), next(), next())
                }
            };
            let q = project(
                q_base,
                xn.clone(),
                lora.and_then(|l| l.q.as_ref()),
                scale,
                drop(c.hidden_size),
            );
            let k = project(
                k_base,
                xn.clone(),
                lora.and_then(|l| l.k.as_ref()),
                scale,
                drop(c.hidden_size),
            );
            let v = project(
                v_base,
                xn,
                lora.and_then(|l| l.v.as_ref()),
                scale,
                drop(c.hidden_size),
            );
            let q = rope(q.reshape([b, t, nh, hd]).swap_dims(1, 2), &cos, &sin);
            let mut k = rope(k.reshape([b, t, nkv, hd]).swap_dims(1, 2), &cos, &sin);
            let mut v = v.reshape([b, t, nkv, hd]).swap_dims(1, 2);
            if let Some(cache) = cache.as_deref_mut() {
                if let Some((pk, pv)) = cache.layers[li].take() {
                    k = Tensor::cat(vec![pk, k], 2);
                    v = Tensor::cat(vec![pv, v], 2);
                }
                cache.layers[li] = Some((k.clone(), v.clone()));
            }
            // Grouped-query attention without copying keys and values per query head: the
            // `rep` query heads that share a key/value head become `rep * t` rows against it.
            // Scores come out transposed, `[.., keys, queries]`, so that the cached keys are
            // multiplied where they lie and only the few query rows are transposed.
            let q = q.reshape([b, nkv, rep * t, hd]);
            let mut scores = k.matmul(q.swap_dims(2, 3)) * scale_attn;
            if let Some(m) = &mask {
                scores = scores + m.clone();
            }
            let att = activation::softmax(scores, 2)
                .swap_dims(2, 3)
                .matmul(v)
                .reshape([b, nh, t, hd]);
            let att = att.swap_dims(1, 2).reshape([b * t, nh * hd]);
            x = x + project(
                base(&att, &blk.wo, qb.map(|b| &b.o)),
                att,
                lora.and_then(|l| l.o.as_ref()),
                scale,
                drop(nh * hd),
            );
            let xn = rms_norm(x.clone(), &blk.ffn_norm, c.rms_eps);
            let (gate, up) = match qb {
                Some(qb) => {
                    let f = self.qmatmul(&xn, &qb.gate_up);
                    let i = c.intermediate_size;
                    (f.clone().narrow(1, 0, i), f.narrow(1, i, i))
                }
                None => {
                    let mut p = dense_products(&[(&xn, &blk.w_gate), (&xn, &blk.w_up)]);
                    let up = p.pop().expect("two products");
                    (p.pop().expect("two products"), up)
                }
            };
            let gate = activation::silu(gate);
            x = x + base(&(gate * up), &blk.w_down, qb.map(|b| &b.down));
        }
        if let Some(cache) = cache {
            cache.len += t;
        }
        rms_norm(x, &self.norm, c.rms_eps).reshape([b, t, c.hidden_size])
    }

    /// Logits of hidden states `[n, hidden]` -> `[n, vocab]`.
    pub fn logits(&self, hidden: Tensor<2>) -> Tensor<2> {
        hidden.matmul(self.head.clone())
    }

    /// [`Llama::logits`] without gradients (from the quantised head where there is one).
    pub fn logits_inference(&self, hidden: Tensor<2>) -> Tensor<2> {
        match &self.quantized {
            Some(q) if hidden.dims()[0] <= QUANT_MAX_ROWS => self.qmatmul(&hidden, &q.head),
            _ => self.logits(hidden),
        }
    }

    fn qmatmul(&self, x: &Tensor<2>, q: &QMatrix) -> Tensor<2> {
        let [n, _] = x.dims();
        let host = crate::backend::host_f32(x.clone());
        let y = q.matmul(&host, n);
        Tensor::from_data(
            TensorData::new(y, [n, q.rows()]),
            (&self.device, DType::F32),
        )
    }

    /// The additive attention mask `[batch, 1, past + seq, rep * seq]` (keys by the query rows
    /// of the `rep` heads sharing a key/value head, one after the other), or `None` when nothing
    /// is hidden (one new token of unpadded rows).
    fn mask(&self, input: &Input, past: usize, rep: usize) -> Option<Tensor<4>> {
        let (b, t) = (input.batch, input.seq);
        let s = past + t;
        if t == 1 && input.key_valid.is_none() && input.attend.is_none() {
            return None;
        }
        let mut m = vec![0.0f32; b * t * s];
        for r in 0..b {
            for q in 0..t {
                for k in 0..s {
                    let visible = match &input.attend {
                        Some(a) => a[(r * t + q) * s + k],
                        None => {
                            k <= past + q && input.key_valid.as_ref().is_none_or(|v| v[r * s + k])
                        }
                    };
                    if !visible {
                        m[(r * t + q) * s + k] = MASKED;
                    }
                }
            }
        }
        // Transposed, as the scores: `[b, 1, s, rep * t]`.
        let mut out = vec![0.0f32; b * s * rep * t];
        for r in 0..b {
            for k in 0..s {
                for g in 0..rep {
                    for q in 0..t {
                        out[((r * s + k) * rep + g) * t + q] = m[(r * t + q) * s + k];
                    }
                }
            }
        }
        Some(Tensor::from_data(
            TensorData::new(out, [b, 1, s, rep * t]),
            (&self.device, DType::F32),
        ))
    }
}

/// Rotate-half RoPE (Hugging Face's layout) of `[b, heads, t, hd]` with per-token tables.
fn rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let hd = x.dims()[3];
    let x1 = x.clone().narrow(3, 0, hd / 2);
    let x2 = x.clone().narrow(3, hd / 2, hd / 2);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}

fn rope_tables(c: &LlamaConfig, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let inv = c.inv_freq();
    let n = c.max_position.min(MAX_ROPE_POSITIONS);
    let hd = c.head_dim;
    let (mut cos, mut sin) = (vec![0.0f32; n * hd], vec![0.0f32; n * hd]);
    for p in 0..n {
        for (i, f) in inv.iter().enumerate() {
            // The angle in f32 as transformers computes it (position * inv_freq in float32).
            let angle = (p as f32) * (*f as f32);
            for j in [i, i + hd / 2] {
                cos[p * hd + j] = angle.cos();
                sin[p * hd + j] = angle.sin();
            }
        }
    }
    let t = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [n, hd]), (device, DType::F32));
    (t(cos), t(sin))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Column parts multiply (and take a LoRA fold) exactly as the whole matrix does.
    #[test]
    fn split_weights_equal_the_whole_matrix() {
        let dev = crate::backend::device(crate::BackendKind::Flex, false).unwrap();
        let (out, inp, n) = (400, 48, 11);
        let host = HostTensor {
            data: (0..out * inp)
                .map(|i| ((i * 7919) % 113) as f32 / 113.0 - 0.5)
                .collect(),
            shape: vec![out, inp],
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let (mut split, mut whole) = pool.install(|| {
            (
                Dense::new(host.clone(), &dev, true),
                Dense::new(host.clone(), &dev, false),
            )
        });
        assert_eq!(
            split.parts.len(),
            4,
            "400 outputs in parts of at most 192, even count"
        );
        assert_eq!(whole.parts.len(), 1);
        let x: Tensor<2> = Tensor::from_data(
            TensorData::new((0..n * inp).map(|i| (i as f32).sin()).collect(), [n, inp]),
            (&dev, DType::F32),
        );
        let delta: Tensor<2> = Tensor::from_data(
            TensorData::new(
                (0..inp * out).map(|i| (i as f32).cos()).collect(),
                [inp, out],
            ),
            (&dev, DType::F32),
        );
        for step in 0..2 {
            let (a, b) = pool.install(|| {
                (
                    dense_products(&[(&x, &split)]).remove(0),
                    dense_products(&[(&x, &whole)]).remove(0),
                )
            });
            assert_eq!(a.dims(), [n, out]);
            let (a, b) = (crate::backend::host_f32(a), crate::backend::host_f32(b));
            let worst = a
                .iter()
                .zip(&b)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max);
            assert!(worst < 1e-5, "step {step}: {worst}");
            split.add(delta.clone());
            whole.add(delta.clone());
        }
    }
}
