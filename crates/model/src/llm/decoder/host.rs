//! Inference on the host: a generation's prefill (every prompt token of the batch in one pass),
//! each decoding step, and the passes of scoring run straight from the quantised blocks on plain
//! slices, with a key/value cache allocated once for the whole generation.
//!
//! Why: a decoding step through burn is ~30 small tensor ops per layer (~900 per token); on a
//! CPU their dispatch, and the cache's `cat` (a copy of every layer's cache per step), cost as
//! much as the matrix products themselves and run on one thread; a prefill through burn
//! multiplies f32 weights (five times the bytes of the blocks) and runs its other ops on one
//! thread. Here a pass is the quantised products (split across threads, see
//! [`crate::llm::quant`]) plus a few loops, shared across threads when they are large. The formulas
//! are the burn path's (RMSNorm `x / sqrt(mean(x²) + eps) * w`, rotate-half RoPE from the same
//! `f32` angles, softmax over the visible keys, SiLU); only summation orders differ, and the
//! `host_decoding_equals_burn_decoding` test holds the two together. Every sum runs in a fixed
//! order on one thread, so results do not depend on the thread count.

use burn::tensor::{Int, Tensor, TensorData};
use rayon::prelude::*;

use super::{Llama, Quantized};
use crate::cpu::CpuPath;
use crate::llm::exp::exp_in_place;
use crate::llm::lora::{Adapters, LoraPair};
use crate::llm::quant::QMatrix;

/// One adapter on the host: `A` `[in, r]`, `B` `[r, out]`, row-major.
pub(super) struct HostLora {
    pub(super) a: Vec<f32>,
    pub(super) b: Vec<f32>,
    pub(super) rank: usize,
}

impl HostLora {
    pub(super) fn new(pair: &LoraPair) -> Self {
        let a = pair.a.val().detach();
        let rank = a.dims()[1];
        Self {
            a: crate::backend::host_f32(a),
            b: crate::backend::host_f32(pair.b.val().detach()),
            rank,
        }
    }

    /// `y[..width] += scale * (x A) B` for one row `x` (`[in]`): `x A` summed over `x` in
    /// order, then `u = Σ_r t_r B_r` over the rank in order, then `y += u * scale`; every
    /// multiply and add separate (no fused ones), so each kernel path gives the same bits.
    /// Compiled with 16 lanes on the AVX-512 path, else for AVX2 (or NEON) where the CPU has
    /// it, as the attention is.
    fn add(&self, x: &[f32], y: &mut [f32], scale: f32) {
        if crate::cpu::CpuPath::active() == crate::cpu::CpuPath::Avx512 {
            lora_add_wide(&self.a, &self.b, self.rank, x, y, scale);
        } else {
            lora_add_narrow(&self.a, &self.b, self.rank, x, y, scale);
        }
    }
}

#[multiversion::multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma"))]
fn lora_add_wide(a: &[f32], b: &[f32], rank: usize, x: &[f32], y: &mut [f32], scale: f32) {
    lora_add(a, b, rank, x, y, scale);
}

#[multiversion::multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn lora_add_narrow(a: &[f32], b: &[f32], rank: usize, x: &[f32], y: &mut [f32], scale: f32) {
    lora_add(a, b, rank, x, y, scale);
}

/// Widest output piece [`lora_add`] sums in registers.
const LORA_PIECE: usize = 64;

