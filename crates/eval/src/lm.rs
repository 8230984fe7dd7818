//! What an evaluation needs from a language model, as plain strings and numbers: the model
//! side (tokenisation, caching, tensors) lives in `fpo`, which implements this trait.

/// A language model that scores continuations.
pub trait LanguageModel {
    /// The model's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Announces a text that many later contexts start with (a few-shot preamble), so that an
    /// implementation can compute it once. The default does nothing.
    fn prime(&mut self, _prefix: &str) -> Result<(), Self::Error> {
        Ok(())
    }

    /// `user` as one user message in the model's chat template, ready for the assistant's reply
    /// (for prompt formats that use the template).
    fn chat_context(&self, user: &str) -> Result<String, Self::Error>;

    /// The summed log-likelihood of each continuation after `context`, tokenised as
    /// lm-evaluation-harness does: the continuation's tokens are those of `context +
    /// continuation` after the tokens of `context`.
    fn loglikelihoods(
        &mut self,
        context: &str,
        continuations: &[String],
    ) -> Result<Vec<f64>, Self::Error>;

    /// An independent handle on the same weights, for scoring other items on another thread;
    /// `None` (the default) when the model cannot be shared.
    fn fork(&self) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }
}

/// A chat model that answers user messages.
pub trait ChatModel {
    /// The model's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Greedy answers (the chat template applied, at most `max_new_tokens` each) to each user
    /// message, in order.
    fn answer(
        &mut self,
        user_messages: &[String],
        max_new_tokens: usize,
    ) -> Result<Vec<String>, Self::Error>;
}

/// A sentence encoder, for similarity to reference answers.
pub trait Embedder {
    /// The encoder's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// One unit-length embedding per text.
    fn embed(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, Self::Error>;
}

/// How a task's answers are generated.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationOptions {
    /// The prompt as one user message in the model's chat template (else as plain text).
    pub chat: bool,
    /// New tokens at most.
    pub max_new_tokens: usize,
    /// 0: greedy.
    pub temperature: f64,
    /// Nucleus mass when sampling.
    pub top_p: f64,
    /// Seed of the draws (answers depend on it and on the prompts' order only).
    pub seed: u64,
    /// The answer ends before the first of these strings.
    pub until: Vec<String>,
}

/// A model that continues prompts.
pub trait Generator {
    /// The model's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// One answer per prompt, in order, cut before the first stop string.
    fn generate(
        &mut self,
        prompts: &[String],
        options: &GenerationOptions,
    ) -> Result<Vec<String>, Self::Error>;
}

/// `text` cut before the first of `until` (the whole text when none occurs).
pub fn cut_at_stop<'a>(text: &'a str, until: &[String]) -> &'a str {
    let end = until
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
        .unwrap_or(text.len());
    &text[..end]
}
