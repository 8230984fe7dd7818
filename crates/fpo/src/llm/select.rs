//! Best-of-n winner selection: each rule's penalised score of every candidate against the
//! reference response, and the candidate each rule picks. Plain numbers, so that the choice the
//! loop makes can be tested on its own.

use std::collections::BTreeMap;

use crate::penalty::{Feedback, Penalty, Variant};

/// One sampled response as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Its RM score `r`.
    pub reward: f64,
    /// Its oracle utility `U`.
    pub utility: f64,
    /// `<g, g - g_ref>`, the gradient term of the penalties.
    pub grad_term: f64,
}

/// The reference response (the oracle's sample).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reference {
    /// Its RM score.
    pub reward: f64,
    /// Its oracle utility.
    pub utility: f64,
}

/// The penalty `p` puts on candidate `c` (0 under standard RLHF).
pub fn penalty(p: &Penalty, c: &Candidate, reference: &Reference) -> f64 {
    let feedback = Feedback::Preference {
        utility: c.utility,
        reference_reward: reference.reward,
        reference_utility: reference.utility,
    };
    p.value(c.reward, feedback, c.grad_term)
}

/// The candidate `p` picks: the highest `r - penalty`, the first of equals.
pub fn winner(p: &Penalty, candidates: &[Candidate], reference: &Reference) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, c) in candidates.iter().enumerate() {
        let score = c.reward - penalty(p, c, reference);
        if score > best.1 {
            best = (i, score);
        }
    }
    best.0
}

/// The candidate each rule picks, by variant.
pub fn winners(
    rules: &[Penalty],
    candidates: &[Candidate],
    reference: &Reference,
) -> BTreeMap<Variant, usize> {
    rules
        .iter()
        .map(|p| (p.variant, winner(p, candidates, reference)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn candidates() -> impl Strategy<Value = Vec<Candidate>> {
        prop::collection::vec(
            (-5.0..5.0f64, -15.0..5.0f64, 0.0..4.0f64).prop_map(|(reward, utility, grad_term)| {
                Candidate {
                    reward,
                    utility,
                    grad_term,
                }
            }),
            1..10,
        )
    }

    fn reference() -> impl Strategy<Value = Reference> {
        (-5.0..5.0f64, -15.0..5.0f64).prop_map(|(reward, utility)| Reference { reward, utility })
    }

    fn highest_reward(cs: &[Candidate]) -> usize {
        let mut best = 0;
        for (i, c) in cs.iter().enumerate() {
            if c.reward > cs[best].reward {
                best = i;
            }
        }
        best
    }

    proptest! {
        /// With `γ = 0` every rule is standard RLHF: each picks the highest reward.
        #[test]
        fn without_a_weight_every_rule_picks_the_highest_reward(cs in candidates(), r in reference()) {
            let rules = Variant::ALL.map(|v| Penalty::for_variant(v, 0.0));
            for (_, w) in winners(&rules, &cs, &r) {
                prop_assert_eq!(w, highest_reward(&cs));
            }
        }

        /// Standard RLHF ignores the weight.
        #[test]
        fn standard_picks_the_highest_reward_whatever_the_weight(cs in candidates(), r in reference(), gamma in 0.0..100.0f64) {
            let p = Penalty::for_variant(Variant::Standard, gamma);
            prop_assert_eq!(winner(&p, &cs, &r), highest_reward(&cs));
        }

        /// Practical FPO's penalty is `γ <g, g - g_ref>`: with equal rewards it picks the
        /// smallest gradient term.
        #[test]
        fn practical_with_equal_rewards_picks_the_smallest_gradient_term(mut cs in candidates(), r in reference(), gamma in 0.1..100.0f64) {
            for c in &mut cs {
                c.reward = 1.0;
            }
            let w = winner(&Penalty::for_variant(Variant::Practical, gamma), &cs, &r);
            let min = cs.iter().map(|c| c.grad_term).fold(f64::INFINITY, f64::min);
            prop_assert_eq!(cs[w].grad_term, min);
        }

        /// The winner's penalised score is at least every other candidate's.
        #[test]
        fn the_winner_maximises_the_penalised_score(cs in candidates(), r in reference(), gamma in 0.0..100.0f64) {
            for v in Variant::ALL {
                let p = Penalty::for_variant(v, gamma);
                let score = |c: &Candidate| c.reward - penalty(&p, c, &r);
                let w = winner(&p, &cs, &r);
                for c in &cs {
                    prop_assert!(score(&cs[w]) >= score(c));
                }
            }
        }
    }

    #[test]
    fn ties_go_to_the_first_candidate() {
        let c = Candidate {
            reward: 1.0,
            utility: 0.0,
            grad_term: 0.5,
        };
        let r = Reference {
            reward: 0.0,
            utility: 0.0,
        };
        assert_eq!(
            winner(&Penalty::for_variant(Variant::Relaxed, 1.0), &[c, c, c], &r),
            0
        );
    }
}
