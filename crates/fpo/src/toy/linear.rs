//! Toy 1: a 50-dimensional action, a Gaussian true utility and a linear reward model retrained by
//! one SGD step per iteration (paper.md, "Toy 1").

use serde::{Deserialize, Serialize};

use super::influence::linear_grad_term;
use super::{ToyRecord, ToyRun, dist_sq, norm, rng};
use crate::Variant;
use crate::error::{MAX_TOY_DIM, Result, check_non_negative, check_positive, check_size, invalid};
use crate::penalty::{ActionGradients, Feedback, Penalty};

/// How the policy's gradient of its objective is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GradientMode {
    /// Forward finite differences, `(J(y + eps e_i) - J(y)) / eps`, as the authors' notebook.
    FiniteDifference,
    /// The exact gradient of the same objective (the utility inside the relaxed error factor is
    /// differentiated through, as finite differences do).
    Analytic,
}

/// The environment: action space, true utility and action cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearEnv {
    /// Dimension of the action.
    pub dim: usize,
    /// The first `signal_dims` coordinates carry the signal; the rest are noise.
    pub signal_dims: usize,
    /// Value of the target on each signal coordinate.
    pub target_value: f64,
    /// `A` in `u(y) = A exp(-tau ||y - t||²)`.
    pub utility_scale: f64,
    /// `tau` in `u(y) = A exp(-tau ||y - t||²)`.
    pub utility_width: f64,
    /// Weight of the action cost `c ||y||²` in the policy objective.
    pub action_cost: f64,
}

/// The policy: plain gradient ascent on the action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearPolicy {
    /// Outer iterations (each: policy steps, then one RM step).
    pub iterations: usize,
    /// Gradient-ascent steps on the action per iteration.
    pub steps_per_iteration: usize,
    /// Step size of the gradient ascent.
    pub step_size: f64,
    /// Finite differences or the analytic gradient.
    pub gradient: GradientMode,
    /// Step of the forward finite differences.
    pub fd_eps: f64,
}

/// An initial RM weight vector pinned for one seed (the authors' run is seed 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedInit {
    /// The seed that uses these weights.
    pub seed: u64,
    /// The full initial weight vector, `w_true + noise`.
    pub weights: Vec<f64>,
}

/// The linear reward model `r_w(y) = w.y`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearRm {
    /// Weight of `w_true` on each signal coordinate (0 elsewhere).
    pub true_weight: f64,
    /// Standard deviation of the Gaussian noise added to `w_true` at initialisation.
    pub init_noise_sd: f64,
    /// SGD learning rate of the squared-error update.
    pub lr: f64,
    /// Multiplicative weight decay per step: `w <- w (1 - weight_decay) + ...`.
    pub weight_decay: f64,
    /// Initial weights pinned per seed; other seeds draw the noise from the crate's RNG.
    #[serde(default)]
    pub pinned_init: Vec<PinnedInit>,
}

/// Every hyperparameter of the linear toy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearToyConfig {
    /// Environment.
    pub env: LinearEnv,
    /// Policy.
    pub policy: LinearPolicy,
    /// Reward model.
    pub rm: LinearRm,
}

impl LinearToyConfig {
    /// The paper's hyperparameters (without the authors' pinned initial weights).
    pub fn paper() -> Self {
        Self {
            env: LinearEnv {
                dim: 50,
                signal_dims: 3,
                target_value: 2.0,
                utility_scale: 10.0,
                utility_width: 0.3,
                action_cost: 0.1,
            },
            policy: LinearPolicy {
                iterations: 300,
                steps_per_iteration: 1,
                step_size: 0.02,
                gradient: GradientMode::FiniteDifference,
                fd_eps: 0.05,
            },
            rm: LinearRm {
                true_weight: 1.0,
                init_noise_sd: 0.1,
                lr: 0.005,
                weight_decay: 1e-4,
                pinned_init: Vec::new(),
            },
        }
    }

    /// Checks ranges and lengths; errors name the key.
    pub fn validate(&self) -> Result<()> {
        let e = &self.env;
        check_size("env.dim", e.dim, MAX_TOY_DIM)?;
        if e.signal_dims > e.dim {
            return Err(invalid(
                "env.signal_dims",
                format!("{} exceeds env.dim = {}", e.signal_dims, e.dim),
            ));
        }
        check_non_negative("env.utility_width", e.utility_width)?;
        check_non_negative("env.action_cost", e.action_cost)?;
        check_positive("policy.step_size", self.policy.step_size)?;
        check_positive("policy.fd_eps", self.policy.fd_eps)?;
        check_non_negative("rm.init_noise_sd", self.rm.init_noise_sd)?;
        check_non_negative("rm.lr", self.rm.lr)?;
        check_non_negative("rm.weight_decay", self.rm.weight_decay)?;
        for (i, p) in self.rm.pinned_init.iter().enumerate() {
            if p.weights.len() != e.dim {
                return Err(invalid(
                    format!("rm.pinned_init[{i}].weights"),
                    format!("has {} entries, env.dim is {}", p.weights.len(), e.dim),
                ));
            }
        }
        Ok(())
    }
}

