//! A toy suite's grid: every (penalty, seed) job, on the hand-written `f64` host kernels or as
//! burn tensor programs on a backend; the runs' rows of `metrics.csv` and `actions.jsonl` and
//! their cost per policy step.

use std::collections::BTreeMap;

use fpo_model::BackendKind;
use fpo_rundir::{ActionRow, MetricsRow};

use super::linear::{LinearToy, LinearToyConfig};
use super::nn::{NnToy, NnToyConfig};
use super::{ToyRun, run_grid, tensor};
use crate::{Penalty, Result};

/// Which toy, with its configuration.
#[derive(Debug, Clone, Copy)]
pub enum Toy<'a> {
    /// Toy 1.
    Linear(&'a LinearToyConfig),
    /// Toy 2.
    Nn(&'a NnToyConfig),
}

/// Everything a toy suite's grid runs.
#[derive(Debug, Clone)]
pub struct Grid<'a> {
    /// The toy.
    pub toy: Toy<'a>,
    /// The penalties, in the order the grid runs them.
    pub penalties: Vec<Penalty>,
    /// The seeds of each penalty.
    pub seeds: &'a [u64],
    /// Log every this many outer iterations (the NN toy).
    pub log_every: usize,
    /// A penalty every logged point also evaluates (the ladder's exact rung).
    pub reference: Option<Penalty>,
    /// Tensor programs on this backend; none: the host kernels.
    pub backend: Option<BackendKind>,
}

impl Grid<'_> {
    /// The (penalty, seed) jobs in penalty-major order.
    pub fn jobs(&self) -> Vec<(Penalty, u64)> {
        self.penalties
            .iter()
            .flat_map(|&p| self.seeds.iter().map(move |&s| (p, s)))
            .collect()
    }

    /// Runs every job, in [`Self::jobs`]' order; `on_done` after each (from any thread).
    pub fn run(&self, on_done: &(dyn Fn() + Sync)) -> Result<Vec<ToyRun>> {
        if let Some(kind) = self.backend {
            return self.run_on_tensors(kind, on_done);
        }
        let jobs = self.jobs();
        let reference = self.reference;
        match self.toy {
            Toy::Linear(cfg) => {
                let toy = LinearToy::new(cfg)?;
                run_grid(&jobs, |p, s| Ok(toy.run(p, s, reference)), on_done)
            }
            Toy::Nn(cfg) => {
                let toy = NnToy::new(cfg)?;
                run_grid(
                    &jobs,
                    |p, s| toy.run(p, s, self.log_every, reference),
                    on_done,
                )
            }
        }
    }

    /// Each penalty as one tensor program over every seed, on `kind`'s device.
    fn run_on_tensors(
        &self,
        kind: BackendKind,
        on_done: &(dyn Fn() + Sync),
    ) -> Result<Vec<ToyRun>> {
        let device = fpo_model::device(kind, false)?;
        let mut runs = Vec::new();
        for &penalty in &self.penalties {
            let batch = match self.toy {
                Toy::Linear(cfg) => {
                    tensor::run_linear(&LinearToy::new(cfg)?, penalty, self.seeds, &device)?
                }
                Toy::Nn(cfg) => {
                    let toy = NnToy::new(cfg)?;
                    tensor::run_nn(&toy, penalty, self.seeds, self.log_every, &device)?
                }
            };
            self.seeds.iter().for_each(|_| on_done());
            runs.extend(batch);
        }
        Ok(runs)
    }

    /// Where the grid computes, in words (`run.json`).
    pub fn backend_label(&self) -> String {
        match self.backend {
            None => "cpu (hand-written f64 kernels)".into(),
            Some(kind) => format!(
                "{} (tensor programs in {}, one batch of seeds per penalty)",
                kind.name(),
                if kind.is_cpu() { "f64" } else { "f32" }
            ),
        }
    }
}

/// The rows of `metrics.csv` of every run, in the runs' order.
pub fn metrics_rows(runs: &[ToyRun]) -> Vec<MetricsRow> {
    runs.iter()
        .flat_map(|r| {
            let label = r.penalty.label();
            r.records.iter().map(move |x| MetricsRow {
                variant: label.clone(),
                seed: r.seed,
                iteration: x.iteration,
                signal: x.signal,
                noise: x.noise,
                true_utility: x.true_utility,
                proxy_reward: x.proxy_reward,
                penalty: x.penalty,
                exact_penalty: x.exact_penalty,
            })
        })
        .collect()
}

/// The rows of `actions.jsonl`: every logged action of the runs of `seeds`, in the runs' order.
pub fn action_rows(runs: &[ToyRun], seeds: &[u64]) -> Vec<ActionRow> {
    runs.iter()
        .filter(|r| seeds.contains(&r.seed))
        .flat_map(|r| {
            let label = r.penalty.label();
            r.records.iter().map(move |x| ActionRow {
                variant: label.clone(),
                seed: r.seed,
                iteration: x.iteration,
                action: x.action.clone(),
            })
        })
        .collect()
}

/// Cost of each penalty: mean microseconds per policy step over its seeds (`run.json`; not
/// deterministic, so kept out of `summary.json`).
pub fn us_per_step(runs: &[ToyRun]) -> BTreeMap<String, f64> {
    let mut acc: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for r in runs {
        let e = acc.entry(r.penalty.label()).or_default();
        e.0 += 1e6 * r.seconds / r.policy_steps.max(1) as f64;
        e.1 += 1;
    }
    acc.into_iter()
        .map(|(k, (sum, n))| (k, sum / n as f64))
        .collect()
}
