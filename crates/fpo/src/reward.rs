//! The LLM pipeline's reward model head: a linear map on frozen sentence features,
//! `r(z) = wᵀ φ(z) + b`, so that its parameter gradient is `∇_θ r(z) = (φ(z), 1)` and the FPO
//! penalties need no autodiff. Features come from the encoder in `fpo-model` as plain numbers.
//!
//! The head starts from a Bradley-Terry fit on preference pairs (the paper starts from a trained
//! RM whose blind spots the policy then exploits) and is updated in the loop with the binary
//! cross-entropy of `σ(r(a) - r(b))` against a soft label.

use serde::{Deserialize, Serialize};

use crate::penalty::sigmoid;

/// A linear head `r(z) = wᵀ φ(z) + b`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearHead {
    /// Weights, one per feature.
    pub w: Vec<f64>,
    /// Bias.
    pub b: f64,
}

/// Settings of the Bradley-Terry fit (full-batch Adam, deterministic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BradleyTerry {
    /// Full-batch steps.
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// L2 penalty on `w` (not on `b`).
    pub l2: f64,
}

impl Default for BradleyTerry {
    fn default() -> Self {
        Self {
            steps: 300,
            lr: 0.05,
            l2: 1e-3,
        }
    }
}

fn dot(w: &[f64], phi: &[f32]) -> f64 {
    w.iter().zip(phi).map(|(w, &x)| w * f64::from(x)).sum()
}

/// `log(1 + e^x)`, stable.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

impl LinearHead {
    /// The zero head (every score 0).
    pub fn zeros(dim: usize) -> Self {
        Self {
            w: vec![0.0; dim],
            b: 0.0,
        }
    }

    /// `r(z)`.
    pub fn score(&self, phi: &[f32]) -> f64 {
        dot(&self.w, phi) + self.b
    }

    /// `∇_θ r(z)` in the layout `(w, b)`.
    pub fn param_grad(&self, phi: &[f32]) -> Vec<f64> {
        phi.iter()
            .map(|&x| f64::from(x))
            .chain(std::iter::once(1.0))
            .collect()
    }

    /// Mean Bradley-Terry loss `-log σ(r(chosen) - r(rejected))` over pairs, plus `l2/2 ||w||²`.
    pub fn bt_loss(&self, pairs: &[(Vec<f32>, Vec<f32>)], l2: f64) -> f64 {
        let data: f64 = pairs
            .iter()
            .map(|(c, r)| softplus(-(self.score(c) - self.score(r))))
            .sum::<f64>()
            / pairs.len().max(1) as f64;
        data + 0.5 * l2 * self.w.iter().map(|w| w * w).sum::<f64>()
    }

    /// Gradient of [`LinearHead::bt_loss`] in the layout `(w, b)` (`b` cancels in a difference).
    pub fn bt_grad(&self, pairs: &[(Vec<f32>, Vec<f32>)], l2: f64) -> Vec<f64> {
        let n = pairs.len().max(1) as f64;
        let mut g: Vec<f64> = self.w.iter().map(|w| l2 * w).chain([0.0]).collect();
        for (c, r) in pairs {
            // d/dΔ softplus(-Δ) = -σ(-Δ).
            let coef = -sigmoid(-(self.score(c) - self.score(r))) / n;
            for ((gi, &xc), &xr) in g.iter_mut().zip(c).zip(r) {
                *gi += coef * (f64::from(xc) - f64::from(xr));
            }
        }
        g
    }

    /// Fits a head on (chosen, rejected) feature pairs; returns it and the loss after every step.
    pub fn fit_bradley_terry(
        dim: usize,
        pairs: &[(Vec<f32>, Vec<f32>)],
        cfg: &BradleyTerry,
    ) -> (Self, Vec<f64>) {
        let mut head = Self::zeros(dim);
        // Plain Adam: the L2 term is in the gradient.
        let mut adam = AdamW::new(dim + 1, 0.0);
        let mut losses = Vec::with_capacity(cfg.steps);
        for _ in 0..cfg.steps {
            let g = head.bt_grad(pairs, cfg.l2);
            adam.step(&mut head, &g, cfg.lr);
            losses.push(head.bt_loss(pairs, cfg.l2));
        }
        (head, losses)
    }

    /// Share of pairs whose chosen side scores higher (ties count half).
    pub fn pair_accuracy(&self, pairs: &[(Vec<f32>, Vec<f32>)]) -> f64 {
        let wins: f64 = pairs
            .iter()
            .map(|(c, r)| {
                let d = self.score(c) - self.score(r);
                if d > 0.0 {
                    1.0
                } else if d == 0.0 {
                    0.5
                } else {
                    0.0
                }
            })
            .sum();
        wins / pairs.len().max(1) as f64
    }

