//! The LLM pipeline's reward model head on frozen features `φ(z)`: linear,
//! `r(z) = wᵀ φ(z) + b`, whose parameter gradient `∇_θ r(z) = (φ(z), 1)` does not depend on its
//! weights, or a small MLP with one tanh hidden layer, `r(z) = vᵀ tanh(W φ(z) + c) + b`, whose
//! gradient does, as a real reward model's does. Both give `∇_θ r` in closed form, so the FPO
//! penalties stay exact without autodiff. Features come from `fpo-model` as plain numbers.
//!
//! The head starts from a Bradley-Terry fit on preference pairs (the paper starts from a trained
//! RM whose blind spots the policy then exploits) and is updated in the loop with the binary
//! cross-entropy of `σ(r(a) - r(b))` against a soft label.

use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::penalty::sigmoid;

/// The reward model's head: `r(z) = wᵀ φ(z) + b` without a hidden layer, `r(z) = wᵀ h + b`
/// with `h = tanh(W φ(z) + c)` with one. Parameter layout (of gradients and optimiser moments):
/// `(w, b)` without, `(W row by row, c, w, b)` with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    /// Output weights: one per feature, or one per hidden unit.
    pub w: Vec<f64>,
    /// Output bias.
    pub b: f64,
    /// The tanh hidden layer, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<Hidden>,
}

/// The hidden layer of an MLP head, `h = tanh(W φ + c)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hidden {
    /// `W`: one row of feature weights per unit.
    pub w: Vec<Vec<f64>>,
    /// `c`: one bias per unit.
    pub c: Vec<f64>,
}

impl Hidden {
    /// `tanh(W φ + c)`.
    fn forward(&self, phi: &[f32]) -> Vec<f64> {
        self.w
            .iter()
            .zip(&self.c)
            .map(|(row, c)| (dot(row, phi) + c).tanh())
            .collect()
    }
}

/// The seed of an MLP head's initial hidden weights: one fixed stream, so that every run (and
/// every variant and seed of it) starts from the same reward model.
const HIDDEN_INIT_SEED: u64 = 0x5EED_4EAD;

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

impl Head {
    /// The zero linear head (every score 0).
    pub fn zeros(dim: usize) -> Self {
        Self {
            w: vec![0.0; dim],
            b: 0.0,
            hidden: None,
        }
    }

    /// A head on `dim` features that scores every text 0: linear with zero weights when
    /// `hidden` is 0; otherwise `hidden` tanh units whose weights are drawn from
    /// `N(0, 1 / sq_norm)` (so that pre-activations start with unit variance on features of
    /// mean squared norm `sq_norm`), with zero biases and zero output weights.
    pub fn init(dim: usize, hidden: usize, sq_norm: f64) -> Self {
        if hidden == 0 {
            return Self::zeros(dim);
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(HIDDEN_INIT_SEED);
        let normal = Normal::new(0.0, 1.0 / sq_norm.max(f64::MIN_POSITIVE).sqrt())
            .expect("a finite positive deviation");
        Self {
            w: vec![0.0; hidden],
            b: 0.0,
            hidden: Some(Hidden {
                w: (0..hidden)
                    .map(|_| (0..dim).map(|_| normal.sample(&mut rng)).collect())
                    .collect(),
                c: vec![0.0; hidden],
            }),
        }
    }

    /// Features the head reads.
    pub fn dim(&self) -> usize {
        match &self.hidden {
            None => self.w.len(),
            Some(h) => h.w.first().map_or(0, Vec::len),
        }
    }

    /// Parameters, in the layout of [`Head::param_grad`].
    pub fn n_params(&self) -> usize {
        let hidden = self
            .hidden
            .as_ref()
            .map_or(0, |h| h.w.len() * (self.dim() + 1));
        hidden + self.w.len() + 1
    }

    /// Every parameter in the layout of [`Head::param_grad`].
    fn params_mut(&mut self) -> impl Iterator<Item = &mut f64> {
        let (weights, biases) = match &mut self.hidden {
            None => (None, None),
            Some(h) => (Some(&mut h.w), Some(&mut h.c)),
        };
        weights
            .into_iter()
            .flatten()
            .flatten()
            .chain(biases.into_iter().flatten())
            .chain(self.w.iter_mut())
            .chain(std::iter::once(&mut self.b))
    }

    /// Every parameter but the output bias, which the L2 term leaves alone.
    fn decayed(&self) -> impl Iterator<Item = f64> + '_ {
        self.hidden
            .iter()
            .flat_map(|h| h.w.iter().flatten().chain(&h.c))
            .chain(&self.w)
            .copied()
    }

