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
    /// The quantity is within `margin` of the threshold (an equivalence claim: "ties", "no
    /// change"); the margin is written in the experiment file before the run.
    Within,
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
    /// What the verdict stands on (the judge, MC2 differences, the probe); empty for the toys.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub evidence: String,
    /// Why a verdict is what it is where the interval alone does not say (e.g. one seed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// The equivalence margin of a [`Side::Within`] claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
    /// The drift from the base model of each variant the claim involves (the probe's final
    /// per-token KL, mean over seeds), so that drifting less cannot pass for preventing collapse.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<(String, f64)>,
    /// The authors' released counts put through the same statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authors_test: Option<CountsTest>,
}

/// Pairwise counts (first wins, second wins, ties) under a sign test over the non-tied pairs,
/// with a Wilson interval of the second's share of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountsTest {
    /// The first wins.
    pub first_wins: usize,
    /// The second wins.
    pub second_wins: usize,
    /// Ties.
    pub ties: usize,
    /// Exact two-sided sign test over the non-tied pairs.
    pub sign_test_p: f64,
    /// Wilson interval of `second_wins / (first_wins + second_wins)`.
    pub second_share: (f64, f64),
}