/// [`HostLora::add`]'s sums: `t = x A` 16 ranks at a time, then `y`'s outputs in pieces of
/// [`LORA_PIECE`], each output summed over the rank in order and scaled once.
#[inline(always)]
fn lora_add(a: &[f32], b: &[f32], rank: usize, x: &[f32], y: &mut [f32], scale: f32) {
    let width = b.len() / rank;
    let (mut on_stack, mut on_heap) = ([0.0f32; 64], Vec::new());
    let t: &mut [f32] = if rank <= on_stack.len() {
        &mut on_stack[..rank]
    } else {
        on_heap.resize(rank, 0.0);
        &mut on_heap
    };
    for r0 in (0..rank).step_by(16) {
        let lanes = (rank - r0).min(16);
        let mut acc = [0.0f32; 16];
        if lanes == 16 {
            for (&xc, arow) in x.iter().zip(a.chunks_exact(rank)) {
                let arow: &[f32; 16] = arow[r0..r0 + 16].try_into().expect("16 ranks");
                for (s, &av) in acc.iter_mut().zip(arow) {
                    *s += xc * av;
                }
            }
        } else {
            for (&xc, arow) in x.iter().zip(a.chunks_exact(rank)) {
                for (s, &av) in acc[..lanes].iter_mut().zip(&arow[r0..r0 + lanes]) {
                    *s += xc * av;
                }
            }
        }
        t[r0..r0 + lanes].copy_from_slice(&acc[..lanes]);
    }
    for (o0, yp) in (0..width)
        .step_by(LORA_PIECE)
        .zip(y[..width].chunks_mut(LORA_PIECE))
    {
        let mut u = [0.0f32; LORA_PIECE];
        let u = &mut u[..yp.len()];
        for (&tr, brow) in t.iter().zip(b.chunks_exact(width)) {
            for (uo, &bv) in u.iter_mut().zip(&brow[o0..o0 + yp.len()]) {
                *uo += tr * bv;
            }
        }
        for (yo, &uo) in yp.iter_mut().zip(u.iter()) {
            *yo += uo * scale;
        }
    }
}

/// Consecutive rows of a host decoder that run with the same adapters.
struct Segment {
    /// Per layer: adapters on q, k, v, o.
    lora: Vec<[Option<HostLora>; 4]>,
    scale: f32,
}

/// Decoding state of one batch: the model, the adapters of each segment of its rows on the host,
/// and the key/value cache.
///
/// Rows in segments (see [`Llama::host_decoder_segments`]): every row computes exactly what it
/// would in a decoder of its own segment alone (batch-invariant products,
/// [`crate::llm::quant::QMatrix::matmul_invariant`]; attention, norms and adapters are per row),
/// while each pass reads the weights once for all of them.
pub struct HostDecoder<'a> {
    model: &'a Llama,
    quant: &'a Quantized,
    segments: Vec<Segment>,
    /// Whether the products are batch-invariant.
    invariant: bool,
    batch: usize,
    /// The rows that passes feed, in order (all of them until [`HostDecoder::keep_rows`]).
    live: Vec<usize>,
    /// Per row, the index of its segment.
    row_segment: Vec<usize>,
    /// Positions held.
    len: usize,
    /// Positions the cache has room for.
    cap: usize,
    /// Per layer, `[batch, kv_heads, cap, head_dim]`.
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    /// `[batch, cap]`: whether each cached position is a real token.
    valid: Vec<bool>,
}

impl std::fmt::Debug for HostDecoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostDecoder")
            .field("batch", &self.batch)
            .field("len", &self.len)
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

/// The keys and values of a context computed on the host (one row, `[kv_heads, len, head_dim]`
/// per layer), to start decoders from ([`Llama::host_decoder_after`]).
#[derive(Debug, Clone)]
pub struct HostPrefix {
    /// Positions held.
    pub len: usize,
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    valid: Vec<bool>,
}