    /// `r(z)`.
    pub fn score(&self, phi: &[f32]) -> f64 {
        match &self.hidden {
            None => dot(&self.w, phi) + self.b,
            Some(h) => self.output(&h.forward(phi)),
        }
    }

    /// The MLP's output `wᵀ h + b` on its hidden activations `h`.
    fn output(&self, a: &[f64]) -> f64 {
        self.w.iter().zip(a).map(|(v, a)| v * a).sum::<f64>() + self.b
    }

    /// `∇_θ r(z)`: `(φ, 1)` for the linear head; `(v_j (1 - h_j²) φ, v_j (1 - h_j²), h, 1)` in
    /// the layout `(W, c, w, b)` for the MLP.
    pub fn param_grad(&self, phi: &[f32]) -> Vec<f64> {
        self.score_and_grad(phi).1
    }

    /// `r(z)` and `∇_θ r(z)` (see [`Head::param_grad`]) from one forward pass.
    pub fn score_and_grad(&self, phi: &[f32]) -> (f64, Vec<f64>) {
        let mut g = Vec::with_capacity(self.n_params());
        let r = match &self.hidden {
            None => {
                g.extend(phi.iter().map(|&x| f64::from(x)));
                dot(&self.w, phi) + self.b
            }
            Some(h) => {
                let a = h.forward(phi);
                let local: Vec<f64> = self
                    .w
                    .iter()
                    .zip(&a)
                    .map(|(v, a)| v * (1.0 - a * a))
                    .collect();
                for &d in &local {
                    g.extend(phi.iter().map(|&x| d * f64::from(x)));
                }
                g.extend(&local);
                g.extend(&a);
                self.output(&a)
            }
        };
        g.push(1.0);
        (r, g)
    }

    /// Mean Bradley-Terry loss `-log σ(r(chosen) - r(rejected))` over pairs, plus `l2/2 ||θ||²`
    /// over every parameter but the output bias.
    pub fn bt_loss(&self, pairs: &[(Vec<f32>, Vec<f32>)], l2: f64) -> f64 {
        let data: f64 = pairs
            .iter()
            .map(|(c, r)| softplus(-(self.score(c) - self.score(r))))
            .sum::<f64>()
            / pairs.len().max(1) as f64;
        data + 0.5 * l2 * self.decayed().map(|p| p * p).sum::<f64>()
    }

    /// Gradient of [`Head::bt_loss`] in the layout of [`Head::param_grad`] (the output bias
    /// cancels in a difference).
    pub fn bt_grad(&self, pairs: &[(Vec<f32>, Vec<f32>)], l2: f64) -> Vec<f64> {
        let n = pairs.len().max(1) as f64;
        let mut g: Vec<f64> = self.decayed().map(|p| l2 * p).chain([0.0]).collect();
        for (c, r) in pairs {
            let (d, diff) = margin(self, c, r);
            // d/dΔ softplus(-Δ) = -σ(-Δ).
            let coef = -sigmoid(-d) / n;
            g.iter_mut().zip(diff).for_each(|(gi, x)| *gi += coef * x);
        }
        g
    }

    /// Fits a head on (chosen, rejected) feature pairs from `start` (see [`Head::init`]);
    /// returns it and the loss after every step.
    pub fn fit_bradley_terry(
        start: Self,
        pairs: &[(Vec<f32>, Vec<f32>)],
        cfg: &BradleyTerry,
    ) -> (Self, Vec<f64>) {
        let mut head = start;
        // Plain Adam: the L2 term is in the gradient.
        let mut adam = AdamW::new(head.n_params(), 0.0);
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
        for (p, g) in self.params_mut().zip(&grad) {
            *p -= lr * g;
        }
        loss
    }
}

/// `r(a) - r(b)` and `∇_θ r(a) - ∇_θ r(b)`, one forward pass per side; for the linear head the
/// difference of the features on `w` and 0 on `b`, which cancels.
fn margin(head: &Head, a: &[f32], b: &[f32]) -> (f64, Vec<f64>) {
    match head.hidden {
        None => (
            head.score(a) - head.score(b),
            a.iter()
                .zip(b)
                .map(|(&xa, &xb)| f64::from(xa) - f64::from(xb))
                .chain([0.0])
                .collect(),
        ),
        Some(_) => {
            let ((ra, ga), (rb, gb)) = (head.score_and_grad(a), head.score_and_grad(b));
            (ra - rb, ga.iter().zip(&gb).map(|(x, y)| x - y).collect())
        }
    }
}

