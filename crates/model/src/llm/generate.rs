//! Generation (KV-cached, batched with left padding, seeded sampling) and log-likelihoods.

use burn::tensor::{Int, Tensor, TensorData, activation};
use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::LlmError;
use super::decoder::{Input, KvCache, Llama};
use super::exp::exp_in_place;
use super::lora::{Adapters, DropoutMasks};

/// How new tokens are chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sampling {
    /// Most tokens to generate.
    pub max_new_tokens: usize,
    /// Stop tokens are suppressed until this many tokens exist.
    pub min_new_tokens: usize,
    /// 0 = greedy; otherwise logits are divided by it before sampling.
    pub temperature: f64,
    /// Nucleus sampling: smallest set of tokens whose probability reaches `top_p`.
    pub top_p: f64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            min_new_tokens: 0,
            temperature: 0.0,
            top_p: 1.0,
        }
    }
}

impl Sampling {
    /// Greedy decoding of up to `n` tokens.
    pub fn greedy(n: usize) -> Self {
        Self {
            max_new_tokens: n,
            ..Self::default()
        }
    }

    pub(super) fn validate(&self) -> Result<(), LlmError> {
        if !(self.temperature >= 0.0 && self.top_p > 0.0 && self.top_p <= 1.0)
            || self.min_new_tokens > self.max_new_tokens
        {
            return Err(LlmError::Request(format!(
                "sampling: need temperature >= 0, 0 < top_p <= 1 and min_new_tokens <= max_new_tokens (got {self:?})"
            )));
        }
        Ok(())
    }
}

/// One generated continuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// New token ids (the stop token included when one ended it).
    pub ids: Vec<u32>,
    /// Whether a stop token ended it (rather than the length limit).
    pub stopped: bool,
}

/// Log-probabilities of the tokens of one sequence under the model.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenScores {
    /// Tokens of the prompt part.
    pub prompt_len: usize,
    /// `log p(token_t | tokens_<t)` for `t = 1..len` (the first token is not predicted).
    pub logprobs: Vec<f32>,
}

impl TokenScores {
    /// Mean negative log-likelihood of every predicted token.
    pub fn mean_nll(&self) -> f64 {
        mean_neg(&self.logprobs)
    }

    /// Log-probabilities of the continuation tokens alone.
    pub fn continuation(&self) -> &[f32] {
        &self.logprobs[self.prompt_len.saturating_sub(1).min(self.logprobs.len())..]
    }

    /// Mean negative log-likelihood of the continuation tokens.
    pub fn continuation_mean_nll(&self) -> f64 {
        mean_neg(self.continuation())
    }
}

/// `KL(softmax(p) || softmax(q))` of two logit rows, in `f64`.
pub fn kl_from_logits(p: &[f32], q: &[f32]) -> f64 {
    let lse = |x: &[f32]| {
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let m = f64::from(max);
        m + x
            .iter()
            .map(|&v| (f64::from(v) - m).exp())
            .sum::<f64>()
            .ln()
    };
    let (lp, lq) = (lse(p), lse(q));
    p.iter()
        .zip(q)
        .map(|(&a, &b)| {
            let log_p = f64::from(a) - lp;
            log_p.exp() * (log_p - (f64::from(b) - lq))
        })
        .sum::<f64>()
        .max(0.0)
}

/// Logits per call of [`exp_in_place`] in the softmaxes over the vocabulary (a buffer on the
/// stack).
const EXP_CHUNK: usize = 256;

/// `log Σ exp(x)`: `f32` exponentials summed in `f64`.
pub(super) fn log_sum_exp(x: &[f32]) -> f32 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    let mut buf = [0.0f32; EXP_CHUNK];
    for c in x.chunks(EXP_CHUNK) {
        let b = &mut buf[..c.len()];
        for (e, &v) in b.iter_mut().zip(c) {
            *e = v - max;
        }
        exp_in_place(b);
        for &e in b.iter() {
            sum += f64::from(e);
        }
    }
    (f64::from(max) + sum.ln()) as f32
}

/// Continuations packed into one row after a context of `at` positions, each attending to the
/// context and to its own earlier tokens (no padding, and no copy of the context's cache per
/// continuation): every token but each continuation's last, its position, which continuation
/// it belongs to, and the token it predicts.
pub(super) struct Packed {
    pub(super) ids: Vec<u32>,
    pub(super) positions: Vec<usize>,
    pub(super) owner: Vec<usize>,
    pub(super) targets: Vec<u32>,
}

