//! The LoRA policy step on the host: the mean NLL of one sequence and its gradient with respect
//! to every adapter, from a forward pass that keeps what the backward needs and a backward
//! written out by hand, on the training copy's own f32 weights.
//!
//! Why: through burn's autodiff the step is ~60 small tensor ops per layer forward and more
//! backward, most on one thread, and each product one gemm call that splits a `80 x 576 x 1536`
//! product across two threads poorly (see [`super::dense`]). Here every product runs in column
//! parts of a fixed width on rayon's threads (each part one single-threaded gemm call), the
//! attention of each head is a task, and nothing is recorded for the frozen weights. The
//! formulas are the burn path's ([`Llama::forward`] with adapters and dropout): RMSNorm `x /
//! sqrt(mean(x²) + eps) * w`, rotate-half RoPE from the same `f32` angles, causal softmax
//! attention, SiLU, `base + scale * (drop(x) A) B`, and the dropout masks drawn in the same
//! order (q, k, v, o per layer). Only summation orders differ: the
//! `host_step_equals_burn_autodiff` test holds the two together. The column parts' width does
//! not depend on the thread count, so neither do the results.

use burn::module::Param;
use burn::optim::GradientsParams;
use burn::tensor::{DType, Int, Tensor, TensorData};
use rayon::prelude::*;

use super::Llama;
use super::host::{HostLora, dot, rope, rope_tables};
use crate::llm::exp::exp_in_place;
use crate::llm::lora::{Adapters, DropoutMasks};
use crate::llm::panels::Packed;

/// One block's f32 weights, as the training copy holds them.
struct Layer {
    q: Weight,
    k: Weight,
    v: Weight,
    o: Weight,
    gate: Weight,
    up: Weight,
    down: Weight,
    attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
}

/// The training copy's weights on the host, for [`HostStep::nll_gradients`].
pub struct HostStep {
    model: Llama,
    layers: Vec<Layer>,
    /// `[hidden, vocab]`.
    head: Weight,
    norm: Vec<f32>,
}

impl std::fmt::Debug for HostStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostStep")
            .field("layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

/// The gradient of one adapter: `dA` `[in, r]`, `dB` `[r, out]`.
#[derive(Debug, Clone)]
pub struct AdapterGradient {
    /// Of `A`.
    pub a: Vec<f32>,
    /// Of `B`.
    pub b: Vec<f32>,
}

/// The result of [`HostStep::nll_gradients`].
#[derive(Debug, Clone)]
pub struct StepGradients {
    /// `log p(token_t | tokens_<t)` for `t = 1..len`.
    pub logprobs: Vec<f32>,
    /// Per layer, the gradients of the mean NLL on the adapters of q, k, v, o (where there are
    /// adapters).
    pub layers: Vec<[Option<AdapterGradient>; 4]>,
}

impl StepGradients {
    /// The mean NLL `-mean(logprobs)`.
    pub fn mean_nll(&self) -> f32 {
        -(self.logprobs.iter().sum::<f32>() / self.logprobs.len() as f32)
    }

    /// The gradients times `factor` as burn's optimisers take them, keyed by the parameter ids
    /// of `adapters` (the adapters the gradients were computed for).
    pub fn to_params(&self, adapters: &Adapters, factor: f32) -> GradientsParams {
        let mut out = GradientsParams::new();
        let put = |out: &mut GradientsParams, p: &Param<Tensor<2>>, g: &[f32]| {
            let t = p.val();
            let dims = t.dims();
            let device = t.inner().device();
            let data: Vec<f32> = g.iter().map(|v| v * factor).collect();
            out.register(
                p.id,
                Tensor::<2>::from_data(TensorData::new(data, dims), (&device, DType::F32)),
            );
        };
        for (layer, grads) in adapters.layers.iter().zip(&self.layers) {
            for (pair, g) in [&layer.q, &layer.k, &layer.v, &layer.o].iter().zip(grads) {
                if let (Some(pair), Some(g)) = (pair, g) {
                    put(&mut out, &pair.a, &g.a);
                    put(&mut out, &pair.b, &g.b);
                }
            }
        }
        out
    }
}

/// What the backward of one block needs from its forward.
struct Saved {
    /// The block's input and its RMS, per token.
    x_in: Vec<f32>,
    rms_attn: Vec<f32>,
    /// Dropout masks of the adapters' inputs (q, k, v, o).
    masks: [Option<Vec<f32>>; 4],
    /// Per adapter, its input after dropout `drop(x)` and `drop(x) A`.
    lora_in: [Option<(Vec<f32>, Vec<f32>)>; 4],
    /// Queries and keys after RoPE, values: `[t, heads * hd]` each.
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Attention probabilities, `[heads, t, t]` (zero above the diagonal).
    probs: Vec<f32>,
    /// The residual stream after attention and its RMS.
    x_mid: Vec<f32>,
    rms_ffn: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
}

/// A projection's f32 weights `[in, out]`, packed for the forward product and, transposed, for
/// the backward one.
struct Weight {
    fwd: Packed,
    bwd: Packed,
}

impl Weight {
    /// From `w` `[inp, out]`, row-major.
    fn new(w: &[f32], inp: usize, out: usize) -> Self {
        Self {
            fwd: Packed::new(w, inp, out),
            bwd: Packed::transposed(w, inp, out),
        }
    }

    /// `x W` for `x` `[t, inp]`.
    fn forward(&self, x: &[f32], t: usize) -> Vec<f32> {
        self.fwd.left_mul(x, t)
    }

    /// `dy Wᵀ` for `dy` `[t, out]`.
    fn backward(&self, dy: &[f32], t: usize) -> Vec<f32> {
        self.bwd.left_mul(dy, t)
    }
}

/// `a · b` of the adapters' small matrices on the host, `a` `[m, k]` or, with `a_t`, its
/// transpose stored `[k, m]`; likewise `b` `[k, n]` or `[n, k]` with `b_t`.
fn small(a: &[f32], a_t: bool, b: &[f32], b_t: bool, (m, k, n): (usize, usize, usize)) -> Vec<f32> {
    let a = if a_t { transpose(a, k, m) } else { a.to_vec() };
    let b = if b_t {
        Packed::transposed(b, n, k)
    } else {
        Packed::new(b, k, n)
    };
    b.left_mul(&a, m)
}

/// `x` `[rows, cols]` transposed.
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    for (r, row) in x.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
    out
}