impl Llama {
    /// A one-row host decoder of `cap` positions that holds `prefix` (computed with the same
    /// adapters), or `None` as [`Llama::host_decoder`].
    ///
    /// # Panics
    /// If `cap` is less than the prefix.
    pub fn host_decoder_after(
        &self,
        prefix: &HostPrefix,
        cap: usize,
        adapters: Option<&Adapters>,
    ) -> Option<HostDecoder<'_>> {
        assert!(
            cap >= prefix.len,
            "host decoder: {cap} positions for a longer prefix"
        );
        let mut dec = self.host_decoder(1, cap, adapters)?;
        dec.load_prefix(0, prefix);
        Some(dec)
    }

    /// A host decoder for `batch` rows of up to `cap` positions (prompt and generated tokens),
    /// or `None` where decoding does not run on the host (no quantised blocks: a GPU backend or
    /// a safetensors checkpoint).
    pub fn host_decoder(
        &self,
        batch: usize,
        cap: usize,
        adapters: Option<&Adapters>,
    ) -> Option<HostDecoder<'_>> {
        self.new_host_decoder(&[(batch, adapters)], cap, false)
    }

    /// A host decoder whose rows come in segments, `(rows, adapters)` each, of up to `cap`
    /// positions; or `None` as [`Llama::host_decoder`]. Its products are batch-invariant, so
    /// every row computes what it computes in any other batch of such a decoder, bit for bit:
    /// each segment what it computes alone.
    pub fn host_decoder_segments(
        &self,
        segments: &[(usize, Option<&Adapters>)],
        cap: usize,
    ) -> Option<HostDecoder<'_>> {
        self.new_host_decoder(segments, cap, true)
    }

    fn new_host_decoder(
        &self,
        segments: &[(usize, Option<&Adapters>)],
        cap: usize,
        invariant: bool,
    ) -> Option<HostDecoder<'_>> {
        let quant = self.quantized.as_deref()?;
        let c = &self.config;
        let batch = segments.iter().map(|s| s.0).sum::<usize>();
        let row_segment = segments
            .iter()
            .enumerate()
            .flat_map(|(i, s)| std::iter::repeat_n(i, s.0))
            .collect();
        let cache = || vec![vec![0.0f32; batch * c.num_kv_heads * cap * c.head_dim]; c.num_layers];
        let segments = segments
            .iter()
            .map(|&(_, adapters)| Segment {
                lora: (0..c.num_layers)
                    .map(|li| {
                        let l = adapters.map(|a| &a.layers[li]);
                        [
                            l.and_then(|l| l.q.as_ref()),
                            l.and_then(|l| l.k.as_ref()),
                            l.and_then(|l| l.v.as_ref()),
                            l.and_then(|l| l.o.as_ref()),
                        ]
                        .map(|p| p.map(HostLora::new))
                    })
                    .collect(),
                scale: adapters.map_or(0.0, |a| a.scale as f32),
            })
            .collect();
        Some(HostDecoder {
            model: self,
            quant,
            segments,
            invariant,
            batch,
            live: (0..batch).collect(),
            row_segment,
            len: 0,
            cap,
            keys: cache(),
            values: cache(),
            valid: vec![false; batch * cap],
        })
    }
}

/// `f(row_of_out, row_index)` for each `width`-wide row of `out`, on rayon's threads when there
/// are enough rows to share.
fn for_rows(out: &mut [f32], width: usize, f: impl Fn(&mut [f32], usize) + Sync + Send) {
    let parallel = rayon::current_num_threads() > 1 && out.len() >= 16 * 1024;
    crate::cpu::for_chunks(out, width, parallel, |i, o| f(o, i));
}

/// `x / sqrt(mean(x²) + eps) * w` per row.
fn rms_norm(x: &[f32], w: &[f32], eps: f64) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    for_rows(&mut out, w.len(), |oi, i| {
        let xi = &x[i * w.len()..(i + 1) * w.len()];
        let ms = xi.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
        let rms = (ms + eps as f32).sqrt();
        for ((o, &v), &g) in oi.iter_mut().zip(xi).zip(w) {
            *o = (v / rms) * g;
        }
    });
    out
}

/// Rotate-half RoPE of one head in place: `x * cos + [-x2, x1] * sin`.
pub(super) fn rope(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = x.len() / 2;
    let (x1, x2) = x.split_at_mut(half);
    for j in 0..half {
        let (a, b) = (x1[j], x2[j]);
        x1[j] = a * cos[j] + (-b) * sin[j];
        x2[j] = b * cos[j] + a * sin[j];
    }
}

/// Per position, the RoPE angles' cos and sin, `head_dim / 2` each (the burn path's tables:
/// `p as f32 * inv_freq`).
pub(super) fn rope_tables(
    c: &crate::llm::LlamaConfig,
    positions: &[usize],
) -> (Vec<f32>, Vec<f32>) {
    let inv: Vec<f32> = c.inv_freq().iter().map(|&f| f as f32).collect();
    positions
        .iter()
        .flat_map(|&p| inv.iter().map(move |&f| (p as f32) * f))
        .map(|a| (a.cos(), a.sin()))
        .unzip()
}

/// `Σ a·b` in 16 lanes, reduced once (vectorises; the order is fixed).
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let (ac, bc) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..16 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Attention of the query heads in `q` (each `head_dim` wide) against one key/value head of one
/// sequence: `out[h] = softmax(q[h] · k / sqrt(d)) v` over the positions where `valid` holds.
/// The same sums, in the same order, for each head whether it comes alone or with others.
/// Compiled for the kernel path `path` as the quantised products are ([`CpuPath`]): with 16
/// lanes for AVX-512, else for AVX2+FMA (or NEON) where the CPU has it.
fn attend(
    path: CpuPath,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    valid: &[bool],
    scale: f32,
    out: &mut [f32],
) {
    if path == CpuPath::Avx512 {
        attend_wide(q, k, v, valid, scale, out);
    } else {
        attend_narrow(q, k, v, valid, scale, out);
    }
}