impl Packed {
    pub(super) fn new(continuations: &[Vec<u32>], at: usize) -> Self {
        let mut p = Self {
            ids: Vec::new(),
            positions: Vec::new(),
            owner: Vec::new(),
            targets: Vec::new(),
        };
        for (j, c) in continuations.iter().enumerate() {
            for (k, pair) in c.windows(2).enumerate() {
                p.ids.push(pair[0]);
                p.positions.push(at + k);
                p.owner.push(j);
                p.targets.push(pair[1]);
            }
        }
        p
    }
}

/// Each continuation's first log-probability, from the logits after the context.
pub(super) fn first_tokens(last: &[f32], continuations: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let lse = log_sum_exp(last);
    continuations
        .iter()
        .map(|c| vec![last[c[0] as usize] - lse])
        .collect()
}

/// The packed tokens' log-probabilities (in [`Packed`]'s order) appended to their
/// continuations' first ones.
pub(super) fn append_packed(out: &mut [Vec<f32>], continuations: &[Vec<u32>], picked: &[f32]) {
    let mut next = 0;
    for (o, c) in out.iter_mut().zip(continuations) {
        o.extend_from_slice(&picked[next..next + c.len() - 1]);
        next += c.len() - 1;
    }
}

/// `seqs` right-padded with token 0 to `width`, and their positions, row-major `[len, width]`.
fn right_padded(seqs: &[Vec<u32>], width: usize) -> (Vec<u32>, Vec<usize>) {
    let ids = seqs
        .iter()
        .flat_map(|s| {
            s.iter()
                .copied()
                .chain(std::iter::repeat_n(0, width - s.len()))
        })
        .collect();
    let positions = seqs.iter().flat_map(|_| 0..width).collect();
    (ids, positions)
}

fn mean_neg(v: &[f32]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    -v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64
}

/// Tokens [`sample_token`] sorts first when it looks for the nucleus.
const NUCLEUS_FIRST_GUESS: usize = 64;
/// Weights (the largest is 1) from which [`sample_token`] looks for the nucleus first: the
/// tokens below hold at most `vocab * HEAD_MIN` of the sum (5% for SmolLM2's 49,152).
const HEAD_MIN: f64 = 1e-6;

/// Picks the next token from one row of logits.
pub fn sample_token(
    logits: &[f32],
    sampling: &Sampling,
    banned: &[u32],
    rng: &mut impl Rng,
) -> u32 {
    Pick::new(logits, sampling, banned).draw(rng)
}

/// What [`sample_token`] draws from one row of logits: everything but the draw, which needs no
/// randomness, so a batch's rows compute theirs in parallel and then draw in row order from
/// their generators (the same tokens as row after row).
#[derive(Debug, Clone)]
pub enum Pick {
    /// Temperature 0: the first maximum, as torch.argmax (no draw).
    Greedy(u32),
    /// The nucleus, in descending order of probability (ties by token id), with the weights'
    /// sum.
    Nucleus { probs: Vec<(usize, f64)>, kept: f64 },
}

impl Pick {
    /// The row's greedy token or nucleus under `sampling`, without the tokens `banned`.
    pub fn new(logits: &[f32], sampling: &Sampling, banned: &[u32]) -> Self {
        let allowed = |i: usize| !banned.contains(&(i as u32));
        if sampling.temperature == 0.0 {
            let mut best = (0usize, f32::NEG_INFINITY);
            for (i, &l) in logits.iter().enumerate() {
                if l > best.1 && allowed(i) {
                    best = (i, l);
                }
            }
            return Pick::Greedy(best.0 as u32);
        }
        let t = sampling.temperature as f32;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let weight = |l: f32| f64::from(((l - max) / t).exp());
        // One pass: the weights' sum over the allowed tokens in token order, and aside the
        // tokens within `HEAD_MIN` of the largest weight (1). Those rank before all others, so
        // when they reach `top_p` the nucleus is among them: the same tokens, sums and order
        // as from the whole vocabulary, without ordering 49,152 weights per row.
        // The weights `EXP_CHUNK` at a time (`weight`'s bits, in vectors).
        let mut total = 0.0f64;
        let mut head = Vec::new();
        let mut buf = [0.0f32; EXP_CHUNK];
        for (c, chunk) in logits.chunks(EXP_CHUNK).enumerate() {
            let b = &mut buf[..chunk.len()];
            for (e, &l) in b.iter_mut().zip(chunk) {
                *e = (l - max) / t;
            }
            exp_in_place(b);
            for (j, &e) in b.iter().enumerate() {
                let i = c * EXP_CHUNK + j;
                if allowed(i) {
                    let w = f64::from(e);
                    total += w;
                    if w >= HEAD_MIN {
                        head.push((i, w));
                    }
                }
            }
        }
        if let Some(pick) = Pick::nucleus(head, total, sampling.top_p, false) {
            return pick;
        }
        let all: Vec<(usize, f64)> = logits
            .iter()
            .enumerate()
            .filter(|(i, _)| allowed(*i))
            .map(|(i, &l)| (i, weight(l)))
            .collect();
        Pick::nucleus(all, total, sampling.top_p, true).expect("the whole vocabulary")
    }