/// RMSNorm per row: the output and each row's RMS.
fn rms_norm(x: &[f32], w: &[f32], eps: f64) -> (Vec<f32>, Vec<f32>) {
    let h = w.len();
    let mut out = vec![0.0f32; x.len()];
    let mut rms = vec![0.0f32; x.len() / h];
    for ((xi, oi), r) in x.chunks_exact(h).zip(out.chunks_exact_mut(h)).zip(&mut rms) {
        let ms = xi.iter().map(|v| v * v).sum::<f32>() / h as f32;
        *r = (ms + eps as f32).sqrt();
        for ((o, &v), &g) in oi.iter_mut().zip(xi).zip(w) {
            *o = (v / *r) * g;
        }
    }
    (out, rms)
}

/// Adds the gradient through `y = x / rms * w` to `dx`, from `dy`.
fn rms_norm_backward(x: &[f32], rms: &[f32], w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let h = w.len();
    for (((xi, &r), dyi), dxi) in x
        .chunks_exact(h)
        .zip(rms)
        .zip(dy.chunks_exact(h))
        .zip(dx.chunks_exact_mut(h))
    {
        let inv = 1.0 / r;
        let s: f32 = xi.iter().zip(dyi).zip(w).map(|((x, d), w)| x * d * w).sum();
        let c = s * inv * inv * inv / h as f32;
        for (((o, &x), &d), &g) in dxi.iter_mut().zip(xi).zip(dyi).zip(w) {
            *o += g * d * inv - x * c;
        }
    }
}

/// The gradient through rotate-half RoPE of one head, in place: `y1 = x1 cos - x2 sin`, `y2 =
/// x2 cos + x1 sin`, so `dx1 = dy1 cos + dy2 sin`, `dx2 = dy2 cos - dy1 sin`.
fn rope_backward(d: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = d.len() / 2;
    let (d1, d2) = d.split_at_mut(half);
    for j in 0..half {
        let (a, b) = (d1[j], d2[j]);
        d1[j] = a * cos[j] + b * sin[j];
        d2[j] = b * cos[j] - a * sin[j];
    }
}

