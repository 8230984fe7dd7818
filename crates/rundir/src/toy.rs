//! A toy suite's `summary.json`, and the approximation ladder's `ladder.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Claim, Summary};

/// Final metrics of one variant over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantSummary {
    /// Seeds that ran.
    pub seeds: Vec<u64>,
    /// Final true utility.
    pub true_utility: Summary,
    /// Final noise magnitude.
    pub noise: Summary,
    /// Final signal magnitude.
    pub signal: Summary,
    /// Final RM score of the action.
    pub proxy_reward: Summary,
    /// Final penalty.
    pub penalty: Summary,
    /// Pearson correlation, along each seed's logged trajectory, of this penalty with the exact
    /// (influence-function) one; a summary over seeds. Only in ladder runs, and only for
    /// penalties that are not identically zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact_penalty_correlation: Option<Summary>,
}

/// `summary.json` of a toy run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToySummary {
    /// Suite name.
    pub suite: String,
    /// Confidence level of every interval.
    pub confidence: f64,
    /// Final metrics per variant.
    pub variants: BTreeMap<String, VariantSummary>,
    /// The paper's claims, checked.
    pub claims: Vec<Claim>,
}

/// One toy of `ladder.json`: the per-rung summary and the cost of each rung (microseconds per
/// policy step; also in the toy's own `run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LadderToy {
    /// The rungs' summary.
    pub summary: ToySummary,
    /// Mean microseconds per policy step, per rung.
    pub us_per_step: BTreeMap<String, f64>,
}

/// `ladder.json`: per toy suite.
pub type Ladder = BTreeMap<String, LadderToy>;