    /// The nucleus from `probs` (`total`: the sum over the whole vocabulary), or `None` where
    /// `probs` falls short of `top_p` and is not `whole` (the rest of the vocabulary follows).
    fn nucleus(mut probs: Vec<(usize, f64)>, total: f64, top_p: f64, whole: bool) -> Option<Self> {
        // The nucleus is the head of the probabilities in descending order (ties by token id):
        // sort only the `k` largest, more while they fall short (a full sort of the vocabulary
        // cost more than a decoding step's products). The head of a total order is the same
        // either way.
        let order = |a: &(usize, f64), b: &(usize, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let mut k = NUCLEUS_FIRST_GUESS.min(probs.len());
        loop {
            if k < probs.len() {
                probs.select_nth_unstable_by(k, order);
            }
            probs[..k].sort_by(order);
            let mut kept = 0.0;
            let mut n = 0;
            for p in &probs[..k] {
                kept += p.1;
                n += 1;
                if kept / total >= top_p {
                    break;
                }
            }
            let reached = kept / total >= top_p;
            if reached || k == probs.len() {
                if !reached && !whole {
                    return None;
                }
                probs.truncate(n);
                return Some(Pick::Nucleus { probs, kept });
            }
            k = (4 * k).min(probs.len());
        }
    }

    /// The token: one uniform draw from `rng` into the nucleus (none when greedy).
    pub fn draw(&self, rng: &mut impl Rng) -> u32 {
        let (probs, kept) = match self {
            Pick::Greedy(tok) => return *tok,
            Pick::Nucleus { probs, kept } => (probs, *kept),
        };
        let mut u = rng.random::<f64>() * kept;
        for p in probs {
            u -= p.1;
            if u <= 0.0 {
                return p.0 as u32;
            }
        }
        probs[probs.len() - 1].0 as u32
    }

    /// Each row's pick (`None` where `active` is false), rows in parallel.
    pub fn rows(
        logits: &[f32],
        active: &[bool],
        sampling: &Sampling,
        banned: &[u32],
    ) -> Vec<Option<Pick>> {
        let vocab = logits.len() / active.len().max(1);
        logits
            .par_chunks_exact(vocab.max(1))
            .zip(active)
            .map(|(row, &on)| on.then(|| Pick::new(row, sampling, banned)))
            .collect()
    }
}

/// `row[t] - log_sum_exp(row)` for each row of `logits` and its target `t`, rows in parallel.
pub(super) fn target_logprobs(logits: &[f32], targets: &[u32]) -> Vec<f32> {
    if targets.is_empty() {
        return Vec::new();
    }
    let vocab = logits.len() / targets.len();
    logits
        .par_chunks_exact(vocab)
        .zip(targets)
        .map(|(row, &t)| row[t as usize] - log_sum_exp(row))
        .collect()
}

impl Llama {
    /// Logits after the last token of each row of `input`, `[batch, vocab]` on the host.
    fn last_logits(&self, input: &Input, hidden: Tensor<3>) -> Vec<f32> {
        let h = self.config.hidden_size;
        let last = hidden.narrow(1, input.seq - 1, 1).reshape([input.batch, h]);
        crate::backend::host_f32(self.logits_inference(last))
    }

    /// Next-token logits after `prompt` (`vocab` values).
    pub fn next_logits(
        &self,
        prompt: &[u32],
        adapters: Option<&Adapters>,
    ) -> Result<Vec<f32>, LlmError> {
        if prompt.is_empty() {
            return Err(LlmError::Request("empty prompt".into()));
        }
        // A CPU model with quantised blocks runs the pass on the host (see `HostDecoder`).
        if let Some(mut host) = self.host_decoder(1, prompt.len(), adapters) {
            let positions: Vec<usize> = (0..prompt.len()).collect();
            return Ok(host.feed(prompt, &positions, None));
        }
        let input = Input::single(prompt, 0);
        let hidden = self.forward_inference(&input, None, adapters);
        Ok(self.last_logits(&input, hidden))
    }

