//! The three variants of the paper as one abstraction.
//!
//! Every variant scores a sample `z` as `r(z) - penalty(z)`, with
//! `penalty(z) = gamma * e(z) * G(z)`:
//!
//! | variant   | error factor `e`                              | gradient term `G`            |
//! |-----------|-----------------------------------------------|------------------------------|
//! | standard  | 0                                             | (unused)                     |
//! | practical | 1                                             | `<g, g - g_ref>` or `||g||²` |
//! | relaxed   | `r - u` or `σ(r - r_ref) - σ(u - u_ref)`       | same                         |
//! | influence | as relaxed                                    | `gᵀ (η H_λ)⁻¹ g` (toys only) |
//!
//! where `g = ∇_φ r(z)` is the gradient of the reward model's score with respect to its
//! trainable parameters. The squared-error form (`||g||²`, error `r - u`) is the one of the toy
//! environments; the preference form (Bradley-Terry / BCE against a reference sample) is the one
//! of the LLM pipeline. The influence variant is the exact rung of the paper's approximation
//! ladder: `H_λ` is the (damped) Hessian of the RM's training loss and `η` its learning rate, so
//! that replacing `H⁻¹` by `η I` (first-order TracIn) gives relaxed FPO back exactly; for the
//! squared-error loss its penalty is `γ/(2η)` times the sample's self-influence
//! `-I(z) = ∇r(z)ᵀ H⁻¹ ∇l(z)`. Callers compute `G` for it. Nothing here knows what a sample is: callers pass numbers and, for the
//! action gradient, the derivatives of `r` and `G` with respect to whatever they optimise.

use serde::{Deserialize, Serialize};

pub use fpo_rundir::Variant;

/// What the reward model is trained against for one sample: it fixes the loss form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Feedback {
    /// Squared-error loss `l = (r - u)²` against the oracle utility `u` of the sample.
    SquaredError {
        /// Oracle utility of the sample.
        utility: f64,
    },
    /// BCE loss of `σ(r - r_ref)` against the soft label `σ(u - u_ref)`.
    Preference {
        /// Oracle utility of the sample.
        utility: f64,
        /// RM score of the reference sample.
        reference_reward: f64,
        /// Oracle utility of the reference sample.
        reference_utility: f64,
    },
}

/// The error factor `e` of the penalty and its derivative with respect to the sample's reward.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorFactor {
    /// `e` itself.
    pub value: f64,
    /// `de/dr`, the reference reward and the utilities held fixed.
    pub d_reward: f64,
    /// `de/du`, for callers whose utility depends on the action (the linear toy's objective).
    pub d_utility: f64,
}

/// A variant with its penalty weight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Penalty {
    /// Which variant.
    pub variant: Variant,
    /// The penalty weight `gamma` (ignored by [`Variant::Standard`]).
    pub gamma: f64,
    /// The Hessian damping `λ` of [`Variant::Influence`] (0 for the others).
    #[serde(default)]
    pub damping: f64,
}

impl Penalty {
    /// A penalty of the given variant and weight.
    pub fn new(variant: Variant, gamma: f64) -> Self {
        Self {
            variant,
            gamma,
            damping: 0.0,
        }
    }

    /// The penalty of `variant` under the experiment's weight `gamma`: standard RLHF has none
    /// (weight 0), the FPO variants take `gamma`. The one place that rule is written.
    pub fn for_variant(variant: Variant, gamma: f64) -> Self {
        Self::new(
            variant,
            if variant == Variant::Standard {
                0.0
            } else {
                gamma
            },
        )
    }

    /// The influence-function penalty with Hessian damping `damping`.
    pub fn influence(gamma: f64, damping: f64) -> Self {
        Self {
            variant: Variant::Influence,
            gamma,
            damping,
        }
    }

    /// The name of this penalty in metrics and reports: the variant's, with the damping for
    /// [`Variant::Influence`].
    pub fn label(&self) -> String {
        match self.variant {
            Variant::Influence => format!("influence(damping={})", self.damping),
            v => v.name().to_owned(),
        }
    }

