//! Both toys as burn tensor programs, so that they run on any backend (flex, ndarray, wgpu, CUDA).
//!
//! The hand-written `f64` kernels of [`super::linear`] and [`super::nn`] stay the reference: they
//! reproduce the authors' NumPy trajectory to 1e-9 and are the fast path on a CPU. This module
//! computes the same trajectories with tensor ops: every seed of a penalty is one row of a batch
//! (one program per penalty, not one per seed), the seeds' randomness is drawn on the host from the
//! same streams as the `f64` runs (so a seed's trajectory on a GPU is comparable with its
//! reference point by point), and derivatives come from burn's autodiff. burn's autodiff is first
//! order only, so the penalty's gradient term `||∇_φ r||²` is written out as tracked ops of the
//! action (`fpo_model::toy_mlp`, a batch of MLPs) and one backward gives its mixed second
//! derivative.
//!
//! Host backends (flex, ndarray) compute in `f64`; GPU backends in `f32` (WGSL has no `f64`).
//! The influence rung of the approximation ladder (a Gauss-Newton solve per step) is not here: it
//! runs on the host kernels only.

use burn::tensor::{DType, Device, Tensor, TensorData};
use fpo_model::toy_mlp::{ToyMlps, host_f64, sq_norm};
use rand_distr::{Distribution, StandardNormal};

use super::linear::{GradientMode, LinearToy};
use super::nn::{NnToy, STREAM_BUFFER, STREAM_POLICY};
use super::{ToyRecord, ToyRun, rng};
use crate::error::{Error, Result, invalid};
use crate::{Penalty, Variant};

/// Where the tensors live and in which precision.
#[derive(Debug, Clone)]
struct Ctx {
    device: Device,
    dtype: DType,
}

impl Ctx {
    fn new(device: &Device) -> Self {
        let device = device.clone().inner();
        let dtype = if fpo_model::backend::on_host(&device) {
            DType::F64
        } else {
            DType::F32
        };
        Self { device, dtype }
    }

    fn tensor<const D: usize>(&self, values: Vec<f64>, shape: [usize; D]) -> Tensor<D> {
        Tensor::from_data(TensorData::new(values, shape), (&self.device, self.dtype))
    }

    fn zeros<const D: usize>(&self, shape: [usize; D]) -> Tensor<D> {
        Tensor::zeros(shape, (&self.device, self.dtype))
    }
}

/// Refuses what only the host kernels compute.
fn check_supported(penalty: &Penalty) -> Result<()> {
    if penalty.variant == Variant::Influence {
        return Err(invalid(
            "run.backend",
            "the influence-function penalty (the approximation ladder) runs on the host f64 \
             kernels only: leave `backend` out for the ladder",
        ));
    }
    Ok(())
}

/// `A exp(-tau ||y - c||²)` over the last axis, kept; `centre` is `[1, .., 1, n]`.
fn gaussian<const D: usize>(y: Tensor<D>, centre: Tensor<D>, scale: f64, width: f64) -> Tensor<D> {
    (sq_norm(y - centre) * (-width)).exp() * scale
}

/// `gamma * e * G` of a penalty that is not identically zero: `e` is 1 (practical) or `r - u`
/// (relaxed), `G` the gradient term. `u` is whatever the caller passes: tracked (the linear toy
/// differentiates through it) or a constant (the neural-network toy holds it fixed).
fn penalty_value<const D: usize>(
    penalty: &Penalty,
    reward: Tensor<D>,
    utility: Tensor<D>,
    grad_term: Tensor<D>,
) -> Tensor<D> {
    match penalty.variant {
        Variant::Practical => grad_term * penalty.gamma,
        Variant::Relaxed => (reward - utility) * grad_term * penalty.gamma,
        Variant::Standard | Variant::Influence => grad_term.zeros_like(),
    }
}

/// What a batched run logged: the `[seeds, 5 + dim]` rows (signal, noise, utility, reward, penalty,
/// the action) of its logged iterations, its final actions (`[seeds, dim]`), its policy steps per
/// seed and when it started.
struct Logged {
    iterations: Vec<usize>,
    rows: Vec<Tensor<2>>,
    final_actions: Tensor<2>,
    policy_steps: usize,
    started: std::time::Instant,
}