    /// Continues each prompt (left-padded into one batch, KV-cached). `stop` ends a row.
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        sampling: &Sampling,
        stop: &[u32],
        pad: u32,
        rng: &mut impl Rng,
        adapters: Option<&Adapters>,
    ) -> Result<Vec<Generation>, LlmError> {
        sampling.validate()?;
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        if prompts.iter().any(Vec::is_empty) {
            return Err(LlmError::Request("empty prompt".into()));
        }
        let b = prompts.len();
        let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let limit = self.config.max_position.min(16_384);
        if width + sampling.max_new_tokens > limit {
            return Err(LlmError::Request(format!(
                "prompt of {width} tokens + {} new tokens exceeds the context of {limit}",
                sampling.max_new_tokens
            )));
        }
        let padded = prompts.iter().any(|p| p.len() != width);
        let mut ids = Vec::with_capacity(b * width);
        let mut positions = Vec::with_capacity(b * width);
        let mut valid = Vec::with_capacity(b * width);
        for p in prompts {
            let pad_n = width - p.len();
            ids.extend(std::iter::repeat_n(pad, pad_n).chain(p.iter().copied()));
            positions.extend((0..width).map(|j| j.saturating_sub(pad_n)));
            valid.extend((0..width).map(|j| j >= pad_n));
        }
        let mut input = Input {
            ids,
            batch: b,
            seq: width,
            positions,
            key_valid: padded.then_some(valid),
            attend: None,
        };
        let mut cache = KvCache::new();
        let mut out: Vec<Generation> = (0..b)
            .map(|_| Generation {
                ids: Vec::new(),
                stopped: false,
            })
            .collect();
        let vocab = self.config.vocab_size;
        // A CPU model with quantised blocks generates on the host, prefill included.
        let mut host = (sampling.max_new_tokens > 0)
            .then(|| self.host_decoder(b, width + sampling.max_new_tokens, adapters))
            .flatten();
        for step in 0..sampling.max_new_tokens {
            let logits = match host.as_mut() {
                Some(h) => h.feed(&input.ids, &input.positions, input.key_valid.as_deref()),
                None => {
                    let hidden = self.forward_inference(&input, Some(&mut cache), adapters);
                    self.last_logits(&input, hidden)
                }
            };
            let banned = if step < sampling.min_new_tokens {
                stop
            } else {
                &[]
            };
            let mut next = Vec::with_capacity(b);
            let active: Vec<bool> = out.iter().map(|g| !g.stopped).collect();
            let picks = Pick::rows(&logits[..b * vocab], &active, sampling, banned);
            for (g, pick) in out.iter_mut().zip(&picks) {
                let Some(pick) = pick else {
                    next.push(pad);
                    continue;
                };
                let tok = pick.draw(rng);
                g.ids.push(tok);
                g.stopped = stop.contains(&tok);
                next.push(tok);
            }
            if out.iter().all(|g| g.stopped) || step + 1 == sampling.max_new_tokens {
                break;
            }
            let key_valid = input.key_valid.take().filter(|_| host.is_none()).map(|v| {
                let s = cache.len;
                let mut grown = Vec::with_capacity(b * (s + 1));
                for r in 0..b {
                    grown.extend_from_slice(&v[r * s..(r + 1) * s]);
                    grown.push(true);
                }
                grown
            });
            input = Input {
                ids: next,
                batch: b,
                seq: 1,
                positions: prompts.iter().map(|p| p.len() + step).collect(),
                key_valid,
                attend: None,
            };
        }
        Ok(out)
    }