/// The linear environment with its reward model, ready to run.
#[derive(Debug, Clone)]
pub struct LinearToy<'a> {
    cfg: &'a LinearToyConfig,
    target: Vec<f64>,
}

impl<'a> LinearToy<'a> {
    /// Builds the environment of a validated config.
    pub fn new(cfg: &'a LinearToyConfig) -> Result<Self> {
        cfg.validate()?;
        let mut target = vec![0.0; cfg.env.dim];
        target[..cfg.env.signal_dims].fill(cfg.env.target_value);
        Ok(Self { cfg, target })
    }

    /// The config this environment was built from.
    pub fn config(&self) -> &LinearToyConfig {
        self.cfg
    }

    /// The target `t` of the utility.
    pub fn target(&self) -> &[f64] {
        &self.target
    }

    /// `u(y) = A exp(-tau ||y - t||²)`.
    pub fn utility(&self, y: &[f64]) -> f64 {
        let d = dist_sq(y, &self.target).sqrt();
        self.cfg.env.utility_scale * (-self.cfg.env.utility_width * (d * d)).exp()
    }

    /// The initial RM weights of a seed: pinned ones, or `w_true + N(0, sd²)` from the seed's RNG.
    pub fn initial_weights(&self, seed: u64) -> Vec<f64> {
        if let Some(p) = self.cfg.rm.pinned_init.iter().find(|p| p.seed == seed) {
            return p.weights.clone();
        }
        use rand_distr::{Distribution, Normal};
        let normal = Normal::new(0.0, self.cfg.rm.init_noise_sd).expect("sd validated >= 0");
        let mut rng = rng(seed, 0);
        (0..self.cfg.env.dim)
            .map(|i| {
                let w = if i < self.cfg.env.signal_dims {
                    self.cfg.rm.true_weight
                } else {
                    0.0
                };
                w + normal.sample(&mut rng)
            })
            .collect()
    }

    /// The gradient term `G` of a penalty at `y` (`g = ∇_w r = y`): `||y||²`, or `yᵀ (η H_λ)⁻¹ y`
    /// for the influence variant; its gradient into `out` when given.
    fn grad_term(&self, penalty: &Penalty, y: &[f64], out: Option<&mut [f64]>) -> f64 {
        if penalty.variant == Variant::Influence {
            let rm = &self.cfg.rm;
            return linear_grad_term(y, rm.lr, rm.weight_decay, penalty.damping, out);
        }
        if let Some(out) = out {
            for (o, v) in out.iter_mut().zip(y) {
                *o = 2.0 * v;
            }
        }
        // The authors' `np.linalg.norm(y)**2`.
        let n = norm(y);
        n * n
    }

    /// The penalty at `y`.
    pub fn penalty(&self, penalty: &Penalty, w: &[f64], y: &[f64]) -> f64 {
        if penalty.is_zero() {
            return 0.0;
        }
        let feedback = Feedback::SquaredError {
            utility: self.utility(y),
        };
        penalty.value(dot(w, y), feedback, self.grad_term(penalty, y, None))
    }

    /// The policy objective `J(y) = w.y - penalty(y) - c ||y||²`, in the authors' order of
    /// operations (so that finite differences reproduce their trajectories bit for bit).
    pub fn objective(&self, penalty: &Penalty, w: &[f64], y: &[f64]) -> f64 {
        let reward = dot(w, y);
        let n = norm(y);
        reward - self.penalty(penalty, w, y) - self.cfg.env.action_cost * (n * n)
    }

    /// The gradient of [`Self::objective`] with respect to `y`, by the configured mode.
    pub fn objective_gradient(&self, penalty: &Penalty, w: &[f64], y: &[f64], out: &mut [f64]) {
        match self.cfg.policy.gradient {
            GradientMode::FiniteDifference => {
                let eps = self.cfg.policy.fd_eps;
                let base = self.objective(penalty, w, y);
                let mut yp = y.to_vec();
                for i in 0..y.len() {
                    yp[i] = y[i] + eps;
                    out[i] = (self.objective(penalty, w, &yp) - base) / eps;
                    yp[i] = y[i];
                }
            }
            GradientMode::Analytic => self.analytic_gradient(penalty, w, y, out),
        }
    }