/// Splits a batched run into one run per seed (one read-back each for the rows and the final
/// actions), refusing non-finite trajectories as the host kernels do.
fn runs_of(penalty: Penalty, seeds: &[u64], logged: Logged) -> Result<Vec<ToyRun>> {
    let Logged {
        iterations,
        rows,
        final_actions,
        policy_steps,
        started,
    } = logged;
    let values = host_f64(Tensor::stack::<3>(rows, 0));
    let dim = final_actions.dims()[1];
    let width = ROW_SCALARS + dim;
    let actions = host_f64(final_actions);
    let n = seeds.len();
    let seconds = started.elapsed().as_secs_f64();
    seeds
        .iter()
        .zip(actions.chunks(dim))
        .enumerate()
        .map(|(k, (&seed, final_action))| {
            let records: Vec<ToyRecord> = iterations
                .iter()
                .enumerate()
                .map(|(i, &iteration)| {
                    let v = &values[(i * n + k) * width..(i * n + k + 1) * width];
                    ToyRecord {
                        iteration,
                        signal: v[0],
                        noise: v[1],
                        true_utility: v[2],
                        proxy_reward: v[3],
                        penalty: v[4],
                        exact_penalty: None,
                        action: v[ROW_SCALARS..].to_vec(),
                    }
                })
                .collect();
            if let Some(bad) = records
                .iter()
                .find(|r| !(r.proxy_reward.is_finite() && r.noise.is_finite()))
            {
                return Err(Error::NonFinite {
                    what: "policy mean or RM score",
                    iteration: bad.iteration,
                    seed,
                    variant: penalty.variant,
                });
            }
            Ok(ToyRun {
                penalty,
                seed,
                records,
                final_action: final_action.to_vec(),
                policy_steps,
                seconds: seconds / n as f64,
            })
        })
        .collect()
}

/// The scalars at the head of a logged row: signal, noise, utility, reward, penalty.
const ROW_SCALARS: usize = 5;

/// The `[seeds, 5 + dim]` logged row of actions `y` (`[seeds, dim]`): the scalars, then `y`.
fn record_row(
    y: Tensor<2>,
    signal_dims: usize,
    utility: Tensor<2>,
    reward: Tensor<2>,
    penalty: Tensor<2>,
) -> Tensor<2> {
    let dim = y.dims()[1];
    let signal = sq_norm(y.clone().narrow(1, 0, signal_dims)).sqrt();
    let noise = sq_norm(y.clone().narrow(1, signal_dims, dim - signal_dims)).sqrt();
    Tensor::cat(vec![signal, noise, utility, reward, penalty, y], 1)
}

/// The linear toy on a tensor backend: one penalty, every seed in one batch.
pub fn run_linear(
    toy: &LinearToy<'_>,
    penalty: Penalty,
    seeds: &[u64],
    device: &Device,
) -> Result<Vec<ToyRun>> {
    check_supported(&penalty)?;
    let started = std::time::Instant::now();
    let cfg = toy.config();
    let ctx = Ctx::new(device);
    let (n, d, s) = (seeds.len(), cfg.env.dim, cfg.env.signal_dims);
    let linear = Linear {
        toy,
        penalty,
        target: ctx.tensor(toy.target().to_vec(), [1, 1, d]),
    };
    let weights = seeds.iter().flat_map(|&seed| toy.initial_weights(seed));
    let mut w = ctx.tensor(weights.collect(), [n, d]);
    let mut y = ctx.zeros([n, d]);
    // Finite differences: the base point and one step along each axis, as one `[dim + 1, dim]`
    // batch of actions per seed.
    let steps = {
        let eps = cfg.policy.fd_eps;
        let mut v = vec![0.0; (d + 1) * d];
        (0..d).for_each(|i| v[(i + 1) * d + i] = eps);
        ctx.tensor(v, [1, d + 1, d])
    };
    let mut rows = vec![linear.record(&w, &y, s)];
    let mut iterations = vec![0];
    for t in 1..=cfg.policy.iterations {
        for _ in 0..cfg.policy.steps_per_iteration {
            let grad = match cfg.policy.gradient {
                GradientMode::FiniteDifference => {
                    let eps = cfg.policy.fd_eps;
                    let j = linear.objective(&w, y.clone().unsqueeze_dim(1) + steps.clone());
                    let base = j.clone().narrow(1, 0, 1);
                    (j.narrow(1, 1, d) - base) / eps
                }
                GradientMode::Analytic => {
                    let ya = y.clone().autodiff().require_grad();
                    let j = linear.objective(&w, ya.clone().unsqueeze_dim(1));
                    let grads = j.sum().backward();
                    ya.grad(&grads).expect("the action is tracked")
                }
            };
            y = y + grad * cfg.policy.step_size;
        }
        rows.push(linear.record(&w, &y, s));
        iterations.push(t);
        // The follower: w <- w (1 - lambda) + 2 eta (u(y) - w.y) y.
        let y3 = y.clone().unsqueeze_dim::<3>(1);
        let err = linear.utility(y3).squeeze_dim::<2>(1) - (w.clone() * y.clone()).sum_dim(1);
        w = w * (1.0 - cfg.rm.weight_decay) + y.clone() * err * (2.0 * cfg.rm.lr);
    }
    let logged = Logged {
        iterations,
        rows,
        final_actions: y,
        policy_steps: cfg.policy.iterations * cfg.policy.steps_per_iteration,
        started,
    };
    runs_of(penalty, seeds, logged)
}