    /// Per-token log-probabilities of each `(prompt, continuation)`, without gradients; rows
    /// are right-padded into batches of at most `max_tokens` tokens in all.
    pub fn score(
        &self,
        seqs: &[(Vec<u32>, Vec<u32>)],
        adapters: Option<&Adapters>,
        max_tokens: usize,
    ) -> Result<Vec<TokenScores>, LlmError> {
        let mut out = Vec::with_capacity(seqs.len());
        let mut start = 0;
        while start < seqs.len() {
            let mut end = start + 1;
            let mut width = seqs[start].0.len() + seqs[start].1.len();
            while end < seqs.len() {
                let w = width.max(seqs[end].0.len() + seqs[end].1.len());
                if w * (end + 1 - start) > max_tokens {
                    break;
                }
                width = w;
                end += 1;
            }
            let full: Vec<Vec<u32>> = seqs[start..end]
                .iter()
                .map(|(p, c)| p.iter().chain(c).copied().collect())
                .collect();
            let scores = match self.host_logprobs(&full, adapters)? {
                Some(scores) => scores,
                None => {
                    let lp = self.logprobs_impl(&full, adapters, None, true)?;
                    let rows = crate::backend::host_f32(lp.tensor);
                    full.iter()
                        .enumerate()
                        .map(|(i, f)| rows[i * lp.width..i * lp.width + f.len() - 1].to_vec())
                        .collect()
                }
            };
            for ((p, _), logprobs) in seqs[start..end].iter().zip(scores) {
                out.push(TokenScores {
                    prompt_len: p.len(),
                    logprobs,
                });
            }
            start = end;
        }
        Ok(out)
    }

    /// The padded width of `seqs` to score, or why they cannot be.
    fn scoring_width(&self, seqs: &[Vec<u32>]) -> Result<usize, LlmError> {
        if seqs.iter().any(|s| s.len() < 2) {
            return Err(LlmError::Request(
                "scoring needs at least two tokens per sequence".into(),
            ));
        }
        let width = seqs.iter().map(Vec::len).max().unwrap_or(0);
        if width > self.config.max_position.min(16_384) {
            return Err(LlmError::Request(format!(
                "sequence of {width} tokens exceeds the context"
            )));
        }
        Ok(width)
    }

    /// `log p(token_t | tokens_<t)` of each sequence (`len - 1` values) through one host pass of
    /// the right-padded batch (see [`super::decoder::HostDecoder`]), or `None` where the model
    /// does not run on the host. The head runs on the predicting positions only, a few hundred
    /// at a time (a row of logits is 49152 floats).
    fn host_logprobs(
        &self,
        seqs: &[Vec<u32>],
        adapters: Option<&Adapters>,
    ) -> Result<Option<Vec<Vec<f32>>>, LlmError> {
        let (b, width) = (seqs.len(), self.scoring_width(seqs)?);
        let Some(mut host) = self.host_decoder(b, width, adapters) else {
            return Ok(None);
        };
        // Padding after a sequence's end is never seen by its tokens (causal attention).
        let (ids, positions) = right_padded(seqs, width);
        let x = host.pass(&ids, &positions, None);
        let h = self.config.hidden_size;
        let predicting: Vec<f32> = seqs
            .iter()
            .enumerate()
            .flat_map(|(r, s)| &x[r * width * h..(r * width + s.len() - 1) * h])
            .copied()
            .collect();
        let targets: Vec<u32> = seqs.iter().flat_map(|s| s[1..].iter().copied()).collect();
        let mut picked = Vec::with_capacity(targets.len());
        for (rows, targets) in predicting.chunks(256 * h).zip(targets.chunks(256)) {
            let logits = host.logits(rows);
            picked.extend(target_logprobs(&logits, targets));
        }
        let mut rest = picked.as_slice();
        Ok(Some(
            seqs.iter()
                .map(|s| {
                    let (mine, tail) = rest.split_at(s.len() - 1);
                    rest = tail;
                    mine.to_vec()
                })
                .collect(),
        ))
    }

    /// The untempered next-token logits at every position of each continuation after its
    /// prompt: for `(prompt, continuation)`, row `j` (`vocab` values) is the distribution of
    /// `continuation[j]` given `prompt` and `continuation[..j]`. Without gradients; on the host
    /// the sequences run as one right-padded batch.
    pub fn continuation_logits(
        &self,
        seqs: &[(Vec<u32>, Vec<u32>)],
        adapters: Option<&Adapters>,
    ) -> Result<Vec<Vec<f32>>, LlmError> {
        if seqs.iter().any(|(p, c)| p.is_empty() || c.is_empty()) {
            return Err(LlmError::Request(
                "continuation logits need a prompt and a continuation".into(),
            ));
        }
        let full: Vec<Vec<u32>> = seqs
            .iter()
            .map(|(p, c)| p.iter().chain(c).copied().collect())
            .collect();
        let width = self.scoring_width(&full)?;
        let h = self.config.hidden_size;
        let vocab = self.config.vocab_size;
        if let Some(mut host) = self.host_decoder(full.len(), width, adapters) {
            let (ids, positions) = right_padded(&full, width);
            let x = host.pass(&ids, &positions, None);
            let rows: Vec<f32> = seqs
                .iter()
                .enumerate()
                .flat_map(|(r, (p, c))| {
                    let at = r * width + p.len() - 1;
                    &x[at * h..(at + c.len()) * h]
                })
                .copied()
                .collect();
            let mut logits = Vec::with_capacity(rows.len() / h * vocab);
            for chunk in rows.chunks(256 * h) {
                logits.extend(host.logits(chunk));
            }
            let mut rest = logits.as_slice();
            return Ok(seqs
                .iter()
                .map(|(_, c)| {
                    let (mine, tail) = rest.split_at(c.len() * vocab);
                    rest = tail;
                    mine.to_vec()
                })
                .collect());
        }
        seqs.iter()
            .zip(&full)
            .map(|((p, c), f)| {
                let input = Input::single(f, 0);
                let hidden = self.forward_inference(&input, None, adapters);
                let rows = hidden.narrow(1, p.len() - 1, c.len()).reshape([c.len(), h]);
                Ok(crate::backend::host_f32(self.logits_inference(rows)))
            })
            .collect()
    }

