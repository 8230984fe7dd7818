//! The LLM suites' records: the reward model's warm start (`rm_head_fit.json`), one line of a
//! variant's `log.jsonl`, and its `outcome.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Variant;

/// Where the reward model's head starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RmInit {
    /// Fitted (Bradley-Terry) on preference pairs before the loop (the paper starts from a
    /// trained RM whose blind spots the policy then exploits).
    BradleyTerry,
    /// All zeros: every response scores 0 until the loop trains it.
    Untrained,
}

/// What the warm start of the reward model's head achieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadFit {
    /// How the head started.
    pub init: RmInit,
    /// Pairs the head was fitted on.
    pub train_pairs: usize,
    /// Pairs held out.
    pub heldout_pairs: usize,
    /// Pair accuracy on the fitted pairs.
    pub train_accuracy: f64,
    /// Pair accuracy on the held-out pairs (0.5 = chance).
    pub heldout_accuracy: f64,
    /// Bradley-Terry loss after the fit.
    pub final_loss: f64,
}

/// One line of `log.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationLog {
    /// 0-based iteration.
    pub iteration: usize,
    /// Line of the prompt in the prompts file.
    pub prompt_line: usize,
    /// Index of the winning candidate under this run's variant.
    pub winner: usize,
    /// The winner under each variant's rule, on the same candidates.
    pub winners: BTreeMap<Variant, usize>,
    /// Oracle utility of the winner.
    pub winner_utility: f64,
    /// RM score of the winner.
    pub winner_reward: f64,
    /// Oracle utility of the reference response.
    pub reference_utility: f64,
    /// RM score of the reference response.
    pub reference_reward: f64,
    /// Mean oracle utility of the candidates.
    pub mean_candidate_utility: f64,
    /// Penalty of the winner under this run's variant (0 for standard).
    pub penalty: f64,
    /// The winner's self-influence ("self-flattery"): `<∇_θ r(z), ∇_θ l(z)>` for the RM head,
    /// `l` the BCE against the reference; positive when training on it raises its own score.
    pub self_influence: f64,
    /// `<g_win, g_win - g_ref>`, the gradient term of the penalties.
    pub grad_term: f64,
    /// The RM's BCE loss on (winner, reference) before its update.
    pub rm_loss: f64,
    /// The policy's mean NLL of the winner's sequence before its update.
    pub policy_loss: f64,
    /// Whether the optimisers stepped after this iteration.
    pub step: bool,
    /// New tokens generated (reference and candidates).
    pub tokens_generated: usize,
    /// New tokens of the winner.
    pub winner_tokens: usize,
    /// The winner's text.
    pub winner_text: String,
}

/// The result of one variant's training: read back from its `log.jsonl`, so a resumed run
/// reports the same figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantOutcome {
    /// The variant.
    pub variant: Variant,
    /// Its seed.
    pub seed: u64,
    /// Iterations logged.
    pub iterations: usize,
    /// Share of iterations whose winner under this variant differs from the winner under each
    /// variant's rule (on the same candidates).
    pub winner_change_share: BTreeMap<Variant, f64>,
    /// Mean oracle utility of the winners, first and last quarter of the run.
    pub winner_utility_first_quarter: f64,
    /// See `winner_utility_first_quarter`.
    pub winner_utility_last_quarter: f64,
    /// Mean RM score of the winners, first and last quarter.
    pub winner_reward_first_quarter: f64,
    /// See `winner_reward_first_quarter`.
    pub winner_reward_last_quarter: f64,
    /// Mean self-influence of the winners.
    pub mean_self_influence: f64,
    /// New tokens generated in all.
    pub tokens_generated: usize,
    /// Checksum of the final adapters (sum of |values|), to compare runs at a glance.
    pub adapter_abs_sum: f64,
}
