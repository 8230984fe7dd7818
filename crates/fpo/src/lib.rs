//! The iterative RLHF loop of Gauthier, Bach and Jordan (2026) and the penalties of its three
//! variants: standard RLHF, relaxed FPO and practical FPO.
//!
//! - [`penalty`]: the variants as one abstraction over both loss forms (squared error and
//!   Bradley-Terry against a reference sample); the toys use it now, the LLM loop will too.
//! - [`reward`]: the LLM reward model's linear head on frozen features (Bradley-Terry fit, BCE step).
//! - [`llm`]: the LLM pipeline: LoRA policy, oracle, reward model, best-of-n loop, checkpoints.
//! - [`toy`]: the paper's two controlled environments (linear and neural-network reward models).
//!
//! This crate never parses TOML or CLI flags: its configs are plain `serde` structs that the
//! runner fills.

pub mod error;
pub mod llm;
pub mod penalty;
pub mod reward;
pub mod toy;

pub use error::{Error, Result};
pub use penalty::{ActionGradients, Feedback, Penalty, Variant};