/// The binary cross-entropy of `σ(r(a) - r(b))` against the soft label `label`, and its
/// gradient in the layout of [`Head::param_grad`] (the output bias cancels in the difference).
pub fn bce(head: &Head, a: &[f32], b: &[f32], label: f64) -> (f64, Vec<f64>) {
    let (d, diff) = margin(head, a, b);
    let loss = label * softplus(-d) + (1.0 - label) * softplus(d);
    let coef = sigmoid(d) - label;
    (loss, diff.into_iter().map(|x| coef * x).collect())
}

/// AdamW (torch's `AdamW`: bias-corrected moments, decoupled weight decay on every parameter)
/// for a [`Head`]; serialisable, so that a checkpoint carries it.
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

    /// One step on `head` along `grad` (layout of [`Head::param_grad`]).
    pub fn step(&mut self, head: &mut Head, grad: &[f64], lr: f64) {
        self.t += 1;
        let t = i32::try_from(self.t).unwrap_or(i32::MAX);
        let (c1, c2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        for (i, (p, &g)) in head.params_mut().zip(grad).enumerate() {
            self.m[i] = self.beta1 * self.m[i] + (1.0 - self.beta1) * g;
            self.v[i] = self.beta2 * self.v[i] + (1.0 - self.beta2) * g * g;
            let step = lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + self.eps);
            *p -= lr * self.weight_decay * *p + step;
        }
    }
}

