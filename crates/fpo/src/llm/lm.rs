//! [`fpo_eval::lm::LanguageModel`] for a loaded model with optional LoRA adapters: the
//! evaluation suites score continuations through it. A primed prefix (a few-shot preamble) is
//! run once and its keys and values reused for every context that starts with its tokens.

use fpo_model::encoder::SentenceEncoder;
use fpo_model::llm::{Adapters, KvCache, LlmError, LoadedModel, Message, Sampling};
use rand::SeedableRng;

/// Rows per generation batch: each decoding step reads the weights once for up to 8 rows (the
/// quantised kernel's widest register tile, see `fpo_model::llm::quant`).
const ANSWER_BATCH: usize = 8;

/// A model (base, or base + adapters) as the evaluation suites see it.
#[derive(Debug)]
pub struct ModelLm<'a> {
    model: &'a LoadedModel,
    adapters: Option<&'a Adapters>,
    prefix: Option<(Vec<u32>, KvCache)>,
}

impl<'a> ModelLm<'a> {
    /// Wraps `model`, with `adapters` applied when given.
    pub fn new(model: &'a LoadedModel, adapters: Option<&'a Adapters>) -> Self {
        Self {
            model,
            adapters,
            prefix: None,
        }
    }
}

impl fpo_eval::lm::LanguageModel for ModelLm<'_> {
    type Error = LlmError;

    fn prime(&mut self, prefix: &str) -> Result<(), LlmError> {
        let tok = &self.model.tokenizer;
        let mut ids = tok.encode(prefix, true)?;
        // The last token may merge with what follows; keep it out of the shared part.
        ids.pop();
        if self.prefix.as_ref().is_some_and(|(have, _)| *have == ids) {
            return Ok(());
        }
        let cache = self.model.model.prefix_cache(&ids, self.adapters)?;
        self.prefix = Some((ids, cache));
        Ok(())
    }

    /// One handle per core on a CPU backend; a GPU runs one stream of batches instead.
    fn fork(&self) -> Option<Self> {
        if !fpo_model::backend::on_host(self.model.model.device()) {
            return None;
        }
        Some(Self {
            model: self.model,
            adapters: self.adapters,
            prefix: self.prefix.clone(),
        })
    }

    fn chat_context(&self, user: &str) -> Result<String, LlmError> {
        self.model
            .tokenizer
            .apply_chat_template(&[Message::new("user", user)], true)
    }

    fn loglikelihoods(
        &mut self,
        context: &str,
        continuations: &[String],
    ) -> Result<Vec<f64>, LlmError> {
        let tok = &self.model.tokenizer;
        // A context rendered by the chat template carries its own BOS.
        let bos_text = tok.bos.and_then(|b| tok.id_to_token(b));
        let add = !bos_text.is_some_and(|b| context.starts_with(&b));
        let ctx = tok.encode(context, add)?;
        let conts = continuations
            .iter()
            .map(|c| {
                let whole = tok.encode(&format!("{context}{c}"), add)?;
                Ok(if whole.starts_with(&ctx) && whole.len() > ctx.len() {
                    whole[ctx.len()..].to_vec()
                } else {
                    tok.encode(c, false)?
                })
            })
            .collect::<Result<Vec<_>, LlmError>>()?;
        let empty = KvCache::new();
        let (cache, rest) = match &self.prefix {
            Some((ids, cache)) if ctx.len() > ids.len() && ctx.starts_with(ids) => {
                (cache, &ctx[ids.len()..])
            }
            _ => (&empty, &ctx[..]),
        };
        let lps = self
            .model
            .model
            .continuation_logprobs(cache, rest, &conts, self.adapters)?;
        Ok(lps
            .iter()
            .map(|l| l.iter().map(|&x| f64::from(x)).sum())
            .collect())
    }
}

impl fpo_eval::lm::ChatModel for ModelLm<'_> {
    type Error = LlmError;

    fn answer(
        &mut self,
        user_messages: &[String],
        max_new_tokens: usize,
    ) -> Result<Vec<String>, LlmError> {
        let greedy = fpo_eval::lm::GenerationOptions {
            chat: true,
            max_new_tokens,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            until: Vec::new(),
        };
        fpo_eval::lm::Generator::generate(self, user_messages, &greedy)
    }
}

impl fpo_eval::lm::Generator for ModelLm<'_> {
    type Error = LlmError;

    fn generate(
        &mut self,
        prompts: &[String],
        options: &fpo_eval::lm::GenerationOptions,
    ) -> Result<Vec<String>, LlmError> {
        let tok = &self.model.tokenizer;
        let ids = prompts
            .iter()
            .map(|p| {
                if options.chat {
                    tok.encode_chat(&[Message::new("user", p)], true)
                } else {
                    tok.encode(p, true)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sampling = Sampling {
            max_new_tokens: options.max_new_tokens,
            min_new_tokens: 0,
            temperature: options.temperature,
            top_p: options.top_p,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.seed);
        let mut out = Vec::with_capacity(prompts.len());
        for chunk in ids.chunks(ANSWER_BATCH) {
            let gens = self.model.model.generate(
                chunk,
                &sampling,
                &tok.eos,
                tok.pad,
                &mut rng,
                self.adapters,
            )?;
            for g in gens {
                let text = tok.decode(&g.ids, true)?;
                out.push(
                    fpo_eval::lm::cut_at_stop(&text, &options.until)
                        .trim()
                        .to_owned(),
                );
            }
        }
        Ok(out)
    }
}

/// The reward model's sentence encoder as `eval`'s embedder.
#[derive(Debug)]
pub struct EncoderEmbedder<'a> {
    encoder: &'a SentenceEncoder,
    max_tokens: usize,
}

impl<'a> EncoderEmbedder<'a> {
    /// Embeds with `encoder`, each text cut to `max_tokens`.
    pub fn new(encoder: &'a SentenceEncoder, max_tokens: usize) -> Self {
        Self {
            encoder,
            max_tokens,
        }
    }
}

impl fpo_eval::lm::Embedder for EncoderEmbedder<'_> {
    type Error = LlmError;

    fn embed(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        self.encoder.embed(&refs, self.max_tokens, 16)
    }
}