    /// `KL(policy || base)` of the next-token distribution at every token of each continuation
    /// after its prompt, exactly (summed over the vocabulary, in `f64`): `policy` is this model
    /// with `adapters`, `base` this model without them; both untempered.
    pub fn token_kl(
        &self,
        seqs: &[(Vec<u32>, Vec<u32>)],
        adapters: &Adapters,
    ) -> Result<Vec<Vec<f64>>, LlmError> {
        let p = self.continuation_logits(seqs, Some(adapters))?;
        let q = self.continuation_logits(seqs, None)?;
        let vocab = self.config.vocab_size;
        Ok(p.iter()
            .zip(&q)
            .map(|(p, q)| {
                p.chunks_exact(vocab)
                    .zip(q.chunks_exact(vocab))
                    .map(|(p, q)| kl_from_logits(p, q))
                    .collect()
            })
            .collect())
    }

    /// The keys and values of `ids` (one row), to share a context between many continuations;
    /// computed on the host where continuations are scored there ([`Llama::scores_on_host`]).
    pub fn prefix_cache(
        &self,
        ids: &[u32],
        adapters: Option<&Adapters>,
    ) -> Result<KvCache, LlmError> {
        if self.scores_on_host()
            && let Some(cache) = self.host_prefix_cache(ids, adapters)
        {
            return Ok(cache);
        }
        let mut cache = KvCache::new();
        if !ids.is_empty() {
            self.forward_inference(&Input::single(ids, 0), Some(&mut cache), adapters);
        }
        Ok(cache)
    }

    /// [`Llama::prefix_cache`] on the host kernels, or `None` without quantised blocks.
    pub fn host_prefix_cache(&self, ids: &[u32], adapters: Option<&Adapters>) -> Option<KvCache> {
        let mut dec = self.host_decoder(1, ids.len().max(1), adapters)?;
        if !ids.is_empty() {
            let positions: Vec<usize> = (0..ids.len()).collect();
            dec.pass(ids, &positions, None);
        }
        Some(KvCache::from_host(dec.snapshot()))
    }

