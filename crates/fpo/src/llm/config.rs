//! The `[train]` section of an LLM experiment: every hyperparameter of the paper's pipeline.

use std::path::PathBuf;

use fpo_model::llm::LoraConfig;
use serde::{Deserialize, Serialize};

use crate::error::{check_non_negative, check_positive, invalid};

/// The training loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Policy model: a `.gguf` file or a Hugging Face folder; a relative path is looked up in the
    /// models folder (`FPO_MODELS_DIR`, filled by `just models`).
    pub model: PathBuf,
    /// Training prompts: JSONL with a `prompt` field; relative to the data folder.
    pub prompts: PathBuf,
    /// Iterations, one training prompt each, drawn from the file without the probe's prompts.
    pub iterations: usize,
    /// Each seed trains on its own shuffled draw of the prompts (the variants of a seed share
    /// it; the order is in each line of `log.jsonl`); `false`: the file's order.
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// Longest prompt in tokens after the chat template (longer user messages are cut).
    pub max_prompt_tokens: usize,
    /// Candidates sampled from the policy per prompt (best-of-n).
    pub candidates: usize,
    /// Fewest new tokens per response (stop tokens are suppressed before).
    pub min_new_tokens: usize,
    /// Most new tokens per response.
    pub max_new_tokens: usize,
    /// Sampling temperature of the policy and of the reference response.
    pub temperature: f64,
    /// Nucleus sampling of the policy and of the reference response.
    pub top_p: f64,
    /// AdamW learning rate of the LoRA adapters.
    pub policy_lr: f64,
    /// AdamW weight decay of the adapters (torch's default 0.01).
    #[serde(default = "default_weight_decay")]
    pub policy_weight_decay: f64,
    /// Iterations whose gradients are summed before one optimiser step (policy and RM alike).
    pub grad_accumulation: usize,
    /// Checkpoint every this many iterations (a multiple of `grad_accumulation`).
    pub checkpoint_every: usize,
    /// LoRA adapters of the policy.
    pub lora: LoraConfig,
    /// The reward model.
    pub rm: RmConfig,
    /// The oracle utility.
    #[serde(default)]
    pub oracle: OracleConfig,
    /// The held-out probe.
    #[serde(default)]
    pub probe: ProbeConfig,
}

fn default_weight_decay() -> f64 {
    0.01
}

fn one() -> f64 {
    1.0
}

fn one_step() -> usize {
    1
}

fn yes() -> bool {
    true
}

/// The held-out probe: prompts never trained on, sampled by the policy (and once by the base
/// model) every `every` iterations, to measure collapse apart from the training prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Probe prompts, spread evenly over the prompts file and removed from the training draw
    /// (0: no probe).
    pub prompts: usize,
    /// Probe before the first iteration, every this many iterations, and after the last.
    pub every: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            prompts: 16,
            every: 16,
        }
    }
}

/// What the reward model reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RmInput {
    /// The response text alone (the paper).
    Response,
    /// The prompt, a blank line, then the response.
    PromptAndResponse,
}

pub use fpo_rundir::llm::RmInit;

/// What the reward model's features are read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RmBackbone {
    /// The sentence encoder (`encoder`; MiniLM by default): mean-pooled.
    #[default]
    Encoder,
    /// The policy's base model (an RM initialised from the policy's base, as is common
    /// practice): its final hidden states, mean-pooled over the RM's text.
    BaseMean,
    /// The policy's base model: the final hidden state of the RM's text's last token.
    BaseLast,
}

/// How the reward model's features come out of the encoder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RmFeatures {
    /// Mean-pooled and L2-normalised (MiniLM's own setting, and the default).
    #[default]
    Normalised,
    /// Mean-pooled, not normalised: their norms vary with the text, and so does the reward's
    /// scale.
    Raw,
}

