//! Best-of-n's inference: many continuations of one prompt. The prompt runs once per model (the
//! base model, each policy) instead of once per row; groups of rows, each with its own adapters
//! and random stream, decode in one batch; continuations are scored after the prompt's cached
//! keys and values instead of reading the prompt again.
//!
//! On the host kernels every pass multiplies with batch-invariant products
//! ([`super::quant::QMatrix::matmul_invariant`]): every group's rows compute, bit for bit, what
//! they compute when the group runs alone ([`super::HostDecoder`]'s segments), so what a policy
//! samples does not depend on which other policies decode beside it, and a response's score
//! does not depend on the responses packed with it. Where the model does not run on the host (burn: a GPU,
//! a safetensors checkpoint), each group runs through [`Llama::generate`] and [`Llama::score`].

use std::sync::Arc;

use rand::Rng;

use super::LlmError;
use super::decoder::{HostDecoder, HostPrefix, Llama};
use super::generate::{
    Generation, Packed, Pick, Sampling, TokenScores, append_packed, first_tokens, target_logprobs,
};
use super::lora::Adapters;

/// Tokens per batch where scoring falls back to [`Llama::score`].
const FALLBACK_SCORE_TOKENS: usize = 2048;
/// Rows of logits computed at once (a row is the vocabulary, 49152 floats for SmolLM2).
const LOGIT_ROWS: usize = 64;

/// One prompt run through one model (with or without adapters): what sampling and scoring after
/// it need. On the host it holds the prompt's keys and values; elsewhere only its tokens.
#[derive(Debug, Clone)]
pub struct PromptPass {
    ids: Vec<u32>,
    host: Option<HostPass>,
}

#[derive(Debug, Clone)]
struct HostPass {
    prefix: Arc<HostPrefix>,
    /// The final hidden state after the last token (before the last RMSNorm).
    last: Vec<f32>,
    /// With log-probabilities: those of the prompt's tokens (`len - 1`), and the logits after
    /// its last token.
    scored: Option<(Vec<f32>, Vec<f32>)>,
}

impl PromptPass {
    /// The prompt's tokens.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

/// Rows that continue one [`PromptPass`] under the model it was computed with.
#[derive(Debug)]
pub struct SampleGroup<'a, R> {
    /// The prompt under this group's model (computed with `adapters`).
    pub pass: &'a PromptPass,
    /// Continuations to sample.
    pub rows: usize,
    /// The group's adapters (`None`: the base model).
    pub adapters: Option<&'a Adapters>,
    /// The group's random stream, drawn row by row at each step as [`Llama::generate`] does.
    pub rng: &'a mut R,
}

impl Llama {
    /// Runs `prompt` through the model with `adapters`; with `logprobs`, also the log-probability
    /// of each of its tokens and the logits after it, which [`Llama::score_after`] needs.
    pub fn prompt_pass(
        &self,
        prompt: &[u32],
        adapters: Option<&Adapters>,
        logprobs: bool,
    ) -> Result<PromptPass, LlmError> {
        if prompt.is_empty() {
            return Err(LlmError::Request("empty prompt".into()));
        }
        self.check_context(prompt.len(), 0)?;
        let ids = prompt.to_vec();
        let Some(mut dec) = self.host_decoder_segments(&[(1, adapters)], prompt.len()) else {
            return Ok(PromptPass { ids, host: None });
        };
        let (h, p) = (self.config.hidden_size, prompt.len());
        let positions: Vec<usize> = (0..p).collect();
        let x = dec.pass(prompt, &positions, None);
        let scored = logprobs.then(|| {
            let vocab = self.config.vocab_size;
            let mut lp = Vec::with_capacity(p - 1);
            let mut after = Vec::new();
            for (c, rows) in x.chunks(LOGIT_ROWS * h).enumerate() {
                let logits = dec.logits(rows);
                // The rows that predict a prompt token; the last one's logits are kept.
                let start = c * LOGIT_ROWS + 1;
                let targets = &prompt[start.min(p)..(start + rows.len() / h).min(p)];
                lp.extend(target_logprobs(&logits[..targets.len() * vocab], targets));
                if targets.len() < rows.len() / h {
                    after = logits[targets.len() * vocab..].to_vec();
                }
            }
            (lp, after)
        });
        Ok(PromptPass {
            ids,
            host: Some(HostPass {
                prefix: Arc::new(dec.snapshot()),
                last: x[(p - 1) * h..].to_vec(),
                scored,
            }),
        })
    }

