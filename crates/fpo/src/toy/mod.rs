//! The paper's two controlled environments.
//!
//! Both are written directly in `f64` (no tensor library): the linear toy because the golden test
//! compares it with the authors' NumPy run to 1e-9, the neural-network toy because a per-sample
//! MLP step through a tensor library costs 100-370 µs on CPU, far over the speed target. The MLP's
//! equivalence with burn's autodiff (forward, input gradient, parameter gradient and the mixed
//! second derivative the penalty needs) is checked in `crates/fpo/tests/burn_equivalence.rs`.
//! [`tensor`] runs the same two toys as burn tensor programs, on any backend (GPUs included).

pub mod grid;
pub mod influence;
pub mod linear;
pub mod mlp;
pub mod nn;
pub mod tensor;

use serde::{Deserialize, Serialize};

use crate::{Penalty, Variant};

/// One logged point of a toy trajectory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToyRecord {
    /// Outer iteration; 0 is the initial state where a toy logs it.
    pub iteration: usize,
    /// Norm of the action's signal coordinates.
    pub signal: f64,
    /// Norm of the action's noise coordinates.
    pub noise: f64,
    /// True (oracle) utility of the action.
    pub true_utility: f64,
    /// The reward model's score of the action.
    pub proxy_reward: f64,
    /// The variant's penalty at the action.
    pub penalty: f64,
    /// The exact (influence-function) penalty at the action, where the run was asked for it:
    /// the reference of the approximation ladder.
    pub exact_penalty: Option<f64>,
    /// The whole action (the linear toy's `y`, the NN toy's policy mean), signal coordinates
    /// first.
    pub action: Vec<f64>,
}

/// One finished run of a toy: a variant, a seed and its trajectory.
#[derive(Debug, Clone, PartialEq)]
pub struct ToyRun {
    /// The penalty (variant, weight, damping) that ran.
    pub penalty: Penalty,
    /// The seed that ran.
    pub seed: u64,
    /// The logged trajectory, in iteration order.
    pub records: Vec<ToyRecord>,
    /// The final action.
    pub final_action: Vec<f64>,
    /// Policy gradient steps taken.
    pub policy_steps: usize,
    /// Wall-clock seconds of the run (not part of any deterministic output).
    pub seconds: f64,
}

impl ToyRun {
    /// The variant that ran.
    pub fn variant(&self) -> Variant {
        self.penalty.variant
    }

    /// The last logged point.
    pub fn last(&self) -> &ToyRecord {
        self.records
            .last()
            .expect("a toy run logs at least one point")
    }
}

/// Euclidean norm.
pub(crate) fn norm(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// A squared Euclidean distance.
pub(crate) fn dist_sq(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// A seeded stream of the toys' RNG: one stream per purpose, so that every variant of a seed sees
/// the same initial RM and the same noise (common random numbers).
pub(crate) fn rng(seed: u64, stream: u64) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Runs every `(penalty, seed)` job on the rayon pool and returns the runs in job order.
/// `on_done` is called once per finished job (from any thread), for progress reporting.
pub fn run_grid<F>(
    jobs: &[(crate::Penalty, u64)],
    run: F,
    on_done: &(dyn Fn() + Sync),
) -> crate::Result<Vec<ToyRun>>
where
    F: Fn(crate::Penalty, u64) -> crate::Result<ToyRun> + Sync,
{
    use rayon::prelude::*;
    jobs.par_iter()
        .map(|&(penalty, seed)| {
            let r = run(penalty, seed);
            on_done();
            r
        })
        .collect()
}

/// The central difference `(f(x + h e_i) - f(x - h e_i)) / 2h`, for the derivative checks of the
/// toys' tests.
#[cfg(test)]
pub(crate) fn central_difference(f: impl Fn(&[f64]) -> f64, x: &[f64], i: usize, h: f64) -> f64 {
    let (mut a, mut b) = (x.to_vec(), x.to_vec());
    a[i] += h;
    b[i] -= h;
    (f(&a) - f(&b)) / (2.0 * h)
}
