//! A toy suite's grid and summary from its resolved settings (the work is `fpo::toy::grid`'s
//! and `fpo_eval::toys`').

use fpo::toy::grid::{Grid, Toy};
use fpo_eval::toys::ToyClaims;
use fpo_rundir::{MetricsRow, ToySummary};

use fpo::experiment::{Resolved, SuiteConfig};

/// The grid of a resolved toy suite.
pub fn grid(resolved: &Resolved) -> fpo::Result<Grid<'_>> {
    let toy = match &resolved.config {
        SuiteConfig::ToyLinear(cfg) => Toy::Linear(cfg),
        SuiteConfig::ToyNn(cfg) => Toy::Nn(cfg),
        SuiteConfig::Llm(_) => {
            return Err(fpo::Error::InvalidConfig {
                key: "suite".into(),
                message: "the LLM suite is not a toy".into(),
            });
        }
    };
    Ok(Grid {
        toy,
        penalties: resolved.penalties(),
        seeds: &resolved.run.seeds.0,
        log_every: resolved.run.log_every,
        reference: resolved.reference,
        backend: resolved.run.backend,
    })
}

/// The suite's summary (final metrics over seeds, claims) from its metrics rows.
pub fn summarize(resolved: &Resolved, rows: &[MetricsRow]) -> ToySummary {
    let claims = match resolved.config {
        SuiteConfig::ToyLinear(_) => ToyClaims::Linear,
        _ => ToyClaims::Nn,
    };
    fpo_eval::toys::summarize(resolved.suite.name(), claims, resolved.run.confidence, rows)
}