    /// Samples every group's continuations of their common prompt. On the host the groups
    /// decode in one batch, each row exactly as in the group alone; elsewhere group by group
    /// through [`Llama::generate`]. Returns each group's generations, in order.
    pub fn sample_groups<R: Rng>(
        &self,
        groups: &mut [SampleGroup<'_, R>],
        sampling: &Sampling,
        stop: &[u32],
        pad: u32,
    ) -> Result<Vec<Vec<Generation>>, LlmError> {
        sampling.validate()?;
        let Some(first) = groups.first() else {
            return Ok(Vec::new());
        };
        let ids = first.pass.ids.clone();
        if groups.iter().any(|g| g.pass.ids != ids) {
            return Err(LlmError::Request(
                "sampling groups continue different prompts".into(),
            ));
        }
        self.check_context(ids.len(), sampling.max_new_tokens)?;
        let host: Option<Vec<&HostPass>> = groups.iter().map(|g| g.pass.host.as_ref()).collect();
        let segments: Vec<(usize, Option<&Adapters>)> =
            groups.iter().map(|g| (g.rows, g.adapters)).collect();
        let cap = ids.len() + sampling.max_new_tokens;
        let dec = host
            .as_ref()
            .filter(|_| sampling.max_new_tokens > 0)
            .and_then(|_| self.host_decoder_segments(&segments, cap));
        let (Some(host), Some(dec)) = (host, dec) else {
            return groups
                .iter_mut()
                .map(|g| {
                    let prompts = vec![ids.clone(); g.rows];
                    self.generate(&prompts, sampling, stop, pad, g.rng, g.adapters)
                })
                .collect();
        };
        decode_groups(dec, &host, groups, sampling, stop, ids.len())
    }

    /// The log-probabilities of `(prompt, continuation)` for each continuation after `pass`
    /// (computed with `adapters` and log-probabilities), as [`Llama::score`] returns them: the
    /// prompt's own tokens are computed once, by the pass, and the continuations run packed
    /// into one row after its keys and values.
    pub fn score_after(
        &self,
        pass: &PromptPass,
        continuations: &[Vec<u32>],
        adapters: Option<&Adapters>,
    ) -> Result<Vec<TokenScores>, LlmError> {
        if continuations.iter().any(Vec::is_empty) {
            return Err(LlmError::Request(
                "scoring after a prompt needs non-empty continuations".into(),
            ));
        }
        let Some(host) = &pass.host else {
            let seqs: Vec<(Vec<u32>, Vec<u32>)> = continuations
                .iter()
                .map(|c| (pass.ids.clone(), c.clone()))
                .collect();
            return self.score(&seqs, adapters, FALLBACK_SCORE_TOKENS);
        };
        let Some((prompt_lp, after)) = &host.scored else {
            return Err(LlmError::Request(
                "scoring after a prompt needs its pass with log-probabilities".into(),
            ));
        };
        let p = pass.ids.len();
        let longest = continuations.iter().map(Vec::len).max().unwrap_or(0);
        self.check_context(p, longest)?;
        let mut out = first_tokens(after, continuations);
        let packed = Packed::new(continuations, p);
        if !packed.ids.is_empty() {
            let mut dec = self
                .host_decoder_segments(&[(1, adapters)], p + packed.ids.len())
                .expect("a model with a host pass runs on the host");
            dec.load_prefix(0, &host.prefix);
            let picked = packed_logprobs(&mut dec, &packed);
            append_packed(&mut out, continuations, &picked);
        }
        Ok(out
            .into_iter()
            .map(|lp| TokenScores {
                prompt_len: p,
                logprobs: prompt_lp.iter().copied().chain(lp).collect(),
            })
            .collect())
    }

    /// Refuses `prompt` tokens followed by `more` when they exceed the model's context.
    fn check_context(&self, prompt: usize, more: usize) -> Result<(), LlmError> {
        let limit = self.config.max_position.min(16_384);
        if prompt + more > limit {
            return Err(LlmError::Request(format!(
                "prompt of {prompt} tokens + {more} new tokens exceeds the context of {limit}"
            )));
        }
        Ok(())
    }
}

/// The packed tokens' log-probabilities of their targets, in [`Packed`]'s order, from a decoder
/// that holds the context they continue.
pub(super) fn packed_logprobs(dec: &mut HostDecoder<'_>, packed: &Packed) -> Vec<f32> {
    let hidden = dec.pass_packed(&packed.ids, &packed.positions, &packed.owner);
    let h = hidden.len() / packed.ids.len();
    let mut picked = Vec::with_capacity(packed.ids.len());
    for (rows, targets) in hidden
        .chunks(LOGIT_ROWS * h)
        .zip(packed.targets.chunks(LOGIT_ROWS))
    {
        picked.extend(target_logprobs(&dec.logits(rows), targets));
    }
    picked
}

/// [`Llama::sample_groups`] on the host: `dec` holds one segment per group.
fn decode_groups<R: Rng>(
    mut dec: HostDecoder<'_>,
    host: &[&HostPass],
    groups: &mut [SampleGroup<'_, R>],
    sampling: &Sampling,
    stop: &[u32],
    prompt_len: usize,
) -> Result<Vec<Vec<Generation>>, LlmError> {
    let mut row = 0;
    for (g, hp) in groups.iter().zip(host) {
        for _ in 0..g.rows {
            dec.load_prefix(row, &hp.prefix);
            row += 1;
        }
    }
    // The first token's logits, once per group (the products are batch-invariant: each row's
    // copy would be the same), then one copy per row.
    let last: Vec<f32> = host.iter().flat_map(|hp| hp.last.iter().copied()).collect();
    let firsts = dec.logits(&last);
    let vocab = firsts.len() / host.len();
    let mut logits: Vec<f32> = groups
        .iter()
        .zip(firsts.chunks_exact(vocab))
        .flat_map(|(g, row)| std::iter::repeat_n(row, g.rows).flatten().copied())
        .collect();
    let mut out: Vec<Vec<Generation>> = groups
        .iter()
        .map(|g| {
            vec![
                Generation {
                    ids: Vec::new(),
                    stopped: false,
                };
                g.rows
            ]
        })
        .collect();
    // `logits` holds one row per row still generating, in row order: a row that stops leaves
    // the batch (the others compute what they computed with it, bit for bit).
    for step in 0..sampling.max_new_tokens {
        let live = logits.len() / vocab;
        let banned = if step < sampling.min_new_tokens {
            stop
        } else {
            &[]
        };
        // Every live row's nucleus in parallel, then the draws in row order from each group's
        // generator.
        let mut picks = Pick::rows(&logits, &vec![true; live], sampling, banned)
            .into_iter()
            .flatten();
        let (mut next, mut kept) = (Vec::with_capacity(live), Vec::with_capacity(live));
        let mut row = 0;
        for (g, gens) in groups.iter_mut().zip(out.iter_mut()) {
            for made in gens.iter_mut() {
                if !made.stopped {
                    let tok = picks.next().expect("a pick per live row").draw(g.rng);
                    made.ids.push(tok);
                    made.stopped = stop.contains(&tok);
                    if !made.stopped {
                        next.push(tok);
                        kept.push(row);
                    }
                }
                row += 1;
            }
        }
        if next.is_empty() || step + 1 == sampling.max_new_tokens {
            break;
        }
        dec.keep_rows(&kept);
        logits = dec.feed(&next, &vec![prompt_len + step; kept.len()], None);
    }
    Ok(out)
}