    /// Whether this penalty is identically zero (standard RLHF or `gamma = 0`).
    pub fn is_zero(&self) -> bool {
        self.variant == Variant::Standard || self.gamma == 0.0
    }

    /// The error factor `e` for a sample of reward `reward`.
    pub fn error(&self, reward: f64, feedback: Feedback) -> ErrorFactor {
        match (self.variant, feedback) {
            (Variant::Standard, _) => ErrorFactor {
                value: 0.0,
                d_reward: 0.0,
                d_utility: 0.0,
            },
            (Variant::Practical, _) => ErrorFactor {
                value: 1.0,
                d_reward: 0.0,
                d_utility: 0.0,
            },
            (Variant::Relaxed | Variant::Influence, Feedback::SquaredError { utility }) => {
                ErrorFactor {
                    value: reward - utility,
                    d_reward: 1.0,
                    d_utility: -1.0,
                }
            }
            (
                Variant::Relaxed | Variant::Influence,
                Feedback::Preference {
                    utility,
                    reference_reward,
                    reference_utility,
                },
            ) => {
                let p_model = sigmoid(reward - reference_reward);
                let p_label = sigmoid(utility - reference_utility);
                ErrorFactor {
                    value: p_model - p_label,
                    d_reward: p_model * (1.0 - p_model),
                    d_utility: -p_label * (1.0 - p_label),
                }
            }
        }
    }

    /// `penalty = gamma * e * G` for a sample of reward `reward` and gradient term `grad_term`
    /// (see [`grad_term`]).
    pub fn value(&self, reward: f64, feedback: Feedback, grad_term: f64) -> f64 {
        if self.is_zero() {
            return 0.0;
        }
        self.gamma * self.error(reward, feedback).value * grad_term
    }

    /// Adds `scale * ∇penalty` to `out`, given the action-gradients of the sample's reward `r`
    /// and gradient term `G`, and optionally of its utility `u`:
    /// `∇penalty = gamma * (G (e_r ∇r + e_u ∇u) + e ∇G)`. With `d.utility = None` the utility is
    /// held fixed (detached), as the paper does in the neural-network toy and the LLM pipeline.
    pub fn add_action_gradient(
        &self,
        reward: f64,
        feedback: Feedback,
        grad_term: f64,
        d: ActionGradients<'_>,
        scale: f64,
        out: &mut [f64],
    ) {
        if self.is_zero() {
            return;
        }
        let e = self.error(reward, feedback);
        let a = scale * self.gamma * e.d_reward * grad_term;
        let b = scale * self.gamma * e.value;
        for ((o, dr), dg) in out.iter_mut().zip(d.reward).zip(d.grad_term) {
            *o += a * dr + b * dg;
        }
        if let Some(du) = d.utility {
            let c = scale * self.gamma * e.d_utility * grad_term;
            for (o, du) in out.iter_mut().zip(du) {
                *o += c * du;
            }
        }
    }
}

/// Gradients with respect to the action of the quantities a penalty depends on.
#[derive(Debug, Clone, Copy)]
pub struct ActionGradients<'a> {
    /// `∇r`, the gradient of the RM score.
    pub reward: &'a [f64],
    /// `∇G`, the gradient of the gradient term (a mixed second derivative of the RM).
    pub grad_term: &'a [f64],
    /// `∇u`, where the utility is differentiated through; `None` holds it fixed.
    pub utility: Option<&'a [f64]>,
}

/// The gradient term `G`: `||g||²` for the squared-error form, `<g, g - g_ref>` for the
/// preference form.
pub fn grad_term(g: &[f64], g_ref: Option<&[f64]>) -> f64 {
    match g_ref {
        None => g.iter().map(|x| x * x).sum(),
        Some(r) => g.iter().zip(r).map(|(a, b)| a * (a - b)).sum(),
    }
}