/// `a += b`.
fn add(a: &mut [f32], b: &[f32]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// `f(head, cos, sin)` for every `hd`-wide head of every token of `x` (`[t, heads * hd]`), with
/// the token's RoPE tables (`cos`, `sin`: `[t, hd / 2]`).
fn each_head(
    x: &mut [f32],
    hd: usize,
    cos: &[f32],
    sin: &[f32],
    f: fn(&mut [f32], &[f32], &[f32]),
) {
    let half = hd / 2;
    let width = x.len() / (cos.len() / half);
    for ((row, c), s) in x
        .chunks_exact_mut(width)
        .zip(cos.chunks_exact(half))
        .zip(sin.chunks_exact(half))
    {
        for head in row.chunks_exact_mut(hd) {
            f(head, c, s);
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Llama {
    /// The host policy step for this model, or `None` where it does not run on the host (a GPU
    /// backend). Copies the f32 weights once (a training copy: one part per projection).
    pub fn host_step(&self) -> Option<HostStep> {
        if !crate::backend::on_host(&self.device) {
            return None;
        }
        let whole = |d: &super::Dense| {
            // Column parts (a CPU inference copy) back to one `[in, out]` matrix.
            let rows = d.parts[0].dims()[0];
            let total: usize = d.parts.iter().map(|p| p.dims()[1]).sum();
            let mut out = vec![0.0f32; rows * total];
            let mut at = 0;
            for p in &d.parts {
                let w = p.dims()[1];
                let part = crate::backend::host_f32(p.clone().detach());
                for (o, r) in out.chunks_exact_mut(total).zip(part.chunks_exact(w)) {
                    o[at..at + w].copy_from_slice(r);
                }
                at += w;
            }
            Weight::new(&out, rows, total)
        };
        let host = |t: &Tensor<1>| crate::backend::host_f32(t.clone().detach());
        // Layers on rayon's threads: copied and packed one after another, the packing's own
        // parallel loops left one thread waiting on each layer's copies.
        let layers = self
            .blocks
            .par_iter()
            .map(|b| Layer {
                q: whole(&b.wq),
                k: whole(&b.wk),
                v: whole(&b.wv),
                o: whole(&b.wo),
                gate: whole(&b.w_gate),
                up: whole(&b.w_up),
                down: whole(&b.w_down),
                attn_norm: host(&b.attn_norm),
                ffn_norm: host(&b.ffn_norm),
            })
            .collect();
        let [h, vocab] = self.head.dims();
        let head = crate::backend::host_f32(self.head.clone().detach());
        Some(HostStep {
            model: self.clone(),
            layers,
            head: Weight::new(&head, h, vocab),
            norm: host(&self.norm),
        })
    }
}

impl HostStep {
    /// `log p(token_t | tokens_<t)` of `seq` (at positions `0..len`) through the model with
    /// `adapters`, and the gradient of the mean NLL with respect to each adapter. `dropout`
    /// masks the adapters' inputs as [`Llama::forward`] does, drawing the same masks.
    ///
    /// # Panics
    /// If `seq` has fewer than two tokens or `adapters` do not fit the model.
    pub fn nll_gradients(
        &self,
        seq: &[u32],
        adapters: &Adapters,
        mut dropout: Option<&mut DropoutMasks>,
    ) -> StepGradients {
        let c = &self.model.config;
        let t = seq.len();
        assert!(t >= 2, "host step: a sequence of {t} tokens");
        assert_eq!(
            adapters.layers.len(),
            self.layers.len(),
            "host step: adapters"
        );
        let (h, nh, nkv, hd) = (c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim);
        let (qw, kvw, rep, inter) = (nh * hd, nkv * hd, nh / nkv, c.intermediate_size);
        let scale = adapters.scale as f32;
        let scale_attn = (1.0 / (hd as f64).sqrt()) as f32;
        let positions: Vec<usize> = (0..t).collect();
        let (cos, sin) = rope_tables(c, &positions);
        let lora: Vec<[Option<HostLora>; 4]> = adapters
            .layers
            .iter()
            .map(|l| [&l.q, &l.k, &l.v, &l.o].map(|p| p.as_ref().map(HostLora::new)))
            .collect();
        let ids = Tensor::<1, Int>::from_data(
            TensorData::new(seq.iter().map(|&i| i64::from(i)).collect(), [t]),
            self.model.device(),
        );
        let mut x = crate::backend::host_f32(self.model.embed.clone().select(0, ids).detach());

        // Forward, keeping what the backward reads.
        let mut saved = Vec::with_capacity(self.layers.len());
        for (w, ad) in self.layers.iter().zip(&lora) {
            let (xn, rms_attn) = rms_norm(&x, &w.attn_norm, c.rms_eps);
            let mut masks: [Option<Vec<f32>>; 4] = Default::default();
            if let Some(d) = dropout.as_deref_mut() {
                for (m, cols) in masks.iter_mut().zip([h, h, h, qw]) {
                    *m = Some(d.next_host(cols));
                }
            }
            let mut lora_in: [Option<(Vec<f32>, Vec<f32>)>; 4] = Default::default();
            let mut proj = |slot: usize, input: &[f32], inp: usize, base: Vec<f32>| {
                let mut y = base;
                if let Some(a) = &ad[slot] {
                    let out = y.len() / t;
                    let xd: Vec<f32> = match &masks[slot] {
                        Some(m) => input.iter().zip(m).map(|(x, m)| x * m).collect(),
                        None => input.to_vec(),
                    };
                    let ui = small(&xd, false, &a.a, false, (t, inp, a.rank));
                    let delta = small(&ui, false, &a.b, false, (t, a.rank, out));
                    for (yv, dv) in y.iter_mut().zip(&delta) {
                        *yv += dv * scale;
                    }
                    lora_in[slot] = Some((xd, ui));
                }
                y
            };
            let mut q = proj(0, &xn, h, w.q.forward(&xn, t));
            let mut k = proj(1, &xn, h, w.k.forward(&xn, t));
            let v = proj(2, &xn, h, w.v.forward(&xn, t));
            each_head(&mut q, hd, &cos, &sin, rope);
            each_head(&mut k, hd, &cos, &sin, rope);
            // Causal attention, one task per query head: probabilities and output `[t, hd]`.
            let heads: Vec<(Vec<f32>, Vec<f32>)> = (0..nh)
                .into_par_iter()
                .map(|hi| {
                    let g = hi / rep;
                    let mut p = vec![0.0f32; t * t];
                    let mut o = vec![0.0f32; t * hd];
                    for i in 0..t {
                        let qi = &q[i * qw + hi * hd..i * qw + (hi + 1) * hd];
                        let row = &mut p[i * t..i * t + i + 1];
                        let mut max = f32::NEG_INFINITY;
                        for (j, s) in row.iter_mut().enumerate() {
                            *s = dot(qi, &k[j * kvw + g * hd..j * kvw + (g + 1) * hd]) * scale_attn;
                            max = max.max(*s);
                        }
                        for s in row.iter_mut() {
                            *s -= max;
                        }
                        exp_in_place(row);
                        let mut sum = 0.0f32;
                        for s in row.iter() {
                            sum += *s;
                        }
                        let oi = &mut o[i * hd..(i + 1) * hd];
                        for (j, s) in row.iter_mut().enumerate() {
                            *s /= sum;
                            let vj = &v[j * kvw + g * hd..j * kvw + (g + 1) * hd];
                            for (ov, &vv) in oi.iter_mut().zip(vj) {
                                *ov += *s * vv;
                            }
                        }
                    }
                    (p, o)
                })
                .collect();
            let mut att = vec![0.0f32; t * qw];
            let mut probs = Vec::with_capacity(nh * t * t);
            for (hi, (p, o)) in heads.into_iter().enumerate() {
                for i in 0..t {
                    att[i * qw + hi * hd..i * qw + (hi + 1) * hd]
                        .copy_from_slice(&o[i * hd..(i + 1) * hd]);
                }
                probs.extend(p);
            }
            let o = proj(3, &att, qw, w.o.forward(&att, t));
            let x_in = std::mem::take(&mut x);
            x = x_in.iter().zip(&o).map(|(a, b)| a + b).collect();
            let (xn2, rms_ffn) = rms_norm(&x, &w.ffn_norm, c.rms_eps);
            let gate = w.gate.forward(&xn2, t);
            let up = w.up.forward(&xn2, t);
            let act: Vec<f32> = gate
                .par_iter()
                .zip(&up)
                .with_min_len(inter)
                .map(|(&g, &u)| g * sigmoid(g) * u)
                .collect();
            let down = w.down.forward(&act, t);
            let x_mid = x.clone();
            for (xv, dv) in x.iter_mut().zip(&down) {
                *xv += dv;
            }
            saved.push(Saved {
                x_in,
                rms_attn,
                masks,
                lora_in,
                q,
                k,
                v,
                probs,
                x_mid,
                rms_ffn,
                gate,
                up,
            });
        }
        let n = t - 1;
        let (xf, rms_f) = rms_norm(&x, &self.norm, c.rms_eps);
        let vocab = self.head.fwd.n();
        let mut logits = self.head.forward(&xf[..n * h], n);
        // Log-softmax; the logits become the gradient of the mean NLL, `(softmax - onehot) / n`.
        let mut logprobs = vec![0.0f32; n];
        logits
            .par_chunks_mut(vocab)
            .zip(&mut logprobs)
            .enumerate()
            .for_each(|(i, (row, lp))| {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let target = seq[i + 1] as usize;
                let picked = row[target] - max;
                // The sum over the vocabulary in f64: in f32, one after the other, its rounding
                // reached 1e-4 in the log-probs.
                for l in row.iter_mut() {
                    *l -= max;
                }
                exp_in_place(row);
                let mut sum = 0.0f64;
                for l in row.iter() {
                    sum += f64::from(*l);
                }
                *lp = picked - sum.ln() as f32;
                let scale = (1.0 / (sum * n as f64)) as f32;
                for l in row.iter_mut() {
                    *l *= scale;
                }
                row[target] -= 1.0 / n as f32;
            });

        // Backward.
        let mut dxf = self.head.backward(&logits, n);
        dxf.resize(t * h, 0.0);
        drop(logits);
        let mut dx = vec![0.0f32; t * h];
        rms_norm_backward(&x, &rms_f, &self.norm, &dxf, &mut dx);
        let mut grads: Vec<[Option<AdapterGradient>; 4]> =
            (0..self.layers.len()).map(|_| Default::default()).collect();
        for (li, s) in saved.into_iter().enumerate().rev() {
            let (w, ad) = (&self.layers[li], &lora[li]);
            // An adapter's backward from `dy` (`[t, out]`) of its slot: its gradients, and
            // `scale * (dy Bᵀ) Aᵀ ⊙ mask` added to `dinput` (`[t, inp]`).
            let mut adapter_backward = |slot: usize, dy: &[f32], dinput: &mut [f32]| {
                let (Some(a), Some((xd, u))) = (&ad[slot], &s.lora_in[slot]) else {
                    return;
                };
                let (r, out, inp) = (a.rank, dy.len() / t, xd.len() / t);
                let gb = small(u, true, dy, false, (r, t, out));
                let dv = small(dy, false, &a.b, true, (t, out, r));
                let ga = small(xd, true, &dv, false, (inp, t, r));
                let dxd = small(&dv, false, &a.a, true, (t, r, inp));
                match &s.masks[slot] {
                    Some(m) => {
                        for ((d, g), m) in dinput.iter_mut().zip(&dxd).zip(m) {
                            *d += scale * g * m;
                        }
                    }
                    None => {
                        for (d, g) in dinput.iter_mut().zip(&dxd) {
                            *d += scale * g;
                        }
                    }
                }
                grads[li][slot] = Some(AdapterGradient {
                    a: ga.iter().map(|g| g * scale).collect(),
                    b: gb.iter().map(|g| g * scale).collect(),
                });
            };
            // MLP: `x_out = x_mid + (silu(gate) ⊙ up) W_down`.
            let dact = w.down.backward(&dx, t);
            let (mut dgate, mut dup) = (vec![0.0f32; t * inter], vec![0.0f32; t * inter]);
            // Per token on rayon's threads (the sigmoids were a tenth of the step on one).
            dgate
                .par_chunks_mut(inter)
                .zip(dup.par_chunks_mut(inter))
                .enumerate()
                .for_each(|(ti, (dg, du))| {
                    let at = ti * inter..(ti + 1) * inter;
                    let (g, u, d) = (&s.gate[at.clone()], &s.up[at.clone()], &dact[at]);
                    for j in 0..inter {
                        let sg = sigmoid(g[j]);
                        du[j] = d[j] * g[j] * sg;
                        dg[j] = d[j] * u[j] * sg * (1.0 + g[j] * (1.0 - sg));
                    }
                });
            let mut dxn = w.gate.backward(&dgate, t);
            add(&mut dxn, &w.up.backward(&dup, t));
            rms_norm_backward(&s.x_mid, &s.rms_ffn, &w.ffn_norm, &dxn, &mut dx);
            // Attention output projection: `x_mid = x_in + o(att)`.
            let mut datt = w.o.backward(&dx, t);
            adapter_backward(3, &dx, &mut datt);
            // Attention, per query head: `dq` of the head, `dk` and `dv` towards its group.
            let heads: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = (0..nh)
                .into_par_iter()
                .map(|hi| {
                    let g = hi / rep;
                    let p = &s.probs[hi * t * t..(hi + 1) * t * t];
                    let (mut dq, mut dk, mut dv) = (
                        vec![0.0f32; t * hd],
                        vec![0.0f32; t * hd],
                        vec![0.0f32; t * hd],
                    );
                    let mut ds = vec![0.0f32; t];
                    for i in 0..t {
                        let doi = &datt[i * qw + hi * hd..i * qw + (hi + 1) * hd];
                        let pi = &p[i * t..i * t + i + 1];
                        let mut inner = 0.0f32;
                        for (j, (&pj, d)) in pi.iter().zip(&mut ds).enumerate() {
                            *d = dot(doi, &s.v[j * kvw + g * hd..j * kvw + (g + 1) * hd]);
                            inner += pj * *d;
                        }
                        let qi = &s.q[i * qw + hi * hd..i * qw + (hi + 1) * hd];
                        let dqi = &mut dq[i * hd..(i + 1) * hd];
                        for (j, &pj) in pi.iter().enumerate() {
                            let dsj = pj * (ds[j] - inner) * scale_attn;
                            let kj = &s.k[j * kvw + g * hd..j * kvw + (g + 1) * hd];
                            for (a, &b) in dqi.iter_mut().zip(kj) {
                                *a += dsj * b;
                            }
                            for (a, &b) in dk[j * hd..(j + 1) * hd].iter_mut().zip(qi) {
                                *a += dsj * b;
                            }
                            for (a, &b) in dv[j * hd..(j + 1) * hd].iter_mut().zip(doi) {
                                *a += pj * b;
                            }
                        }
                    }
                    (dq, dk, dv)
                })
                .collect();
            let (mut dq, mut dk, mut dv) = (
                vec![0.0f32; t * qw],
                vec![0.0f32; t * kvw],
                vec![0.0f32; t * kvw],
            );
            // Summed over the heads of a group in head order (fixed, whatever the threads).
            for (hi, (hq, hk, hv)) in heads.iter().enumerate() {
                let g = hi / rep;
                for i in 0..t {
                    dq[i * qw + hi * hd..i * qw + (hi + 1) * hd]
                        .copy_from_slice(&hq[i * hd..(i + 1) * hd]);
                    for (a, b) in dk[i * kvw + g * hd..i * kvw + (g + 1) * hd]
                        .iter_mut()
                        .zip(&hk[i * hd..(i + 1) * hd])
                    {
                        *a += b;
                    }
                    for (a, b) in dv[i * kvw + g * hd..i * kvw + (g + 1) * hd]
                        .iter_mut()
                        .zip(&hv[i * hd..(i + 1) * hd])
                    {
                        *a += b;
                    }
                }
            }
            each_head(&mut dq, hd, &cos, &sin, rope_backward);
            each_head(&mut dk, hd, &cos, &sin, rope_backward);
            // Q, K, V projections from the attention norm's output.
            let mut dxn = w.q.backward(&dq, t);
            add(&mut dxn, &w.k.backward(&dk, t));
            add(&mut dxn, &w.v.backward(&dv, t));
            adapter_backward(0, &dq, &mut dxn);
            adapter_backward(1, &dk, &mut dxn);
            adapter_backward(2, &dv, &mut dxn);
            rms_norm_backward(&s.x_in, &s.rms_attn, &w.attn_norm, &dxn, &mut dx);
        }
        StepGradients {
            logprobs,
            layers: grads,
        }
    }
}
