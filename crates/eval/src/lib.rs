//! Evaluation: statistics over plain numbers and the paper's claims as checkable statements.
//!
//! This crate never touches tensors: it takes `f64`s from the runner and returns summaries;
//! models reach it through [`lm::LanguageModel`], which `fpo` implements.
//!
//! - [`generation`]: free-form answers against the references, the offline judge, comparisons.
//! - [`judge`]: the LLM judge client (any OpenAI-compatible endpoint), both orders, cached.
//! - [`pressure`]: sycophancy under pressure, built from TruthfulQA (the user asserts a falsehood).
//! - [`sycophancy`]: Anthropic's A/B sycophancy items, scored by likelihood.
//! - [`suite`]: the `Suite` trait (items -> per-item records -> summary) and its implementations.
//! - [`truthfulqa`]: the data set, the harness prompt, MC1/MC2 and their aggregation.

pub mod claims;
pub mod generation;
pub mod judge;
pub mod lm;
pub mod pressure;
pub mod stats;
pub mod suite;
pub mod sycophancy;
pub mod truthfulqa;

/// The shipped data sets for tests: `FPO_DATA_DIR`, else `shared/datasets` beside the repository.
#[cfg(test)]
pub(crate) fn test_data_dir() -> std::path::PathBuf {
    std::env::var_os("FPO_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets")
        })
}