    /// `log p(c_j | context, c_<j)` of each token of each continuation `c`, where the context is
    /// the tokens held in `prefix` (one row, see [`Llama::prefix_cache`]) followed by `rest`
    /// (at least one token). The continuations run packed into one row after a copy of the
    /// context's cache, so the context is computed once: on the host kernels where
    /// [`Llama::scores_on_host`] (and the prefix came from there), else through burn.
    pub fn continuation_logprobs(
        &self,
        prefix: &KvCache,
        rest: &[u32],
        continuations: &[Vec<u32>],
        adapters: Option<&Adapters>,
    ) -> Result<Vec<Vec<f32>>, LlmError> {
        self.check_continuations(prefix, rest, continuations)?;
        if self.scores_on_host()
            && let Some(out) = self.host_scored(prefix, rest, continuations, adapters)
        {
            return Ok(out);
        }
        let start = prefix.len;
        let mut cache = prefix.clone();
        let input = Input::single(rest, start);
        let hidden = self.forward_inference(&input, Some(&mut cache), adapters);
        let mut out = first_tokens(&self.last_logits(&input, hidden), continuations);
        let at = start + rest.len();
        let Packed {
            ids,
            positions,
            owner,
            targets,
        } = Packed::new(continuations, at);
        let t = ids.len();
        if t == 0 {
            return Ok(out);
        }
        let s = at + t;
        let mut attend = vec![false; t * s];
        for q in 0..t {
            for k in 0..s {
                attend[q * s + k] = k < at || (owner[k - at] == owner[q] && k - at <= q);
            }
        }
        let packed = Input {
            ids,
            batch: 1,
            seq: t,
            positions,
            key_valid: None,
            attend: Some(attend),
        };
        let hidden = self.forward_inference(&packed, Some(&mut cache), adapters);
        let h = self.config.hidden_size;
        let logp = activation::log_softmax(self.logits_inference(hidden.reshape([t, h])), 1);
        let targets: Vec<i64> = targets.iter().map(|&t| i64::from(t)).collect();
        let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [t, 1]), self.device());
        let picked = crate::backend::host_f32(logp.gather(1, targets));
        append_packed(&mut out, continuations, &picked);
        Ok(out)
    }

    /// The requests [`Llama::continuation_logprobs`] refuses: an empty context tail or
    /// continuation, or more positions than the model's context.
    fn check_continuations(
        &self,
        prefix: &KvCache,
        rest: &[u32],
        continuations: &[Vec<u32>],
    ) -> Result<(), LlmError> {
        if rest.is_empty() || continuations.iter().any(Vec::is_empty) {
            return Err(LlmError::Request(
                "continuation scoring needs a non-empty context tail and continuations".into(),
            ));
        }
        let longest = continuations.iter().map(Vec::len).max().unwrap_or(0);
        if prefix.len + rest.len() + longest > self.config.max_position.min(16_384) {
            return Err(LlmError::Request(format!(
                "context of {} tokens + continuation of {longest} exceeds the context",
                prefix.len + rest.len()
            )));
        }
        Ok(())
    }

    /// [`Llama::continuation_logprobs`] on the host kernels, whatever [`Llama::scores_on_host`]
    /// says: the context's tail and then every continuation packed into one row
    /// ([`super::HostDecoder::pass_packed`]), and the log softmax of each packed token's
    /// logits. `None` without quantised blocks, or for a prefix computed through burn.
    pub fn host_continuation_logprobs(
        &self,
        prefix: &KvCache,
        rest: &[u32],
        continuations: &[Vec<u32>],
        adapters: Option<&Adapters>,
    ) -> Result<Option<Vec<Vec<f32>>>, LlmError> {
        self.check_continuations(prefix, rest, continuations)?;
        Ok(self.host_scored(prefix, rest, continuations, adapters))
    }

    /// [`Llama::host_continuation_logprobs`] of a request already checked.
    fn host_scored(
        &self,
        prefix: &KvCache,
        rest: &[u32],
        continuations: &[Vec<u32>],
        adapters: Option<&Adapters>,
    ) -> Option<Vec<Vec<f32>>> {
        let at = prefix.len + rest.len();
        let packed = Packed::new(continuations, at);
        let cap = at + packed.ids.len();
        let mut dec = match prefix.host() {
            Some(p) => self.host_decoder_after(p, cap, adapters)?,
            None if prefix.len == 0 => self.host_decoder(1, cap, adapters)?,
            None => return None,
        };
        let last = dec.feed(rest, &(prefix.len..at).collect::<Vec<_>>(), None);
        let mut out = first_tokens(&last, continuations);
        if packed.ids.is_empty() {
            return Some(out);
        }
        let picked = super::best_of::packed_logprobs(&mut dec, &packed);
        append_packed(&mut out, continuations, &picked);
        Some(out)
    }

    /// `log p(token_t | tokens_<t)` of right-padded sequences as a tensor `[batch, width - 1]`
    /// (padding positions hold garbage: mask them), differentiable through `adapters`.
    pub fn token_logprobs(
        &self,
        seqs: &[Vec<u32>],
        adapters: Option<&Adapters>,
        dropout: Option<&mut DropoutMasks>,
    ) -> Result<LogProbs, LlmError> {
        self.logprobs_impl(seqs, adapters, dropout, false)
    }

    fn logprobs_impl(
        &self,
        seqs: &[Vec<u32>],
        adapters: Option<&Adapters>,
        dropout: Option<&mut DropoutMasks>,
        inference: bool,
    ) -> Result<LogProbs, LlmError> {
        let (b, width) = (seqs.len(), self.scoring_width(seqs)?);
        let (ids, positions) = right_padded(seqs, width);
        let input = Input {
            positions,
            ids: ids.clone(),
            batch: b,
            seq: width,
            key_valid: None,
            attend: None,
        };
        let (hidden, logits): (Tensor<3>, fn(&Self, Tensor<2>) -> Tensor<2>) = if inference {
            (
                self.forward_inference(&input, None, adapters),
                Self::logits_inference,
            )
        } else {
            (self.forward(&input, None, adapters, dropout), Self::logits)
        };
        let h = self.config.hidden_size;
        let hidden = hidden.narrow(1, 0, width - 1).reshape([b * (width - 1), h]);
        let logp = activation::log_softmax(logits(self, hidden), 1);
        let targets: Vec<i64> = (0..b)
            .flat_map(|r| (1..width).map(move |t| (r, t)))
            .map(|(r, t)| i64::from(ids[r * width + t]))
            .collect();
        let targets = Tensor::<2, Int>::from_data(
            TensorData::new(targets, [b * (width - 1), 1]),
            self.device(),
        );
        let picked = logp.gather(1, targets).reshape([b, width - 1]);
        Ok(LogProbs {
            tensor: picked,
            width: width - 1,
        })
    }
}

