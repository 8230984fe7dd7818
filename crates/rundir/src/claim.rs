//! A claim of the paper, checked: what `summary.json` records of it.

use serde::{Deserialize, Serialize};

use crate::Summary;

/// Which side of the threshold the claim asserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The quantity exceeds the threshold.
    Above,
    /// The quantity is below the threshold.
    Below,
}

/// The outcome of a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The whole confidence interval is on the claimed side.
    Reproduced,
    /// The mean is on the claimed side, the interval is not.
    Inconclusive,
    /// The mean is on the other side.
    NotReproduced,
    /// A variant the claim needs was not run.
    NotRun,
}

/// One checked claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// Stable identifier, e.g. `nn.relaxed_beats_standard_utility`.
    pub id: String,
    /// The claim in words.
    pub statement: String,
    /// The authors' figure for it, in words.
    pub authors: String,
    /// What the summary below measures.
    pub quantity: String,
    /// Our value with its confidence interval (absent when a variant was not run).
    pub ours: Option<Summary>,
    /// The claimed side.
    pub side: Side,
    /// The threshold.
    pub threshold: f64,
    /// The outcome.
    pub verdict: Verdict,
}