#[multiversion::multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma"))]
fn attend_wide(q: &[f32], k: &[f32], v: &[f32], valid: &[bool], scale: f32, out: &mut [f32]) {
    attention(q, k, v, valid, scale, out);
}

#[multiversion::multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn attend_narrow(q: &[f32], k: &[f32], v: &[f32], valid: &[bool], scale: f32, out: &mut [f32]) {
    attention(q, k, v, valid, scale, out);
}

/// [`attend`]'s loops, inlined into each compiled version. `q` and `out` hold the query heads
/// that share this key/value head: each key and value is read once for all of them, and each
/// head's sums run over the positions in order.
#[inline(always)]
fn attention(q: &[f32], k: &[f32], v: &[f32], valid: &[bool], scale: f32, out: &mut [f32]) {
    let len = valid.len();
    let hd = k.len() / len;
    let heads = q.len() / hd;
    let mut p = vec![0.0f32; heads * len];
    let mut max = vec![f32::NEG_INFINITY; heads];
    for (at, kk) in visible(k, hd, valid) {
        for (j, qh) in q.chunks_exact(hd).enumerate() {
            let s = dot(qh, kk) * scale;
            p[j * len + at] = s;
            max[j] = max[j].max(s);
        }
    }
    // Hidden positions as 0 (then zeroed): any value would do, but one past 88 in magnitude
    // would send its lanes through the library's scalar call.
    for (pj, &m) in p.chunks_exact_mut(len).zip(&max) {
        for (s, &ok) in pj.iter_mut().zip(valid) {
            *s = if ok { *s - m } else { 0.0 };
        }
    }
    exp_in_place(&mut p);
    // Each head's sum over the positions in order; the heads side by side, so that their
    // chains of additions overlap.
    let mut sum = [0.0f32; MAX_SIDE_BY_SIDE];
    for h0 in (0..heads).step_by(MAX_SIDE_BY_SIDE) {
        let side = (heads - h0).min(MAX_SIDE_BY_SIDE);
        let sum = &mut sum[..side];
        sum.fill(0.0);
        for (at, &ok) in valid.iter().enumerate() {
            for (j, s) in sum.iter_mut().enumerate() {
                let e = &mut p[(h0 + j) * len + at];
                if !ok {
                    *e = 0.0;
                }
                *s += *e;
            }
        }
        // The weights, each score over its head's sum.
        for (pj, &s) in p[h0 * len..(h0 + side) * len]
            .chunks_exact_mut(len)
            .zip(sum.iter())
        {
            for e in pj {
                *e /= s;
            }
        }
    }
    out.fill(0.0);
    for (at, vv) in visible(v, hd, valid) {
        for (j, oh) in out.chunks_exact_mut(hd).enumerate() {
            let w = p[j * len + at];
            for (o, &x) in oh.iter_mut().zip(vv) {
                *o += w * x;
            }
        }
    }
}

/// Heads whose softmax sums [`attention`] runs side by side.
const MAX_SIDE_BY_SIDE: usize = 8;

/// The `hd`-wide rows of `x` at the positions `valid` marks, with their positions.
#[inline(always)]
fn visible<'a>(
    x: &'a [f32],
    hd: usize,
    valid: &'a [bool],
) -> impl Iterator<Item = (usize, &'a [f32])> + 'a {
    x.chunks_exact(hd)
        .zip(valid)
        .enumerate()
        .filter(|(_, (_, ok))| **ok)
        .map(|(at, (row, _))| (at, row))
}

/// `x * sigmoid(x) * up`, as burn's `silu(gate) * up`.
fn swiglu(gate_up: &[f32], inter: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; gate_up.len() / 2];
    for_rows(&mut out, inter, |o, i| {
        let (g, u) = gate_up[2 * i * inter..2 * (i + 1) * inter].split_at(inter);
        for (o, &g) in o.iter_mut().zip(g) {
            *o = -g;
        }
        exp_in_place(o);
        for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
            *o = g * (1.0 / (1.0 + *o)) * u;
        }
    });
    out
}