struct Linear<'t, 'c> {
    toy: &'t LinearToy<'c>,
    penalty: Penalty,
    /// `[1, 1, dim]`.
    target: Tensor<3>,
}

impl Linear<'_, '_> {
    /// `u(y)` of actions `[seeds, k, dim]` -> `[seeds, k, 1]`.
    fn utility(&self, y: Tensor<3>) -> Tensor<3> {
        let env = &self.toy.config().env;
        gaussian(y, self.target.clone(), env.utility_scale, env.utility_width)
    }

    /// `(r, G, u)` at actions `[seeds, k, dim]` under weights `[seeds, dim]`, each `[seeds, k, 1]`.
    fn parts(&self, w: &Tensor<2>, y: Tensor<3>) -> (Tensor<3>, Tensor<3>, Tensor<3>) {
        let reward = (w.clone().unsqueeze_dim::<3>(1) * y.clone()).sum_dim(2);
        (reward, sq_norm(y.clone()), self.utility(y))
    }

    /// `J(y) = w.y - penalty(y) - c ||y||²` at actions `[seeds, k, dim]` -> `[seeds, k]`.
    fn objective(&self, w: &Tensor<2>, y: Tensor<3>) -> Tensor<2> {
        let (reward, norm_sq, utility) = self.parts(w, y);
        let cost = norm_sq.clone() * self.toy.config().env.action_cost;
        let j = if self.penalty.is_zero() {
            reward - cost
        } else {
            let p = penalty_value(&self.penalty, reward.clone(), utility, norm_sq);
            reward - p - cost
        };
        j.squeeze_dim(2)
    }

    fn record(&self, w: &Tensor<2>, y: &Tensor<2>, signal_dims: usize) -> Tensor<2> {
        let (reward, norm_sq, utility) = self.parts(w, y.clone().unsqueeze_dim(1));
        let penalty = penalty_value(&self.penalty, reward.clone(), utility.clone(), norm_sq);
        let flat = |t: Tensor<3>| t.squeeze_dim::<2>(2);
        record_row(
            y.clone(),
            signal_dims,
            flat(utility),
            flat(reward),
            flat(penalty),
        )
    }
}

/// `torch.optim.Adam` with L2 weight decay added to the gradient, over every seed's parameters
/// at once (the update is element-wise, so the seeds stay independent).
struct Adam {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    m: [Tensor<3>; 6],
    v: [Tensor<3>; 6],
    t: i32,
}

impl Adam {
    fn step(&mut self, params: [Tensor<3>; 6], grads: [Tensor<3>; 6]) -> [Tensor<3>; 6] {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t);
        let bc2_sqrt = (1.0 - self.beta2.powi(self.t)).sqrt();
        let step_size = self.lr / bc1;
        let mut params = params;
        for (i, (p, g)) in params.iter_mut().zip(grads).enumerate() {
            let g = g + p.clone() * self.weight_decay;
            let m = self.m[i].clone() * self.beta1 + g.clone() * (1.0 - self.beta1);
            let v = self.v[i].clone() * self.beta2 + g.clone() * g * (1.0 - self.beta2);
            let denom = v.clone().sqrt() / bc2_sqrt + self.eps;
            *p = p.clone() - m.clone() * step_size / denom;
            self.m[i] = m;
            self.v[i] = v;
        }
        params
    }
}