    /// The exact gradient: `w - ∇penalty - 2 c y`, with `∇r = w`, `∇G` from the variant's
    /// gradient term and `∇u = -2 tau u (y - t)`.
    pub fn analytic_gradient(&self, penalty: &Penalty, w: &[f64], y: &[f64], out: &mut [f64]) {
        let c = self.cfg.env.action_cost;
        for ((o, wi), yi) in out.iter_mut().zip(w).zip(y) {
            *o = wi - 2.0 * c * yi;
        }
        if penalty.is_zero() {
            return;
        }
        let u = self.utility(y);
        let mut d_grad_term = vec![0.0; y.len()];
        let g = self.grad_term(penalty, y, Some(&mut d_grad_term));
        let tau = self.cfg.env.utility_width;
        let d_utility: Vec<f64> = y
            .iter()
            .zip(&self.target)
            .map(|(v, t)| -2.0 * tau * u * (v - t))
            .collect();
        penalty.add_action_gradient(
            dot(w, y),
            Feedback::SquaredError { utility: u },
            g,
            ActionGradients {
                reward: w,
                grad_term: &d_grad_term,
                utility: Some(&d_utility),
            },
            -1.0,
            out,
        );
    }

    /// The foresighted (one-step Stackelberg) leader objective: the RM score of `y` under the
    /// follower's exact response to `y`, `w'(y).y - c ||y||²`, with
    /// `w'(y).y = (1 - λ) w.y + 2 η (u(y) - w.y) ||y||²`.
    pub fn foresighted_objective(&self, w: &[f64], y: &[f64]) -> f64 {
        let mut w1 = w.to_vec();
        self.rm_step(&mut w1, y);
        dot(&w1, y) - self.cfg.env.action_cost * dot(y, y)
    }

    /// The gradient of [`Self::foresighted_objective`]:
    /// `(1 - λ) w + 2η [(∇u - w) ||y||² + 2 (u - w.y) y] - 2 c y`.
    pub fn foresighted_gradient(&self, w: &[f64], y: &[f64], out: &mut [f64]) {
        let (eta, lambda) = (self.cfg.rm.lr, self.cfg.rm.weight_decay);
        let (u, wy, ysq) = (self.utility(y), dot(w, y), dot(y, y));
        let tau = self.cfg.env.utility_width;
        for i in 0..y.len() {
            let du = -2.0 * tau * u * (y[i] - self.target[i]);
            out[i] = (1.0 - lambda) * w[i]
                + 2.0 * eta * ((du - w[i]) * ysq + 2.0 * (u - wy) * y[i])
                - 2.0 * self.cfg.env.action_cost * y[i];
        }
    }

    /// The follower's response: one SGD step of the squared-error loss,
    /// `w <- w (1 - lambda) + 2 eta (u(y) - w.y) y`.
    pub fn rm_step(&self, w: &mut [f64], y: &[f64]) {
        let err = self.utility(y) - dot(w, y);
        let lr = self.cfg.rm.lr;
        let keep = 1.0 - self.cfg.rm.weight_decay;
        for (wi, yi) in w.iter_mut().zip(y) {
            // Authors: w * (1 - weight_decay) + lr * (-(-2 * error * y)).
            *wi = *wi * keep + lr * (2.0 * err * yi);
        }
    }

    fn record(
        &self,
        iteration: usize,
        penalty: &Penalty,
        reference: Option<&Penalty>,
        w: &[f64],
        y: &[f64],
    ) -> ToyRecord {
        let s = self.cfg.env.signal_dims;
        ToyRecord {
            iteration,
            signal: norm(&y[..s]),
            noise: norm(&y[s..]),
            true_utility: self.utility(y),
            proxy_reward: dot(w, y),
            penalty: self.penalty(penalty, w, y),
            exact_penalty: reference.map(|r| self.penalty(r, w, y)),
            action: y.to_vec(),
        }
    }