    /// One SGD step on the binary cross-entropy of `σ(r(a) - r(b))` against `label` (the soft
    /// preference for `a`); returns the loss before the step.
    pub fn bce_step(&mut self, a: &[f32], b: &[f32], label: f64, lr: f64) -> f64 {
        let (loss, grad) = bce(self, a, b, label);
        for (w, g) in self.w.iter_mut().zip(&grad) {
            *w -= lr * g;
        }
        loss
    }
}

/// The binary cross-entropy of `σ(r(a) - r(b))` against the soft label `label`, and its
/// gradient in the layout `(w, b)` (`b` cancels in the difference).
pub fn bce(head: &LinearHead, a: &[f32], b: &[f32], label: f64) -> (f64, Vec<f64>) {
    let d = head.score(a) - head.score(b);
    let loss = label * softplus(-d) + (1.0 - label) * softplus(d);
    let coef = sigmoid(d) - label;
    let grad = a
        .iter()
        .zip(b)
        .map(|(&xa, &xb)| coef * (f64::from(xa) - f64::from(xb)))
        .chain([0.0])
        .collect();
    (loss, grad)
}

/// AdamW (torch's `AdamW`: bias-corrected moments, decoupled weight decay on every parameter)
/// for a [`LinearHead`]; serialisable, so that a checkpoint carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamW {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator guard.
    pub eps: f64,
    /// Decoupled weight decay (`p -= lr * wd * p` before the Adam step).
    pub weight_decay: f64,
    /// Steps taken.
    pub t: u64,
    /// First moments, layout `(w, b)`.
    pub m: Vec<f64>,
    /// Second moments.
    pub v: Vec<f64>,
}

impl AdamW {
    /// torch's defaults (0.9, 0.999, 1e-8) for `n` parameters.
    pub fn new(n: usize, weight_decay: f64) -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            t: 0,
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    /// One step on `head` along `grad` (layout `(w, b)`).
    pub fn step(&mut self, head: &mut LinearHead, grad: &[f64], lr: f64) {
        self.t += 1;
        let t = i32::try_from(self.t).unwrap_or(i32::MAX);
        let (c1, c2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        let dim = head.w.len();
        for (i, &g) in grad.iter().enumerate().take(dim + 1) {
            self.m[i] = self.beta1 * self.m[i] + (1.0 - self.beta1) * g;
            self.v[i] = self.beta2 * self.v[i] + (1.0 - self.beta2) * g * g;
            let step = lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + self.eps);
            let p = if i < dim { &mut head.w[i] } else { &mut head.b };
            *p -= lr * self.weight_decay * *p + step;
        }
    }
}

