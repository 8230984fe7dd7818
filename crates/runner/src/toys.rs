//! Runs a toy suite and turns its trajectories into metrics rows and a summary.

use std::collections::BTreeMap;

use fpo::Penalty;
use fpo::toy::{ToyRun, linear::LinearToy, nn::NnToy, run_grid, tensor};
use fpo_eval::toys::ToyClaims;
use fpo_model::BackendKind;
use fpo_rundir::{MetricsRow, ToySummary};

use crate::settings::{Resolved, SuiteConfig};

/// Runs every (penalty, seed) of the resolved experiment: on the host kernels, or as tensor
/// programs on `[run] backend` when one is set.
pub fn run(resolved: &Resolved, on_done: &(dyn Fn() + Sync)) -> fpo::Result<Vec<ToyRun>> {
    if let Some(kind) = resolved.run.backend {
        return run_on_tensors(resolved, kind, on_done);
    }
    let jobs = jobs(resolved);
    let reference = resolved.reference;
    match &resolved.config {
        SuiteConfig::ToyLinear(cfg) => {
            let toy = LinearToy::new(cfg)?;
            run_grid(&jobs, |p, s| Ok(toy.run(p, s, reference)), on_done)
        }
        SuiteConfig::Llm(_) => Err(fpo::Error::InvalidConfig {
            key: "suite".into(),
            message: "the LLM suite is not a toy".into(),
        }),
        SuiteConfig::ToyNn(cfg) => {
            let toy = NnToy::new(cfg)?;
            let log_every = resolved.run.log_every;
            run_grid(&jobs, |p, s| toy.run(p, s, log_every, reference), on_done)
        }
    }
}

/// Runs each penalty as one tensor program over every seed, on `kind`'s device, in the same
/// (penalty-major) order as [`jobs`].
fn run_on_tensors(
    resolved: &Resolved,
    kind: BackendKind,
    on_done: &(dyn Fn() + Sync),
) -> fpo::Result<Vec<ToyRun>> {
    let device = fpo_model::device(kind, false)?;
    let seeds = &resolved.run.seeds.0;
    let mut runs = Vec::new();
    for penalty in resolved.penalties() {
        let batch = match &resolved.config {
            SuiteConfig::ToyLinear(cfg) => {
                tensor::run_linear(&LinearToy::new(cfg)?, penalty, seeds, &device)?
            }
            SuiteConfig::ToyNn(cfg) => {
                let toy = NnToy::new(cfg)?;
                tensor::run_nn(&toy, penalty, seeds, resolved.run.log_every, &device)?
            }
            SuiteConfig::Llm(_) => {
                return Err(fpo::Error::InvalidConfig {
                    key: "suite".into(),
                    message: "the LLM suite is not a toy".into(),
                });
            }
        };
        seeds.iter().for_each(|_| on_done());
        runs.extend(batch);
    }
    Ok(runs)
}

/// What `run.json` says about where a toy suite ran.
pub fn backend_label(resolved: &Resolved) -> String {
    match resolved.run.backend {
        None => "cpu (hand-written f64 kernels)".into(),
        Some(kind) => format!(
            "{} (tensor programs in {}, one batch of seeds per penalty)",
            kind.name(),
            if kind.is_cpu() { "f64" } else { "f32" }
        ),
    }
}

/// The (penalty, seed) grid in penalty-major order.
pub fn jobs(resolved: &Resolved) -> Vec<(Penalty, u64)> {
    let seeds = &resolved.run.seeds.0;
    resolved
        .penalties()
        .into_iter()
        .flat_map(|p| seeds.iter().map(move |&s| (p, s)))
        .collect()
}

/// Cost of each penalty: mean microseconds per policy step over its seeds (`timing.json`; not
/// deterministic, so kept out of `summary.json`).
pub fn timing(runs: &[ToyRun]) -> BTreeMap<String, f64> {
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

/// The metrics rows of every run, in the runs' order (`metrics.csv`).
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

/// The suite's summary (final metrics over seeds, claims) from its metrics rows.
pub fn summarize(resolved: &Resolved, rows: &[MetricsRow]) -> ToySummary {
    let claims = match resolved.config {
        SuiteConfig::ToyLinear(_) => ToyClaims::Linear,
        _ => ToyClaims::Nn,
    };
    fpo_eval::toys::summarize(resolved.suite.name(), claims, resolved.run.confidence, rows)
}
