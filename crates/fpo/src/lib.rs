//! The iterative RLHF loop of Gauthier, Bach and Jordan (2026) and the penalties of its three
//! variants: standard RLHF, relaxed FPO and practical FPO.
//!
//! - [`penalty`]: the variants as one abstraction over both loss forms (squared error and
//!   Bradley-Terry against a reference sample); the toys use it now, the LLM loop will too.
//! - [`reward`]: the LLM reward model's linear head on frozen features (Bradley-Terry fit, BCE step).
//! - [`llm`]: the LLM pipeline: LoRA policy, oracle, reward model, best-of-n loop, checkpoints.
//! - [`toy`]: the paper's two controlled environments (linear and neural-network reward models).
//!
//! - [`experiment`]: experiment files (TOML + profile + overrides) resolved once into typed
//!   settings: the only TOML this crate reads. The loop's configs are plain `serde` structs
//!   that it fills; CLI flags stay in the runner.

pub mod error;
pub mod experiment;
pub mod llm;
pub mod penalty;
pub mod reward;
pub mod toy;

pub use error::{Error, Result};
pub use penalty::{ActionGradients, Feedback, Penalty, Variant};