/// How the head answered one optimiser step (`before` -> `after`) on the `(winner, reference)`
/// features of the iterations whose gradient `grad` (layout of [`Head::param_grad`]) that
/// step applied with learning rate `lr`: the exact change of the winners' scores and margins
/// (both heads are evaluated, nothing is approximated) and the first-order prediction of a
/// plain gradient step, `-lr <∇r(win), grad>`.
pub fn follower_response(
    before: &Head,
    after: &Head,
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
        let mut head = Head {
            w: vec![0.3, -0.2, 0.1, 0.5, -0.4],
            b: 0.7,
            hidden: None,
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
        let (head, losses) =
            Head::fit_bradley_terry(Head::zeros(8), &train, &BradleyTerry::default());
        assert!(losses.last().unwrap() < &(0.9 * std::f64::consts::LN_2));
        assert!(losses.windows(2).filter(|w| w[1] > w[0] + 1e-9).count() < 10);
        let acc = head.pair_accuracy(&test);
        assert!(acc > 0.75, "held-out accuracy {acc}");
        assert_eq!(Head::zeros(8).pair_accuracy(&test), 0.5);
        let (again, _) = Head::fit_bradley_terry(Head::zeros(8), &train, &BradleyTerry::default());
        assert_eq!(again, head, "deterministic");
    }

    #[test]
    fn a_bce_step_moves_the_margin_toward_the_label() {
        let mut head = Head::zeros(2);
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
        let before = Head {
            w: vec![0.5, -1.0],
            b: 0.25,
            hidden: None,
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

    /// A small MLP head with every parameter non-zero.
    fn mlp(dim: usize, hidden: usize) -> Head {
        let mut head = Head::init(dim, hidden, 1.0);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for p in head.params_mut() {
            *p += rng.random_range(-0.5..0.5);
        }
        head
    }

    /// Catches a wrong MLP derivative or a layout that differs between `param_grad`,
    /// `params_mut` (what AdamW steps) and `bt_grad`: each entry of the closed form against
    /// central differences of the score and of the loss, parameter by parameter.
    #[test]
    fn the_mlp_heads_closed_form_gradients_match_central_differences() {
        let head = mlp(4, 3);
        assert_eq!(head.n_params(), 3 * 4 + 3 + 3 + 1);
        assert_eq!(head.dim(), 4);
        let x = [0.3f32, -0.7, 0.2, 0.9];
        let pairs = synthetic(12, 4, 4);
        let g = head.param_grad(&x);
        let bg = head.bt_grad(&pairs, 0.01);
        assert_eq!((g.len(), bg.len()), (head.n_params(), head.n_params()));
        let h = 1e-6;
        for i in 0..head.n_params() {
            let nudged = |d: f64| {
                let mut m = head.clone();
                *m.params_mut().nth(i).unwrap() += d;
                m
            };
            let (up, down) = (nudged(h), nudged(-h));
            let fd = (up.score(&x) - down.score(&x)) / (2.0 * h);
            assert!((g[i] - fd).abs() < 1e-7, "∇r[{i}]: {} vs {fd}", g[i]);
            let fd = (up.bt_loss(&pairs, 0.01) - down.bt_loss(&pairs, 0.01)) / (2.0 * h);
            assert!((bg[i] - fd).abs() < 1e-7, "∇L[{i}]: {} vs {fd}", bg[i]);
        }
        // The BCE's gradient is the same closed form: `(σ(d) - y)(∇r(a) - ∇r(b))`.
        let (a, b) = (&pairs[0].0, &pairs[0].1);
        let (_, bce_g) = bce(&head, a, b, 0.3);
        let coef = sigmoid(head.score(a) - head.score(b)) - 0.3;
        for ((gi, ga), gb) in bce_g.iter().zip(head.param_grad(a)).zip(head.param_grad(b)) {
            assert!((gi - coef * (ga - gb)).abs() < 1e-12);
        }
    }

    /// Catches an MLP head that is linear in disguise: its gradient moves when its weights do
    /// (the linear head's does not), an initial head that does not score 0, and a step that
    /// does not move the score along its gradient.
    #[test]
    fn the_mlp_heads_gradient_depends_on_its_weights() {
        let x = [0.5f32, -0.25, 1.0];
        let start = Head::init(3, 5, 1.0);
        assert_eq!(start.score(&x), 0.0, "zero output weights score 0");
        assert_eq!(start, Head::init(3, 5, 1.0), "a fixed stream");
        let mut head = mlp(3, 5);
        let before = head.param_grad(&x);
        let r0 = head.score(&x);
        let lr = 1e-4;
        for (p, g) in head.params_mut().zip(&before) {
            *p += lr * g;
        }
        let norm2: f64 = before.iter().map(|g| g * g).sum();
        assert!(((head.score(&x) - r0) - lr * norm2).abs() < 1e-3 * lr * norm2);
        let after = head.param_grad(&x);
        let moved: f64 = before.iter().zip(&after).map(|(a, b)| (a - b).abs()).sum();
        assert!(moved > 1e-6, "the MLP's gradient moved by {moved}");
        let mut lin = Head::zeros(3);
        let g = lin.param_grad(&x);
        lin.bce_step(&x, &[0.0, 0.0, 0.0], 0.9, 0.5);
        assert_eq!(lin.param_grad(&x), g, "the linear head's does not");
    }

    /// Catches an MLP that cannot use its hidden layer: on a preference no linear head can
    /// express (`u = x0 * x1`), the fitted MLP generalises and the linear head stays near
    /// chance.
    #[test]
    fn the_mlp_head_learns_a_preference_the_linear_head_cannot() {
        let pairs = |n: usize, seed: u64| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..n)
                .map(|_| {
                    let mut x = || {
                        [
                            rng.random_range(-1.0f32..1.0),
                            rng.random_range(-1.0f32..1.0),
                        ]
                    };
                    let (a, b) = (x(), x());
                    if a[0] * a[1] > b[0] * b[1] {
                        (a.to_vec(), b.to_vec())
                    } else {
                        (b.to_vec(), a.to_vec())
                    }
                })
                .collect::<Vec<_>>()
        };
        let (train, test) = (pairs(400, 5), pairs(400, 6));
        let cfg = BradleyTerry {
            steps: 400,
            lr: 0.05,
            l2: 0.0,
        };
        let (m, _) = Head::fit_bradley_terry(Head::init(2, 8, 0.5), &train, &cfg);
        let (l, _) = Head::fit_bradley_terry(Head::zeros(2), &train, &cfg);
        let (ma, la) = (m.pair_accuracy(&test), l.pair_accuracy(&test));
        assert!(ma > 0.85, "MLP held-out accuracy {ma}");
        assert!(la < 0.65, "linear held-out accuracy {la}");
        let json = serde_json::to_string(&Head::zeros(2)).unwrap();
        assert_eq!(
            json, r#"{"w":[0.0,0.0],"b":0.0}"#,
            "a linear head.json as before"
        );
        let back: Head = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}