impl HostDecoder<'_> {
    /// Feeds one token per row (`ids`, at RoPE `positions`) and returns the next-token logits,
    /// `[batch, vocab]`.
    ///
    /// # Panics
    /// As [`HostDecoder::feed`].
    pub fn step(&mut self, ids: &[u32], positions: &[usize]) -> Vec<f32> {
        self.feed(ids, positions, None)
    }

    /// Feeds `t` tokens per row fed (every row, or those [`HostDecoder::keep_rows`] kept; `ids`
    /// and RoPE `positions` `[rows, t]`, row-major; `real`: which of them are real tokens
    /// rather than padding, `None`: all), each attending to the cached positions and to the
    /// row's earlier new tokens, and returns the logits after each row's last token, `[rows,
    /// vocab]`. The prefill of a generation is one call.
    ///
    /// # Panics
    /// If the cache has no room for `t` more positions or the sizes disagree.
    pub fn feed(&mut self, ids: &[u32], positions: &[usize], real: Option<&[bool]>) -> Vec<f32> {
        crate::cpu::on_worker(|| {
            let t = ids.len() / self.live.len().max(1);
            let x = self.pass(ids, positions, real);
            // Only each row's last token goes through the head.
            let h = self.model.config.hidden_size;
            let last: Vec<f32> = x
                .chunks_exact(t * h)
                .flat_map(|row| row[(t - 1) * h..].iter().copied())
                .collect();
            self.logits(&last)
        })
    }

    /// Next-token logits `[n, vocab]` of `n` final hidden states (`[n, hidden]`, as
    /// [`HostDecoder::pass`] returns them): final RMSNorm and output head.
    pub fn logits(&self, hidden: &[f32]) -> Vec<f32> {
        let c = &self.model.config;
        let n = hidden.len() / c.hidden_size;
        crate::cpu::on_worker(|| {
            let xn = rms_norm(hidden, &self.quant.norm, c.rms_eps);
            self.product(&self.quant.head, &xn, n)
        })
    }

    /// `x @ Wᵀ` of `n` inputs, batch-invariant in an invariant decoder.
    fn product(&self, w: &QMatrix, x: &[f32], n: usize) -> Vec<f32> {
        if self.invariant {
            w.matmul_invariant(x, n)
        } else {
            w.matmul(x, n)
        }
    }

    /// Loads the keys and values of `prefix` into row `row`: every row of a decoder holds as
    /// many positions, so the first load sets that number and later ones must match it.
    ///
    /// # Panics
    /// If the row is out of range, the prefix does not fit, or its length differs from the
    /// positions the decoder holds.
    pub fn load_prefix(&mut self, row: usize, prefix: &HostPrefix) {
        let (nkv, hd, len, cap) = (
            self.model.config.num_kv_heads,
            self.model.config.head_dim,
            prefix.len,
            self.cap,
        );
        assert!(
            row < self.batch && len <= cap,
            "host decoder: prefix out of range"
        );
        assert!(
            self.len == 0 || self.len == len,
            "host decoder: rows of {} positions, a prefix of {len}",
            self.len
        );
        for (dst, src) in self
            .keys
            .iter_mut()
            .zip(&prefix.keys)
            .chain(self.values.iter_mut().zip(&prefix.values))
        {
            for g in 0..nkv {
                let at = (row * nkv + g) * cap * hd;
                dst[at..at + len * hd].copy_from_slice(&src[g * len * hd..(g + 1) * len * hd]);
            }
        }
        self.valid[row * cap..row * cap + len].copy_from_slice(&prefix.valid);
        self.len = len;
    }

    /// [`HostDecoder::feed`] without the head: the final hidden states (before the last RMSNorm)
    /// of every token fed, `[batch * t, hidden]`.
    ///
    /// # Panics
    /// As [`HostDecoder::feed`].
    pub fn pass(&mut self, ids: &[u32], positions: &[usize], real: Option<&[bool]>) -> Vec<f32> {
        crate::cpu::on_worker(|| self.pass_here(ids, positions, real, None))
    }

    /// One row of several continuations packed one after another (`segment[i]`: which one
    /// token `i` belongs to; each continuation's tokens are contiguous): every token attends to
    /// the cached positions and to its own continuation's earlier tokens, as the burn path's
    /// `Input::attend` mask does. Returns the final hidden states `[t, hidden]` as
    /// [`HostDecoder::pass`] does.
    ///
    /// # Panics
    /// As [`HostDecoder::feed`], and on a decoder of more than one row.
    pub fn pass_packed(&mut self, ids: &[u32], positions: &[usize], segment: &[usize]) -> Vec<f32> {
        assert!(
            self.batch == 1 && segment.len() == ids.len(),
            "packed pass: one row"
        );
        crate::cpu::on_worker(|| self.pass_here(ids, positions, None, Some(segment)))
    }

    /// From now on, passes feed only `rows` (of those fed so far, in increasing order): a
    /// batch drops the rows it has finished. Each row kept computes what it computed before,
    /// bit for bit (batch-invariant products; attention, norms and adapters per row); the rows
    /// dropped keep their cache but cannot be fed again.
    ///
    /// # Panics
    /// If `rows` is not an increasing subset of the rows fed so far.
    pub fn keep_rows(&mut self, rows: &[usize]) {
        assert!(
            rows.windows(2).all(|w| w[0] < w[1]) && rows.iter().all(|r| self.live.contains(r)),
            "host decoder: the rows kept must be an increasing subset of the rows fed"
        );
        self.live = rows.to_vec();
    }

    /// A copy of the positions held (one row): to start other decoders from the same context.
    ///
    /// # Panics
    /// On a decoder of more than one row.
    pub fn snapshot(&self) -> HostPrefix {
        assert_eq!(self.batch, 1, "host prefix: one row");
        let (nkv, hd) = (self.model.config.num_kv_heads, self.model.config.head_dim);
        let take = |layers: &[Vec<f32>]| -> Vec<Vec<f32>> {
            layers
                .iter()
                .map(|l| {
                    (0..nkv)
                        .flat_map(|g| &l[g * self.cap * hd..(g * self.cap + self.len) * hd])
                        .copied()
                        .collect()
                })
                .collect()
        };
        HostPrefix {
            len: self.len,
            keys: take(&self.keys),
            values: take(&self.values),
            valid: self.valid[..self.len].to_vec(),
        }
    }

    /// [`HostDecoder::pass`] on the calling thread; `segment` as in [`HostDecoder::pass_packed`].
    fn pass_here(
        &mut self,
        ids: &[u32],
        positions: &[usize],
        real: Option<&[bool]>,
        segment: Option<&[usize]>,
    ) -> Vec<f32> {
        let (b, cap, at) = (self.live.len(), self.cap, self.len);
        let t = ids.len() / b.max(1);
        assert!(
            t > 0 && ids.len() == b * t,
            "host decoder: {b} rows of tokens"
        );
        assert!(positions.len() == ids.len() && real.is_none_or(|r| r.len() == ids.len()));
        assert!(at + t <= cap, "host decoder: cache full ({cap} positions)");
        let n = b * t;
        let c = &self.model.config;
        let (h, nh, nkv, hd) = (c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim);
        let (qw, kvw, rep) = (nh * hd, nkv * hd, nh / nkv);
        let width = qw + 2 * kvw;
        let scale_attn = (1.0 / (hd as f64).sqrt()) as f32;
        let ids_t = Tensor::<1, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i64::from(i)).collect(), [n]),
            self.model.device(),
        );
        let mut x = crate::backend::host_f32(self.model.embed.clone().select(0, ids_t));
        for (r, &row) in self.live.iter().enumerate() {
            for j in 0..t {
                self.valid[row * cap + at + j] = real.is_none_or(|v| v[r * t + j]);
            }
        }
        let (cos, sin) = rope_tables(c, positions);
        // Packed continuations: per token, which of the `at + t` positions it sees.
        let packed: Option<Vec<bool>> = segment.map(|seg| {
            let mut m = vec![false; t * (at + t)];
            for (i, row) in m.chunks_exact_mut(at + t).enumerate() {
                row[..at].copy_from_slice(&self.valid[..at]);
                for j in (0..=i).rev().take_while(|&j| seg[j] == seg[i]) {
                    row[at + j] = true;
                }
            }
            m
        });
        let half = hd / 2;
        let (live, row_segment) = (&self.live, &self.row_segment);
        // Adds layer `li`'s adapters on `slots` (slot, offset into a row of `y`) to each token's
        // row of `y` (`stride` wide) from its row of `x` (`inp` wide): tokens on rayon's threads,
        // each row's sums in the same order as alone.
        let adapt = |slots: &[(usize, usize)], li: usize, x: &[f32], inp: usize, y: &mut [f32]| {
            let stride = y.len() / n;
            let used = |seg: &Segment| slots.iter().any(|&(slot, _)| seg.lora[li][slot].is_some());
            if !self.segments.iter().any(used) {
                return;
            }
            let parallel = rayon::current_num_threads() > 1 && n >= 4;
            crate::cpu::for_chunks(y, stride, parallel, |i, yi| {
                let seg = &self.segments[row_segment[live[i / t]]];
                for &(slot, offset) in slots {
                    if let Some(l) = &seg.lora[li][slot] {
                        l.add(&x[i * inp..(i + 1) * inp], &mut yi[offset..], seg.scale);
                    }
                }
            });
        };
        for (li, qb) in self.quant.blocks.iter().enumerate() {
            let xn = rms_norm(&x, &qb.attn_norm, c.rms_eps);
            let mut f = self.product(&qb.qkv, &xn, n);
            adapt(&[(0, 0), (1, qw), (2, qw + kvw)], li, &xn, h, &mut f);
            let (keys, values) = (&mut self.keys[li], &mut self.values[li]);
            for (i, fi) in f.chunks_exact_mut(width).enumerate() {
                let (r, slot) = (live[i / t], at + i % t);
                let (ci, si) = (
                    &cos[i * half..(i + 1) * half],
                    &sin[i * half..(i + 1) * half],
                );
                for head in fi[..qw + kvw].chunks_exact_mut(hd) {
                    rope(head, ci, si);
                }
                for g in 0..nkv {
                    let dst = ((r * nkv + g) * cap + slot) * hd;
                    let src = qw + g * hd;
                    keys[dst..dst + hd].copy_from_slice(&fi[src..src + hd]);
                    values[dst..dst + hd].copy_from_slice(&fi[src + kvw..src + kvw + hd]);
                }
            }
            // Attention, one task per (token, key/value head): its query heads against the
            // row's positions, up to and including the token's own.
            let mut att = vec![0.0f32; n * qw];
            let (keys, values, valid, f, packed) = (&*keys, &*values, &self.valid, &f, &packed);
            let path = CpuPath::active();
            let task = |(k, out): (usize, &mut [f32])| {
                let (i, g) = (k / nkv, k % nkv);
                let r = live[i / t];
                let q = &f[i * width + g * rep * hd..i * width + (g + 1) * rep * hd];
                let base = (r * nkv + g) * cap * hd;
                let seen = at + i % t + 1;
                let sees = match &packed {
                    Some(m) => &m[i * (at + t)..i * (at + t) + seen],
                    None => &valid[r * cap..r * cap + seen],
                };
                attend(
                    path,
                    q,
                    &keys[base..base + seen * hd],
                    &values[base..base + seen * hd],
                    sees,
                    scale_attn,
                    out,
                );
            };
            if rayon::current_num_threads() > 1 && n * nh * (at + t) >= 1024 {
                att.par_chunks_mut(rep * hd).enumerate().for_each(task);
            } else {
                att.chunks_mut(rep * hd).enumerate().for_each(task);
            }
            let mut o = self.product(&qb.o, &att, n);
            adapt(&[(3, 0)], li, &att, qw, &mut o);
            for (xv, ov) in x.iter_mut().zip(&o) {
                *xv += ov;
            }
            let xn = rms_norm(&x, &qb.ffn_norm, c.rms_eps);
            let act = swiglu(&self.product(&qb.gate_up, &xn, n), c.intermediate_size);
            let down = self.product(&qb.down, &act, n);
            for (xv, dv) in x.iter_mut().zip(&down) {
                *xv += dv;
            }
        }
        self.len += t;
        x
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    /// Attention as it was written first (each head's softmax in turn, a division per weight,
    /// the library's `exp`): the reference the compiled paths must equal bit for bit.
    fn plain_attention(q: &[f32], k: &[f32], v: &[f32], valid: &[bool], scale: f32) -> Vec<f32> {
        let len = valid.len();
        let hd = k.len() / len;
        let heads = q.len() / hd;
        let mut p = vec![0.0f32; heads * len];
        let mut max = vec![f32::NEG_INFINITY; heads];
        for at in (0..len).filter(|&at| valid[at]) {
            for j in 0..heads {
                let s = super::dot(&q[j * hd..(j + 1) * hd], &k[at * hd..(at + 1) * hd]) * scale;
                p[j * len + at] = s;
                max[j] = max[j].max(s);
            }
        }
        let mut sum = vec![0.0f32; heads];
        for j in 0..heads {
            for at in 0..len {
                let e = if valid[at] {
                    (p[j * len + at] - max[j]).exp()
                } else {
                    0.0
                };
                p[j * len + at] = e;
                sum[j] += e;
            }
        }
        let mut out = vec![0.0f32; heads * hd];
        for at in (0..len).filter(|&at| valid[at]) {
            for j in 0..heads {
                let w = p[j * len + at] / sum[j];
                for (o, &x) in out[j * hd..(j + 1) * hd]
                    .iter_mut()
                    .zip(&v[at * hd..(at + 1) * hd])
                {
                    *o += w * x;
                }
            }
        }
        out
    }

    /// Both compiled paths of the attention give the plain loops' bits: 1 to 9 heads (past
    /// the sums side by side), head widths of whole and partial 16-lane registers, 1 to 70
    /// positions with some hidden, scores spread wide enough for `exp`'s whole range.
    #[test]
    fn attention_is_the_plain_loops_bit_for_bit_on_every_path() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for (heads, hd) in [(1, 64), (3, 64), (9, 16), (2, 40)] {
            for len in [1, 2, 15, 16, 17, 33, 70] {
                let mut draw = |n: usize, r: f32| -> Vec<f32> {
                    (0..n).map(|_| rng.random_range(-r..r)).collect()
                };
                let (q, k, v) = (
                    draw(heads * hd, 3.0),
                    draw(len * hd, 3.0),
                    draw(len * hd, 1.0),
                );
                let mut valid: Vec<bool> = (0..len).map(|_| rng.random_bool(0.8)).collect();
                valid[len - 1] = true;
                let scale = 0.125f32;
                let want = plain_attention(&q, &k, &v, &valid, scale);
                for (name, f) in [
                    (
                        "wide",
                        super::attend_wide as fn(&[f32], &[f32], &[f32], &[bool], f32, &mut [f32]),
                    ),
                    ("narrow", super::attend_narrow),
                ] {
                    let mut out = vec![f32::NAN; heads * hd];
                    f(&q, &k, &v, &valid, scale, &mut out);
                    let same = out
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{heads} heads of {hd}, {len} positions, {name}");
                }
            }
        }
    }

    /// Both compiled paths of the adapters' update give the bits of the plain loops (`x A` per
    /// rank over `x` in order, `Σ_r t_r B_r` per output, then `y += u · scale`), at ranks below,
    /// at and above one register's 16 lanes and above the stack's 64, and widths with a partial
    /// last piece.
    #[test]
    fn lora_add_is_the_plain_loops_bit_for_bit_on_every_path() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for (rank, inp, width) in [(4, 40, 24), (16, 576, 192), (20, 64, 130), (80, 33, 70)] {
            let mut draw =
                |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
            let (a, b, x, y0) = (
                draw(inp * rank),
                draw(rank * width),
                draw(inp),
                draw(width + 3),
            );
            let scale = 0.37f32;
            let t: Vec<f32> = (0..rank)
                .map(|r| {
                    x.iter()
                        .enumerate()
                        .fold(0.0f32, |s, (c, &xc)| s + xc * a[c * rank + r])
                })
                .collect();
            let mut want = y0.clone();
            for (o, w) in want[..width].iter_mut().enumerate() {
                let u = t
                    .iter()
                    .enumerate()
                    .fold(0.0f32, |s, (r, &tr)| s + tr * b[r * width + o]);
                *w += u * scale;
            }
            for (name, f) in [
                (
                    "wide",
                    super::lora_add_wide as fn(&[f32], &[f32], usize, &[f32], &mut [f32], f32),
                ),
                ("narrow", super::lora_add_narrow),
            ] {
                let mut y = y0.clone();
                f(&a, &b, rank, &x, &mut y, scale);
                let same = y.iter().zip(&want).all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(
                    same,
                    "rank {rank}, width {width}, {name}: not the plain loops' bits"
                );
            }
        }
    }
}