/// The logistic function.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feedbacks() -> impl Strategy<Value = Feedback> {
        prop_oneof![
            (-20.0..20.0f64).prop_map(|utility| Feedback::SquaredError { utility }),
            (-20.0..20.0f64, -20.0..20.0f64, -20.0..20.0f64).prop_map(|(u, rr, ur)| {
                Feedback::Preference {
                    utility: u,
                    reference_reward: rr,
                    reference_utility: ur,
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn zero_gamma_or_standard_is_no_penalty(r in -50.0..50.0f64, g in -50.0..50.0f64, fb in feedbacks(), gamma in -5.0..5.0f64) {
            for v in Variant::ALL {
                prop_assert_eq!(Penalty::new(v, 0.0).value(r, fb, g), 0.0);
            }
            prop_assert_eq!(Penalty::new(Variant::Standard, gamma).value(r, fb, g), 0.0);
        }

        #[test]
        fn relaxed_vanishes_when_rm_is_right(u in -20.0..20.0f64, g in 0.0..50.0f64) {
            let p = Penalty::new(Variant::Relaxed, 0.7);
            prop_assert_eq!(p.value(u, Feedback::SquaredError { utility: u }, g), 0.0);
            // Preference form: p_model equals the soft label when the reward gap equals the utility gap.
            let fb = Feedback::Preference { utility: u, reference_reward: 1.0, reference_utility: 1.0 };
            prop_assert!(p.value(u, fb, g).abs() < 1e-12);
        }

        #[test]
        fn error_derivative_matches_finite_difference(r in -10.0..10.0f64, fb in feedbacks()) {
            let p = Penalty::new(Variant::Relaxed, 1.0);
            let h = 1e-6;
            let fd = (p.error(r + h, fb).value - p.error(r - h, fb).value) / (2.0 * h);
            prop_assert!((fd - p.error(r, fb).d_reward).abs() < 1e-6);
        }

        #[test]
        fn grad_term_forms_agree_without_reference(g in prop::collection::vec(-10.0..10.0f64, 1..20)) {
            let zeros = vec![0.0; g.len()];
            prop_assert!((grad_term(&g, None) - grad_term(&g, Some(&zeros))).abs() < 1e-9);
            prop_assert!(grad_term(&g, None) >= 0.0);
        }
    }

    #[test]
    fn practical_is_gamma_times_grad_term() {
        let p = Penalty::new(Variant::Practical, 0.1);
        assert_eq!(
            p.value(3.0, Feedback::SquaredError { utility: 1.0 }, 4.0),
            0.1 * 4.0
        );
    }

    #[test]
    fn variant_names_round_trip() {
        for v in Variant::ALL.into_iter().chain([Variant::Influence]) {
            assert_eq!(Variant::from_name(v.name()), Some(v));
        }
        assert_eq!(Variant::from_name("tracin"), None);
    }

    proptest! {
        /// First-order TracIn, `-I(z) ≈ η <∇r, ∇l>` with `∇l = 2 (r - u) ∇r` for the squared-error
        /// loss, is exactly relaxed FPO with `gamma = 2 η`.
        #[test]
        fn tracin_is_relaxed_with_gamma_two_eta(
            g in prop::collection::vec(-5.0..5.0f64, 1..12),
            r in -10.0..10.0f64,
            u in -10.0..10.0f64,
            eta in 1e-4..1.0f64,
        ) {
            let grad_l: Vec<f64> = g.iter().map(|x| 2.0 * (r - u) * x).collect();
            let tracin = eta * g.iter().zip(&grad_l).map(|(a, b)| a * b).sum::<f64>();
            let relaxed = Penalty::new(Variant::Relaxed, 2.0 * eta)
                .value(r, Feedback::SquaredError { utility: u }, grad_term(&g, None));
            prop_assert!((tracin - relaxed).abs() <= 1e-9 * (1.0 + tracin.abs()));
            // And the influence variant with H⁻¹ = η I, i.e. G = gᵀ (η H)⁻¹ g = ||g||², is relaxed.
            let influence = Penalty::influence(2.0 * eta, 0.0)
                .value(r, Feedback::SquaredError { utility: u }, grad_term(&g, None));
            prop_assert!((influence - relaxed).abs() <= 1e-12 * (1.0 + relaxed.abs()));
        }
    }
}