/// How the head answered one optimiser step (`before` -> `after`) on the `(winner, reference)`
/// features of the iterations whose gradient `grad` (layout `(w, b)`) that step applied with
/// learning rate `lr`: the exact change of the winners' scores and margins (the head is
/// linear, so nothing is approximated) and the first-order prediction of a plain gradient
/// step, `-lr <∇r(win), grad>`.
pub fn follower_response(
    before: &LinearHead,
    after: &LinearHead,
    pairs: &[(Vec<f32>, Vec<f32>)],
    grad: &[f64],
    lr: f64,
) -> fpo_rundir::llm::FollowerResponse {
    let n = pairs.len().max(1) as f64;
    let (mut dr, mut dm, mut pred) = (0.0, 0.0, 0.0);
    for (win, reference) in pairs {
        let d_win = after.score(win) - before.score(win);
        dr += d_win;
        dm += d_win - (after.score(reference) - before.score(reference));
        let g = before.param_grad(win);
        pred -= lr * g.iter().zip(grad).map(|(a, b)| a * b).sum::<f64>();
    }
    fpo_rundir::llm::FollowerResponse {
        winners: pairs.len(),
        delta_reward: dr / n,
        delta_margin: dm / n,
        predicted_delta_reward: pred / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Pairs whose preference follows a hidden linear utility, with label noise.
    fn synthetic(n: usize, dim: usize, seed: u64) -> Vec<(Vec<f32>, Vec<f32>)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let truth: Vec<f64> = (0..dim)
            .map(|i| if i % 2 == 0 { 1.0 } else { -0.5 })
            .collect();
        (0..n)
            .map(|_| {
                let a: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let b: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let d = dot(&truth, &a) - dot(&truth, &b);
                if rng.random::<f64>() < sigmoid(3.0 * d) {
                    (a, b)
                } else {
                    (b, a)
                }
            })
            .collect()
    }

    #[test]
    fn bt_gradient_matches_central_differences() {
        let pairs = synthetic(20, 5, 1);
        let mut head = LinearHead {
            w: vec![0.3, -0.2, 0.1, 0.5, -0.4],
            b: 0.7,
        };
        let g = head.bt_grad(&pairs, 0.01);
        for i in 0..5 {
            let h = 1e-6;
            head.w[i] += h;
            let up = head.bt_loss(&pairs, 0.01);
            head.w[i] -= 2.0 * h;
            let down = head.bt_loss(&pairs, 0.01);
            head.w[i] += h;
            assert!((g[i] - (up - down) / (2.0 * h)).abs() < 1e-7, "w[{i}]");
        }
        assert_eq!(g[5], 0.0, "the bias cancels in a difference");
        assert_eq!(head.param_grad(&[1.0, 2.0]), vec![1.0, 2.0, 1.0]);
    }

    #[test]
    fn the_fit_learns_a_linear_preference_and_generalises() {
        let train = synthetic(400, 8, 2);
        let test = synthetic(400, 8, 3);
        let (head, losses) = LinearHead::fit_bradley_terry(8, &train, &BradleyTerry::default());
        assert!(losses.last().unwrap() < &(0.9 * std::f64::consts::LN_2));
        assert!(losses.windows(2).filter(|w| w[1] > w[0] + 1e-9).count() < 10);
        let acc = head.pair_accuracy(&test);
        assert!(acc > 0.75, "held-out accuracy {acc}");
        assert_eq!(LinearHead::zeros(8).pair_accuracy(&test), 0.5);
        let (again, _) = LinearHead::fit_bradley_terry(8, &train, &BradleyTerry::default());
        assert_eq!(again, head, "deterministic");
    }

    #[test]
    fn a_bce_step_moves_the_margin_toward_the_label() {
        let mut head = LinearHead::zeros(2);
        let (a, b) = ([1.0f32, 0.0], [0.0f32, 1.0]);
        let before = head.bce_step(&a, &b, 0.9, 0.5);
        assert!((before - std::f64::consts::LN_2).abs() < 1e-12);
        assert!(head.score(&a) > head.score(&b));
        let after = head.bce_step(&a, &b, 0.9, 0.0);
        assert!(after < before);
    }

    /// Catches a follower response read from the wrong head (before twice, or after twice), a
    /// margin that forgets the reference, or a prediction with the wrong sign or scale: the
    /// first AdamW step is worked out by hand (bias-corrected `m / sqrt(v)` is `sign(g)`).
    #[test]
    fn the_follower_response_is_the_score_change_of_a_hand_computed_step() {
        let before = LinearHead {
            w: vec![0.5, -1.0],
            b: 0.25,
        };
        let pairs = vec![(vec![1.0f32, 2.0], vec![0.0f32, 1.0])];
        let grad = vec![0.3, 0.2, 0.1];
        let (lr, wd) = (0.01, 0.1);
        let mut after = before.clone();
        AdamW::new(3, wd).step(&mut after, &grad, lr);
        // By hand: p -= lr * wd * p + lr * sign(g) (up to AdamW's eps: ~1e-9 here).
        let hand = |p: f64, g: f64| p - lr * wd * p - lr * g.signum();
        let (w0, w1, b) = (hand(0.5, 0.3), hand(-1.0, 0.2), hand(0.25, 0.1));
        let r = |w0: f64, w1: f64, b: f64, x: [f64; 2]| w0 * x[0] + w1 * x[1] + b;
        let d_win = r(w0, w1, b, [1.0, 2.0]) - r(0.5, -1.0, 0.25, [1.0, 2.0]);
        let d_ref = r(w0, w1, b, [0.0, 1.0]) - r(0.5, -1.0, 0.25, [0.0, 1.0]);
        let f = follower_response(&before, &after, &pairs, &grad, lr);
        assert_eq!(f.winners, 1);
        assert!((f.delta_reward - d_win).abs() < 1e-8, "{f:?} vs {d_win}");
        assert!((f.delta_margin - (d_win - d_ref)).abs() < 1e-8, "{f:?}");
        // -lr <(1, 2, 1), (0.3, 0.2, 0.1)>.
        let predicted = -lr * (1.0 * 0.3 + 2.0 * 0.2 + 1.0 * 0.1);
        assert!((f.predicted_delta_reward - predicted).abs() < 1e-12);
        assert!(f.delta_reward.abs() > 1e-3, "the step moved the winner");
    }
}