/// The reward model: frozen features (a sentence encoder's, or the base model's hidden states)
/// and a trainable head, linear or a small tanh MLP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RmConfig {
    /// Encoder folder (safetensors + tokenizer.json); relative: in the models folder.
    pub encoder: PathBuf,
    /// Most encoder tokens per text.
    pub max_tokens: usize,
    /// What the RM reads.
    pub input: RmInput,
    /// The sentence encoder's features, or the policy's base model's hidden states.
    #[serde(default)]
    pub backbone: RmBackbone,
    /// Normalised or raw features.
    #[serde(default)]
    pub features: RmFeatures,
    /// Every feature is multiplied by this before the head reads it: with `r = w·(sφ) + b`, the
    /// reward's spread and `∇_w r = sφ` both scale with `s`, and so do the follower's response and
    /// the penalties built on them.
    #[serde(default = "one")]
    pub feature_scale: f64,
    /// Tanh hidden units of the head: 0 (the default) for the linear head `r = w·φ + b`, whose
    /// gradient `(φ, 1)` does not depend on its weights; `H` for `r = v·tanh(Wφ + c) + b`, whose
    /// gradient does.
    #[serde(default)]
    pub head_hidden: usize,
    /// AdamW learning rate of the head in the loop.
    pub lr: f64,
    /// AdamW steps of the head per update: the first on the accumulated gradient, each further
    /// one on the gradient of the same pairs' BCE at the head as it then is.
    #[serde(default = "one_step")]
    pub head_steps: usize,
    /// AdamW weight decay of the head.
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Where the head starts.
    pub init: RmInit,
    /// Preference pairs for the warm start (`{chosen, rejected}` JSONL); relative to the data folder.
    pub pairs: PathBuf,
    /// Use only the first this many pairs (0: all).
    #[serde(default)]
    pub pairs_limit: usize,
    /// Share of the pairs held out to measure the warm start's pair accuracy.
    pub holdout: f64,
    /// The Bradley-Terry fit.
    #[serde(default)]
    pub fit: crate::reward::BradleyTerry,
}

/// The oracle ("human") utility `U = clip(offset - mean NLL(prompt + response), low, high)`
/// under a frozen copy of the base model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OracleConfig {
    /// `offset`.
    pub offset: f64,
    /// Lower clip.
    pub low: f64,
    /// Upper clip.
    pub high: f64,
}

impl Default for OracleConfig {
    fn default() -> Self {
        Self {
            offset: 5.0,
            low: -15.0,
            high: 5.0,
        }
    }
}

impl OracleConfig {
    /// `U` of a sequence whose mean token NLL is `nll`.
    pub fn utility(&self, nll: f64) -> f64 {
        (self.offset - nll).clamp(self.low, self.high)
    }
}

impl TrainConfig {
    /// Checks ranges and consistency; errors name the key (`train.<key>`).
    pub fn validate(&self) -> crate::Result<()> {
        let positive = [
            ("train.iterations", self.iterations),
            ("train.max_prompt_tokens", self.max_prompt_tokens),
            ("train.candidates", self.candidates),
            ("train.max_new_tokens", self.max_new_tokens),
            ("train.grad_accumulation", self.grad_accumulation),
            ("train.checkpoint_every", self.checkpoint_every),
            ("train.rm.max_tokens", self.rm.max_tokens),
            ("train.probe.every", self.probe.every),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.min_new_tokens > self.max_new_tokens {
            return Err(invalid(
                "train.min_new_tokens",
                format!(
                    "{} exceeds max_new_tokens {}",
                    self.min_new_tokens, self.max_new_tokens
                ),
            ));
        }
        if !self.checkpoint_every.is_multiple_of(self.grad_accumulation) {
            return Err(invalid(
                "train.checkpoint_every",
                format!(
                    "{} is not a multiple of grad_accumulation {} (checkpoints fall between optimiser steps)",
                    self.checkpoint_every, self.grad_accumulation
                ),
            ));
        }
        check_non_negative("train.temperature", self.temperature)?;
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(invalid(
                "train.top_p",
                format!("must be in (0, 1], got {}", self.top_p),
            ));
        }
        check_positive("train.policy_lr", self.policy_lr)?;
        check_non_negative("train.policy_weight_decay", self.policy_weight_decay)?;
        check_positive("train.rm.lr", self.rm.lr)?;
        check_positive("train.rm.feature_scale", self.rm.feature_scale)?;
        if !(1..=1000).contains(&self.rm.head_steps) {
            return Err(invalid(
                "train.rm.head_steps",
                format!("must be in 1..=1000, got {}", self.rm.head_steps),
            ));
        }
        if self.rm.head_hidden > 4096 {
            return Err(invalid(
                "train.rm.head_hidden",
                format!("must be in 0..=4096, got {}", self.rm.head_hidden),
            ));
        }
        check_non_negative("train.rm.weight_decay", self.rm.weight_decay)?;
        self.lora
            .check()
            .map_err(|(key, m)| invalid(format!("train.lora.{key}"), m))?;
        if !(self.rm.holdout > 0.0 && self.rm.holdout < 1.0) {
            return Err(invalid(
                "train.rm.holdout",
                format!("must be in (0, 1), got {}", self.rm.holdout),
            ));
        }
        if self.oracle.low >= self.oracle.high
            || self.oracle.low.is_nan()
            || self.oracle.high.is_nan()
        {
            return Err(invalid(
                "train.oracle.low",
                "must be below train.oracle.high",
            ));
        }
        Ok(())
    }
}
