//! Runs a toy suite and turns its trajectories into metrics rows and a summary.

use std::collections::BTreeMap;

use fpo::Penalty;
use fpo::toy::{ToyRun, linear::LinearToy, nn::NnToy, run_grid, tensor};
use fpo_eval::claims::{self, Claim, Final, FinalsByVariant};
use fpo_eval::stats::Summary;
use fpo_model::BackendKind;
use serde::Serialize;

use crate::settings::{Resolved, SuiteConfig};

/// Final metrics of one variant over seeds.
#[derive(Debug, Clone, Serialize)]
pub struct VariantSummary {
    /// Seeds that ran.
    pub seeds: Vec<u64>,
    /// Final true utility.
    pub true_utility: Summary,
    /// Final noise magnitude.
    pub noise: Summary,
    /// Final signal magnitude.
    pub signal: Summary,
    /// Final RM score of the action.
    pub proxy_reward: Summary,
    /// Final penalty.
    pub penalty: Summary,
    /// Pearson correlation, along each seed's logged trajectory, of this penalty with the exact
    /// (influence-function) one; a summary over seeds. Only in ladder runs, and only for
    /// penalties that are not identically zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_penalty_correlation: Option<Summary>,
}

/// `summary.json` of a toy run.
#[derive(Debug, Clone, Serialize)]
pub struct ToySummary {
    /// Suite name.
    pub suite: &'static str,
    /// Confidence level of every interval.
    pub confidence: f64,
    /// Final metrics per variant.
    pub variants: BTreeMap<String, VariantSummary>,
    /// The paper's claims, checked.
    pub claims: Vec<Claim>,
}

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
    let device = fpo_model::device(kind, false).map_err(|e| fpo::Error::InvalidConfig {
        key: "run.backend".into(),
        message: e.to_string(),
    })?;
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

/// Pearson correlation, `None` when either side is constant.
fn pearson(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in xs.iter().zip(ys) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Summarises the runs' final states and checks the suite's claims.
pub fn summarize(resolved: &Resolved, runs: &[ToyRun]) -> ToySummary {
    let level = resolved.run.confidence;
    let mut by_variant: BTreeMap<String, Vec<&ToyRun>> = BTreeMap::new();
    for r in runs {
        by_variant.entry(r.penalty.label()).or_default().push(r);
    }
    let variants = by_variant
        .iter()
        .map(|(name, rs)| {
            let of = |f: fn(&fpo::toy::ToyRecord) -> f64| {
                Summary::of(&rs.iter().map(|r| f(r.last())).collect::<Vec<_>>(), level)
            };
            let summary = VariantSummary {
                seeds: rs.iter().map(|r| r.seed).collect(),
                true_utility: of(|x| x.true_utility),
                noise: of(|x| x.noise),
                signal: of(|x| x.signal),
                proxy_reward: of(|x| x.proxy_reward),
                penalty: of(|x| x.penalty),
                exact_penalty_correlation: exact_correlation(rs, level),
            };
            (name.clone(), summary)
        })
        .collect();
    let finals: FinalsByVariant = by_variant
        .iter()
        .map(|(name, rs)| {
            let mut fs: Vec<Final> = rs
                .iter()
                .map(|r| Final {
                    seed: r.seed,
                    utility: r.last().true_utility,
                    noise: r.last().noise,
                })
                .collect();
            fs.sort_by_key(|f| f.seed);
            (name.clone(), fs)
        })
        .collect();
    let claims = match resolved.config {
        SuiteConfig::ToyLinear(_) => claims::linear(&finals, level),
        SuiteConfig::ToyNn(_) => claims::nn(&finals, level),
        SuiteConfig::Llm(_) => Vec::new(),
    };
    ToySummary {
        suite: resolved.suite.name(),
        confidence: level,
        variants,
        claims,
    }
}

fn exact_correlation(runs: &[&ToyRun], level: f64) -> Option<Summary> {
    let per_seed: Vec<f64> = runs
        .iter()
        .filter_map(|r| {
            let (own, exact): (Vec<f64>, Vec<f64>) = r
                .records
                .iter()
                .filter_map(|x| Some((x.penalty, x.exact_penalty?)))
                .unzip();
            pearson(&own, &exact)
        })
        .collect();
    (!per_seed.is_empty()).then(|| Summary::of(&per_seed, level))
}

/// Writes the metrics of every run as CSV (pandas-readable): one row per logged iteration.
pub fn write_metrics_csv(runs: &[ToyRun], out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(
        out,
        "variant,seed,iteration,signal,noise,true_utility,proxy_reward,penalty,exact_penalty"
    )?;
    for r in runs {
        let label = r.penalty.label();
        for x in &r.records {
            let exact = x.exact_penalty.map_or(String::new(), |v| v.to_string());
            writeln!(
                out,
                "{label},{},{},{},{},{},{},{},{exact}",
                r.seed, x.iteration, x.signal, x.noise, x.true_utility, x.proxy_reward, x.penalty
            )?;
        }
    }
    Ok(())
}
