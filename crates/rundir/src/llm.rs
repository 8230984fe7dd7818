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
    /// The winner's self-influence: `<∇_θ r(z), ∇_θ l(z)>` for the RM head, `l` the BCE
    /// against the reference. A gradient step of size `η` on `l` changes the winner's score by
    /// `Δr ≈ -η <∇r, ∇l>`: positive lowers the winner's own score (the RM learns that it was
    /// over-rated), negative raises it ("self-flattery").
    pub self_influence: f64,
    /// `|r_win - r_ref|`, the reward gap the penalty is weighed against.
    #[serde(default)]
    pub reward_gap: f64,
    /// `<g_win, g_win - g_ref>`, the gradient term of the penalties.
    pub grad_term: f64,
    /// The RM's BCE loss on (winner, reference) before its update.
    pub rm_loss: f64,
    /// The policy's mean NLL of the winner's sequence before its update.
    pub policy_loss: f64,
    /// Whether the optimisers stepped after this iteration.
    pub step: bool,
    /// How the RM head answered its step (on the iterations where it stepped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follower: Option<FollowerResponse>,
    /// New tokens generated (reference and candidates).
    pub tokens_generated: usize,
    /// New tokens of the winner.
    pub winner_tokens: usize,
    /// The winner's text.
    pub winner_text: String,
}

/// The reward model's actual response to one optimiser step, on the winners (and references)
/// of the iterations whose gradients that step applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowerResponse {
    /// Winners in the step.
    pub winners: usize,
    /// Mean of `r_after(win) - r_before(win)`: exact, the head is linear.
    pub delta_reward: f64,
    /// Mean of the change of the margin `r(win) - r(ref)` the BCE trains.
    pub delta_margin: f64,
    /// Mean first-order prediction of `delta_reward` for a plain gradient step,
    /// `-lr <∇r(win), ∇L>`, `∇L` the gradient the step applied (AdamW rescales it).
    pub predicted_delta_reward: f64,
}

/// One probe of the policy on the held-out prompts (`probe.jsonl`): the policy's samples and
/// the base model's samples on the same prompts, both scored by the reward model (under the
/// head of that moment and under the initial head) and by the oracle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRow {
    /// Iterations trained before this probe (0: the initial policy).
    pub iteration: usize,
    /// Probe prompts.
    pub prompts: usize,
    /// Mean RM score of the policy's samples under the current head.
    pub reward: f64,
    /// Mean RM score of the base model's samples under the current head.
    pub base_reward: f64,
    /// Mean RM score of the policy's samples under the initial (frozen) head.
    pub reward_initial_head: f64,
    /// Mean RM score of the base model's samples under the initial head.
    pub base_reward_initial_head: f64,
    /// Mean oracle utility of the policy's samples, the paper's form
    /// (`clip(offset - mean NLL(prompt + response))`).
    pub utility: f64,
    /// The same of the base model's samples.
    pub base_utility: f64,
    /// Mean response-only utility of the policy's samples: minus the base model's mean NLL of
    /// the response tokens given the prompt.
    pub response_utility: f64,
    /// The same of the base model's samples.
    pub base_response_utility: f64,
    /// The proxy-minus-true gap: `(reward - base_reward) - (utility - base_utility)`.
    pub gap: f64,
    /// Mean per-token `KL(policy || base)` along the policy's samples (exact, untempered).
    pub kl: f64,
    /// Mean new tokens of the policy's samples.
    pub length: f64,
    /// Mean new tokens of the base model's samples.
    pub base_length: f64,
    /// Share of the policy's samples that hit `max_new_tokens` without a stop token.
    pub truncated: f64,
    /// Distinct unigrams over all unigrams of the policy's samples (pooled token ids).
    pub distinct_1: f64,
    /// Distinct bigrams over all bigrams of the policy's samples.
    pub distinct_2: f64,
}

impl ProbeRow {
    /// RM score (current head) of the policy's samples minus the base model's.
    pub fn reward_gain(&self) -> f64 {
        self.reward - self.base_reward
    }

    /// The same under the initial head.
    pub fn reward_gain_initial_head(&self) -> f64 {
        self.reward_initial_head - self.base_reward_initial_head
    }

    /// Utility (the paper's form) of the policy's samples minus the base model's.
    pub fn utility_gain(&self) -> f64 {
        self.utility - self.base_utility
    }

    /// Response-only utility of the policy's samples minus the base model's.
    pub fn response_utility_gain(&self) -> f64 {
        self.response_utility - self.base_response_utility
    }
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
    /// Mean penalty of the winners under this variant's rule (0 for standard).
    #[serde(default)]
    pub mean_penalty: f64,
    /// Mean `|r_win - r_ref|`.
    #[serde(default)]
    pub mean_reward_gap: f64,
    /// Mean `γ <g_win, g_win - g_ref>` over mean `|r_win - r_ref|`, `γ` the run's FPO weight
    /// even for standard: the scale the penalty works at against the reward gap.
    #[serde(default)]
    pub penalty_to_gap: f64,
    /// Mean RM-step response of the winners' scores (see [`FollowerResponse`]).
    #[serde(default)]
    pub follower_delta_reward: f64,
    /// Mean first-order prediction of it for a plain gradient step.
    #[serde(default)]
    pub follower_predicted_delta_reward: f64,
    /// New tokens generated in all.
    pub tokens_generated: usize,
    /// Checksum of the final adapters (sum of |values|), to compare runs at a glance.
    pub adapter_abs_sum: f64,
}
