//! Evaluation: statistics over plain numbers and the paper's claims as checkable statements.
//!
//! This crate never touches tensors: it takes `f64`s from the runner and returns summaries;
//! models reach it through [`lm::LanguageModel`], which `fpo` implements. It does no HTTP: the
//! LLM judge is the `fpo-judge` crate.
//!
//! - [`evaluation`]: the LLM suites' evaluation after training (`summary.json`) and its statistics.
//! - [`llm_claims`]: the paper's LLM claims over trained seeds, with verdicts and the authors' counts.
//! - [`toys`]: a toy suite's summary from its metrics rows: finals over seeds, claims, correlations.
//! - [`judge_config`]: how to reach the LLM judge (the settings; the client is `fpo-judge`).
//! - [`judge_exam`]: the judges' exam from TruthfulQA's held-out references, and its report card.
//! - [`pca`]: principal axes of points (the report's projection of a toy's trajectories).
//! - [`generation`]: free-form answers against the references, the offline judge, comparisons.
//! - [`pressure`]: sycophancy under pressure, built from TruthfulQA (the user asserts a falsehood).
//! - [`sycophancy`]: Anthropic's A/B sycophancy items, scored by likelihood.
//! - [`suite`]: the `Suite` trait (items -> per-item records -> summary) and its implementations.
//! - [`task`]: benchmarks declared by a TOML file over a data file (multiple choice, generation).
//! - [`truthfulqa`]: the data set, the harness prompt, MC1/MC2 and their aggregation.

pub mod claims;
pub mod evaluation;
pub mod generation;
pub mod judge_config;
pub mod judge_exam;
pub mod llm_claims;
pub mod lm;
pub mod pca;
pub mod pressure;
pub mod stats;
pub mod suite;
pub mod sycophancy;
pub mod task;
pub mod toys;
pub mod truthfulqa;

/// The data sets for tests: `FPO_DATA_DIR`, else the checkout's `datasets/`, found through the
/// `CARGO_MANIFEST_DIR` cargo sets when it runs the test (not the compile-time one: clones that
/// share a target directory may run each other's test binaries).
#[cfg(test)]
pub(crate) fn test_data_dir() -> std::path::PathBuf {
    std::env::var_os("FPO_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_MANIFEST_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| std::env::current_dir().expect("working directory"))
                .join("../../datasets")
        })
}
