//! Runs a toy suite and turns its trajectories into metrics rows and a summary.

use std::collections::BTreeMap;

use fpo::toy::{ToyRun, linear::LinearToy, nn::NnToy, run_grid};
use fpo::{Penalty, Variant};
use fpo_eval::claims::{self, Claim, Final, FinalsByVariant};
use fpo_eval::stats::Summary;
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

/// Runs every (variant, seed) of the resolved experiment.
pub fn run(resolved: &Resolved, on_done: &(dyn Fn() + Sync)) -> fpo::Result<Vec<ToyRun>> {
    let jobs = jobs(resolved);
    match &resolved.config {
        SuiteConfig::ToyLinear(cfg) => {
            let toy = LinearToy::new(cfg)?;
            run_grid(&jobs, |p, s| Ok(toy.run(p, s, None)), on_done)
        }
        SuiteConfig::ToyNn(cfg) => {
            let toy = NnToy::new(cfg)?;
            let log_every = resolved.run.log_every;
            run_grid(&jobs, |p, s| toy.run(p, s, log_every, None), on_done)
        }
    }
}

/// The (penalty, seed) grid in variant-major order.
pub fn jobs(resolved: &Resolved) -> Vec<(Penalty, u64)> {
    let mut jobs = Vec::new();
    for &v in &resolved.run.variants {
        let gamma = if v == Variant::Standard { 0.0 } else { resolved.fpo.gamma };
        for &s in &resolved.run.seeds.0 {
            jobs.push((Penalty::new(v, gamma), s));
        }
    }
    jobs
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
            };
            (name.clone(), summary)
        })
        .collect();
    let finals: FinalsByVariant = by_variant
        .iter()
        .map(|(name, rs)| {
            let mut fs: Vec<Final> = rs
                .iter()
                .map(|r| Final { seed: r.seed, utility: r.last().true_utility, noise: r.last().noise })
                .collect();
            fs.sort_by_key(|f| f.seed);
            (name.clone(), fs)
        })
        .collect();
    let claims = match resolved.config {
        SuiteConfig::ToyLinear(_) => claims::linear(&finals, level),
        SuiteConfig::ToyNn(_) => claims::nn(&finals, level),
    };
    ToySummary { suite: resolved.suite.name(), confidence: level, variants, claims }
}

/// Writes the metrics of every run as CSV (pandas-readable): one row per logged iteration.
pub fn write_metrics_csv(runs: &[ToyRun], out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(out, "variant,seed,iteration,signal,noise,true_utility,proxy_reward,penalty")?;
    for r in runs {
        for x in &r.records {
            writeln!(
                out,
                "{},{},{},{},{},{},{},{}",
                r.penalty.label(), r.seed, x.iteration, x.signal, x.noise, x.true_utility, x.proxy_reward,
                x.penalty
            )?;
        }
    }
    Ok(())
}
