//! [`fpo_eval::lm::LanguageModel`] for a loaded model with optional LoRA adapters: the
//! evaluation suites score continuations through it. A primed prefix (a few-shot preamble) is
//! run once and its keys and values reused for every context that starts with its tokens.

use fpo_model::llm::{Adapters, KvCache, LlmError, LoadedModel};

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
        let cache = self.model.model.prefix_cache(&ids, self.adapters)?;
        self.prefix = Some((ids, cache));
        Ok(())
    }

    fn loglikelihoods(
        &mut self,
        context: &str,
        continuations: &[String],
    ) -> Result<Vec<f64>, LlmError> {
        let tok = &self.model.tokenizer;
        let ctx = tok.encode(context, true)?;
        let conts = continuations
            .iter()
            .map(|c| {
                let whole = tok.encode(&format!("{context}{c}"), true)?;
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