/// The neural-network toy on a tensor backend: one penalty, every seed in one batch. Logs every
/// `log_every` outer iterations (and the first and last), as [`NnToy::run`].
pub fn run_nn(
    toy: &NnToy<'_>,
    penalty: Penalty,
    seeds: &[u64],
    log_every: usize,
    device: &Device,
) -> Result<Vec<ToyRun>> {
    check_supported(&penalty)?;
    let started = std::time::Instant::now();
    let cfg = toy.config();
    let ctx = Ctx::new(device);
    let (n, d, h) = (seeds.len(), cfg.env.dim, cfg.rm.hidden);
    let (signal_dims, cost) = (cfg.env.signal_dims, cfg.env.action_cost);
    let ideal = ctx.tensor(toy.ideal().to_vec(), [1, 1, d]);
    let utility = |y: Tensor<3>| {
        gaussian(
            y,
            ideal.clone(),
            cfg.env.utility_scale,
            cfg.env.utility_width,
        )
    };
    let initial: Vec<_> = seeds.iter().map(|&seed| toy.initial_rm(seed)).collect();
    let flats: Vec<&[f64]> = initial.iter().map(|m| m.params()).collect();
    let mut rm = ToyMlps::from_flat(&flats, d, h, &ctx.device, ctx.dtype);
    let zeros = || rm.params().each_ref().map(Tensor::zeros_like);
    let mut adam = Adam {
        lr: cfg.rm.lr,
        beta1: cfg.rm.beta1,
        beta2: cfg.rm.beta2,
        eps: cfg.rm.adam_eps,
        weight_decay: cfg.rm.weight_decay,
        m: zeros(),
        v: zeros(),
        t: 0,
    };
    let mut policy_rngs: Vec<_> = seeds.iter().map(|&s| rng(s, STREAM_POLICY)).collect();
    let mut buffer_rngs: Vec<_> = seeds.iter().map(|&s| rng(s, STREAM_BUFFER)).collect();
    // `draws` rows of `d` standard normals per seed from its stream: `[seeds, draws, d]`.
    let normals = |rngs: &mut [rand_chacha::ChaCha8Rng], draws: usize| {
        let values = rngs
            .iter_mut()
            .flat_map(|r| {
                (0..draws * d)
                    .map(|_| StandardNormal.sample(r))
                    .collect::<Vec<f64>>()
            })
            .collect();
        ctx.tensor(values, [n, draws, d])
    };
    let capacity = cfg.rm.buffer_size;
    let (mut buffer_y, mut buffer_u) = (ctx.zeros([n, capacity, d]), ctx.zeros([n, capacity, 1]));
    let (mut filled, mut next) = (0, 0);
    let mut theta = ctx.zeros([n, 1, d]);

    let record = |rm: &ToyMlps, theta: &Tensor<3>| {
        let pass = rm.forward(theta.clone());
        let u = utility(theta.clone());
        let p = if penalty.is_zero() {
            u.zeros_like()
        } else {
            let g = rm.grad_norm_sq(theta.clone(), &pass);
            penalty_value(&penalty, pass.reward.clone(), u.clone(), g)
        };
        let flat = |t: Tensor<3>| t.squeeze_dim::<2>(1);
        record_row(
            flat(theta.clone()),
            signal_dims,
            flat(u),
            flat(pass.reward),
            flat(p),
        )
    };
    let (n_outer, log_every) = (cfg.policy.outer_iterations, log_every.max(1));
    let mut rows = vec![record(&rm, &theta)];
    let mut iterations = vec![0];
    let clip = cfg.policy.grad_clip;
    for t in 0..n_outer {
        let (sigma, lr) = toy.schedule(t);
        let eps = normals(&mut policy_rngs, cfg.policy.inner_steps);
        for k in 0..cfg.policy.inner_steps {
            let y = theta.clone() + eps.clone().narrow(1, k, 1) * sigma;
            let ya = y.clone().autodiff().require_grad();
            let pass = rm.forward(ya.clone());
            let mut j = pass.reward.clone() - sq_norm(ya.clone()) * cost;
            if !penalty.is_zero() {
                // The utility is held fixed at the sampled action, as the authors do.
                let g = rm.grad_norm_sq(ya.clone(), &pass);
                j = j - penalty_value(&penalty, pass.reward, utility(y), g);
            }
            let grads = j.sum().backward();
            let grad = ya.grad(&grads).expect("the action is tracked");
            theta = theta + grad.clamp(-clip, clip) * lr;
        }
        let iteration = t + 1;
        if iteration % log_every == 0 || iteration == n_outer {
            rows.push(record(&rm, &theta));
            iterations.push(iteration);
        }

        // Label fresh samples into the FIFO buffer (oldest entries overwritten in place).
        let samples = cfg.rm.samples_per_iteration;
        let ys = theta.clone() + normals(&mut buffer_rngs, samples) * sigma;
        let us = utility(ys.clone());
        for i in 0..samples {
            let slot = if filled < capacity {
                filled += 1;
                filled - 1
            } else {
                let oldest = next;
                next = (next + 1) % capacity;
                oldest
            };
            buffer_y =
                buffer_y.slice_assign([0..n, slot..slot + 1, 0..d], ys.clone().narrow(1, i, 1));
            buffer_u =
                buffer_u.slice_assign([0..n, slot..slot + 1, 0..1], us.clone().narrow(1, i, 1));
        }
        // One Adam step on each seed's mean squared error over its buffer.
        let leaves = rm.params().map(|p| p.autodiff().require_grad());
        let tracked = ToyMlps::from_params(leaves.clone());
        let err = tracked
            .forward(buffer_y.clone().narrow(1, 0, filled))
            .reward
            - buffer_u.clone().narrow(1, 0, filled);
        let loss = (err.clone() * err).sum() / filled as f64;
        let grads = loss.backward();
        let grads = leaves
            .each_ref()
            .map(|p| p.grad(&grads).expect("every parameter is tracked"));
        rm = ToyMlps::from_params(adam.step(rm.params(), grads));
    }
    let logged = Logged {
        iterations,
        rows,
        final_actions: theta.squeeze_dim(1),
        policy_steps: n_outer * cfg.policy.inner_steps,
        started,
    };
    runs_of(penalty, seeds, logged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toy::linear::LinearToyConfig;

    fn assert_close(what: &str, tol: f64, got: &[ToyRun], want: &[ToyRun]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.seed, g.records.len()), (w.seed, w.records.len()));
            let pairs = g.records.iter().zip(&w.records).flat_map(|(a, b)| {
                assert_eq!(a.iteration, b.iteration);
                [
                    (a.signal, b.signal),
                    (a.noise, b.noise),
                    (a.true_utility, b.true_utility),
                    (a.proxy_reward, b.proxy_reward),
                    (a.penalty, b.penalty),
                ]
            });
            let finals = g.final_action.iter().copied().zip(w.final_action.clone());
            assert_eq!(g.final_action.len(), w.final_action.len());
            let mut worst = 0.0f64;
            for (a, b) in pairs.chain(finals) {
                let rel = (a - b).abs() / (1.0 + b.abs());
                assert!(rel <= tol, "{what}, seed {}: {a} vs {b}", g.seed);
                worst = worst.max(rel);
            }
            eprintln!(
                "{what}, seed {}: max relative difference {worst:.1e}",
                g.seed
            );
        }
    }

    /// flex in `f64` follows the hand-written kernels' trajectories, every logged point, with
    /// either gradient mode (`crates/model/tests/backend_parity.rs` runs both toys on every
    /// backend).
    #[test]
    fn linear_toy_on_flex_follows_the_host_kernels() {
        let device = fpo_model::device(fpo_model::BackendKind::Flex, false).unwrap();
        for gradient in [GradientMode::FiniteDifference, GradientMode::Analytic] {
            let mut cfg = LinearToyConfig::paper();
            cfg.policy.iterations = 60;
            cfg.policy.gradient = gradient;
            let toy = LinearToy::new(&cfg).unwrap();
            let seeds = [0, 1, 2];
            for v in Variant::ALL {
                let p = Penalty::new(v, 0.1);
                let want: Vec<ToyRun> = seeds.iter().map(|&s| toy.run(p, s, None)).collect();
                let got = run_linear(&toy, p, &seeds, &device).unwrap();
                assert_close(&format!("{v} {gradient:?}"), 1e-9, &got, &want);
            }
        }
    }

    #[test]
    fn the_influence_penalty_is_refused() {
        let device = fpo_model::device(fpo_model::BackendKind::Flex, false).unwrap();
        let cfg = LinearToyConfig::paper();
        let toy = LinearToy::new(&cfg).unwrap();
        let err = run_linear(&toy, Penalty::influence(0.1, 0.01), &[0], &device).unwrap_err();
        assert!(err.to_string().contains("host f64 kernels"), "{err}");
    }
}