    /// Runs one variant from one seed. The trajectory has `iterations + 1` points: the initial
    /// action, then the action after each iteration (logged before the RM step, as the authors).
    /// With `reference`, every point also logs that penalty (the ladder's exact rung).
    pub fn run(&self, penalty: Penalty, seed: u64, reference: Option<Penalty>) -> ToyRun {
        let started = std::time::Instant::now();
        let mut w = self.initial_weights(seed);
        let mut y = vec![0.0; self.cfg.env.dim];
        let mut grad = vec![0.0; self.cfg.env.dim];
        let mut records = Vec::with_capacity(self.cfg.policy.iterations + 1);
        let reference = reference.as_ref();
        records.push(self.record(0, &penalty, reference, &w, &y));
        for t in 1..=self.cfg.policy.iterations {
            for _ in 0..self.cfg.policy.steps_per_iteration {
                self.objective_gradient(&penalty, &w, &y, &mut grad);
                for (yi, gi) in y.iter_mut().zip(&grad) {
                    *yi += self.cfg.policy.step_size * gi;
                }
            }
            records.push(self.record(t, &penalty, reference, &w, &y));
            self.rm_step(&mut w, &y);
        }
        ToyRun {
            penalty,
            seed,
            records,
            final_action: y,
            policy_steps: self.cfg.policy.iterations * self.cfg.policy.steps_per_iteration,
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toy::central_difference;

    #[test]
    fn analytic_gradient_matches_central_differences() {
        let mut cfg = LinearToyConfig::paper();
        cfg.env.dim = 6;
        cfg.env.signal_dims = 2;
        let toy = LinearToy::new(&cfg).unwrap();
        let w = toy.initial_weights(3);
        let y: Vec<f64> = (0..6).map(|i| 0.3 * i as f64 - 0.4).collect();
        let penalties = Variant::ALL
            .map(|v| Penalty::new(v, 0.1))
            .into_iter()
            .chain([Penalty::influence(0.1, 0.01), Penalty::influence(0.1, 1.0)]);
        for p in penalties {
            let v = p.label();
            let mut g = vec![0.0; 6];
            toy.analytic_gradient(&p, &w, &y, &mut g);
            for i in 0..6 {
                let fd = central_difference(|x| toy.objective(&p, &w, x), &y, i, 1e-5);
                assert!(
                    (fd - g[i]).abs() < 1e-7,
                    "{v} coord {i}: fd {fd} vs analytic {}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn foresight_is_relaxed_with_gamma_two_eta_up_to_the_decay_factor() {
        // J_foresight(y) = J_relaxed(y; gamma = 2 eta) - lambda w.y, and so are their gradients.
        let cfg = LinearToyConfig::paper();
        let toy = LinearToy::new(&cfg).unwrap();
        let (eta, lambda) = (cfg.rm.lr, cfg.rm.weight_decay);
        let p = Penalty::new(Variant::Relaxed, 2.0 * eta);
        let w = toy.initial_weights(4);
        let d = cfg.env.dim;
        for k in 0..5 {
            let y: Vec<f64> = (0..d)
                .map(|i| ((i * 13 + k * 7) % 17) as f64 * 0.1 - 0.6)
                .collect();
            let f = toy.foresighted_objective(&w, &y);
            let r = toy.objective(&p, &w, &y);
            assert!((f + lambda * dot(&w, &y) - r).abs() < 1e-10, "{f} vs {r}");
            let (mut gf, mut gr) = (vec![0.0; d], vec![0.0; d]);
            toy.foresighted_gradient(&w, &y, &mut gf);
            toy.analytic_gradient(&p, &w, &y, &mut gr);
            for i in 0..d {
                assert!((gf[i] + lambda * w[i] - gr[i]).abs() < 1e-10, "coord {i}");
                let fd = central_difference(|x| toy.foresighted_objective(&w, x), &y, i, 1e-6);
                assert!((fd - gf[i]).abs() < 1e-6, "coord {i}: {fd} vs {}", gf[i]);
            }
        }
    }

    #[test]
    fn relaxed_with_gamma_two_eta_is_the_one_step_foresighted_objective() {
        // paper.md: w'(y).y = (1 - lambda) w.y - 2 eta (w.y - u(y)) ||y||²; relaxed FPO with
        // gamma = 2 eta equals it up to the (1 - lambda) factor on the first term.
        let mut cfg = LinearToyConfig::paper();
        cfg.rm.weight_decay = 0.0;
        cfg.env.action_cost = 0.0;
        let toy = LinearToy::new(&cfg).unwrap();
        let p = Penalty::new(Variant::Relaxed, 2.0 * cfg.rm.lr);
        let w0 = toy.initial_weights(1);
        let y: Vec<f64> = (0..cfg.env.dim)
            .map(|i| ((i * 7 % 11) as f64 - 5.0) * 0.1)
            .collect();
        let mut w1 = w0.clone();
        toy.rm_step(&mut w1, &y);
        let foresighted = dot(&w1, &y);
        let relaxed = toy.objective(&p, &w0, &y);
        assert!(
            (foresighted - relaxed).abs() < 1e-12,
            "{foresighted} vs {relaxed}"
        );
    }
}