/// Per-token log-probabilities of a right-padded batch.
#[derive(Debug, Clone)]
pub struct LogProbs {
    /// `[batch, width]`.
    pub tensor: Tensor<2>,
    /// Columns (`longest sequence - 1`).
    pub width: usize,
}

#[cfg(test)]
mod tests {
    use super::{Pick, Sampling, sample_token};
    use proptest::prelude::{Just, any, prop_assert_eq, prop_oneof, proptest};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The nucleus by a full sort of the vocabulary: the definition [`sample_token`] keeps.
    fn by_full_sort(logits: &[f32], s: &Sampling, banned: &[u32], rng: &mut impl Rng) -> u32 {
        let (probs, kept) = nucleus_by_full_sort(logits, s, banned);
        let mut u = rng.random::<f64>() * kept;
        for p in &probs {
            u -= p.1;
            if u <= 0.0 {
                return p.0 as u32;
            }
        }
        probs[probs.len() - 1].0 as u32
    }

    /// The nucleus (tokens and weights in order) and its weights' sum, by a full sort.
    fn nucleus_by_full_sort(
        logits: &[f32],
        s: &Sampling,
        banned: &[u32],
    ) -> (Vec<(usize, f64)>, f64) {
        let t = s.temperature as f32;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(usize, f64)> = logits
            .iter()
            .enumerate()
            .filter(|(i, _)| !banned.contains(&(*i as u32)))
            .map(|(i, &l)| (i, f64::from(((l - max) / t).exp())))
            .collect();
        let total: f64 = probs.iter().map(|p| p.1).sum();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let (mut kept, mut n) = (0.0, 0);
        for p in &probs {
            kept += p.1;
            n += 1;
            if kept / total >= s.top_p {
                break;
            }
        }
        probs.truncate(n);
        (probs, kept)
    }

    proptest! {
        /// Sorting only the head of the vocabulary picks the token the full sort picks, for
        /// peaked and flat distributions (nuclei of one token to thousands, so the head grows),
        /// tied logits, banned tokens and `top_p = 1`.
        #[test]
        fn the_nucleus_from_a_partial_sort_is_the_full_sorts(
            seed in any::<u64>(),
            vocab in 2usize..4000,
            temperature in 0.05f64..3.0,
            top_p in prop_oneof![Just(1.0), 0.01f64..1.0],
            spread in 0.01f32..30.0,
            ties in any::<bool>(),
        ) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let logits: Vec<f32> = (0..vocab)
                .map(|_| {
                    let x = rng.random_range(-1.0f32..1.0) * spread;
                    if ties { x.round() } else { x }
                })
                .collect();
            let s = Sampling { max_new_tokens: 1, min_new_tokens: 0, temperature, top_p };
            let banned = [0u32, 7];
            // The nucleus itself, bit for bit: its tokens in order, their weights and sum.
            let Pick::Nucleus { probs, kept } = Pick::new(&logits, &s, &banned) else {
                panic!("a temperature above 0 samples");
            };
            let (want, want_kept) = nucleus_by_full_sort(&logits, &s, &banned);
            prop_assert_eq!(&probs, &want);
            prop_assert_eq!(kept.to_bits(), want_kept.to_bits());
            for _ in 0..4 {
                let (mut a, mut b) = (rng.clone(), rng.clone());
                let got = sample_token(&logits, &s, &banned, &mut a);
                prop_assert_eq!(got, by_full_sort(&logits, &s, &banned, &mut b));
                rng = a;
            }
        }
    }
}
