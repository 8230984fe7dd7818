//! The LLM pipeline of the paper ("TruthfulQA results"): a LoRA policy, a frozen copy of the base
//! model as the oracle, a reward model made of a frozen sentence encoder and a trainable linear
//! head, and the best-of-n loop in which the three variants differ only in how they score the
//! candidates (the penalties of [`crate::penalty`], preference form).
//!
//! - [`config`]: the `[train]` section of `experiments/truthfulqa.toml`.
//! - [`data`]: training prompts and preference pairs (JSONL; errors name file and line).
//! - [`lm`]: a model (with adapters) as the evaluation suites' language model.
//! - [`train`]: the models, the reward-model warm start, and the loop with its checkpoints.
//!
//! Tensors stay inside [`train`] (generation, log-likelihoods, the LoRA step); what leaves it is
//! plain numbers: the per-iteration [`train::IterationLog`] and the final adapters on disk.

mod checkpoint;
pub mod config;
pub mod data;
pub mod evaluate;
pub mod lm;
pub mod reuse;
pub mod select;
pub mod train;

pub use config::{
    OracleConfig, ProbeConfig, RmBackbone, RmConfig, RmFeatures, RmInit, RmInput, TrainConfig,
};
pub use train::{FollowerResponse, HeadFit, IterationLog, Pipeline, ProbeRow, VariantOutcome};
