//! Running an experiment into a run directory and recording it: `config.json`, the suite's
//! files, `run.json` (versions, machine, backend, timings), a ladder's `ladder.json` and a
//! reproduction's `reproduce.json`. Every file's type is `fpo_rundir`'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use fpo::toy::grid::{action_rows, metrics_rows, us_per_step};
use fpo_model::BackendKind;
use fpo_rundir::{
    Ladder, LadderToy, LlmTimings, Machine, ReproduceIndex, RunInfo, ToySummary, Versions, files,
    metrics,
};

use crate::output::{RunDir, json, progress, write_atomic};
use crate::{llm_run, toys};
use fpo::experiment::{Experiment, Resolved};

/// Versions of what computes a run.
pub fn versions() -> Versions {
    Versions {
        fpo: env!("CARGO_PKG_VERSION").into(),
        burn: fpo_model::BURN_VERSION.into(),
    }
}

/// When a run started, for its `run.json`.
#[derive(Debug)]
pub struct Started {
    at: Instant,
    unix_s: u64,
}

impl Started {
    /// Now.
    pub fn now() -> Self {
        Self {
            at: Instant::now(),
            unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    /// Seconds since the start.
    pub fn elapsed_s(&self) -> f64 {
        self.at.elapsed().as_secs_f64()
    }

    /// `run.json` of a run that ends now.
    pub fn run_info(&self, suite: &str, backend: String) -> RunInfo {
        let v = versions();
        RunInfo {
            suite: suite.into(),
            fpo_version: v.fpo,
            burn_version: v.burn,
            backend,
            machine: Machine::here(fpo_model::CpuPath::active().name()),
            started_unix_s: self.unix_s,
            wall_time_s: self.elapsed_s(),
            us_per_step: BTreeMap::new(),
            llm: None,
            merged: None,
        }
    }
}

/// What `run.json` says about an LLM run's backend.
fn llm_backend_label(kind: BackendKind) -> String {
    if kind.is_cpu() {
        format!(
            "{} (CPU; Q4_1/Q8_0 blocks for sampling and scoring)",
            kind.name()
        )
    } else {
        format!("{} (f32 weights on the device)", kind.name())
    }
}

/// The folder name of an experiment's run.
pub fn experiment_name(exp: &Experiment) -> &'static str {
    match exp {
        Experiment::Single(r) => r.suite.name(),
        Experiment::Ladder { .. } => "toy-ladder",
    }
}

/// Runs an experiment into `dir`: a single suite directly, a ladder as one folder per toy plus
/// `ladder.json`. An LLM suite runs `part` of itself, and takes the trained variants of `reuse`
/// when given.
pub fn run_experiment(
    exp: &Experiment,
    dir: &Path,
    reuse: Option<&Path>,
    part: llm_run::Part,
) -> anyhow::Result<()> {
    match exp {
        Experiment::Single(r) if r.suite.is_llm() => {
            let started = Started::now();
            let (_, timings): (_, LlmTimings) = llm_run::run(r, dir, reuse, part)?;
            let mut info = started.run_info(r.suite.name(), llm_backend_label(r.run.llm_backend()));
            info.llm = Some(timings);
            write_atomic(dir, files::RUN_INFO, &json(&info)?)?;
        }
        Experiment::Single(r) => {
            run_toy(r, dir)?;
        }
        Experiment::Ladder { parts, .. } => {
            let started = Started::now();
            let mut ladder = Ladder::new();
            for r in parts {
                let (summary, us_per_step) = run_toy(r, &dir.join(r.suite.name()))?;
                ladder.insert(
                    r.suite.name().to_owned(),
                    LadderToy {
                        summary,
                        us_per_step,
                    },
                );
            }
            write_atomic(dir, files::CONFIG, &json(exp)?)?;
            write_atomic(dir, files::LADDER, &json(&ladder)?)?;
            // The ladder refuses a backend: every rung runs on the host kernels.
            let backend = match parts.first() {
                Some(r) => toys::grid(r)?.backend_label(),
                None => String::new(),
            };
            let info = started.run_info(experiment_name(exp), backend);
            write_atomic(dir, files::RUN_INFO, &json(&info)?)?;
        }
    }
    Ok(())
}

/// Runs one resolved toy suite into `dir`: config.json, metrics.csv, actions.jsonl, summary.json,
/// run.json
/// (with the cost per policy step of each penalty). Returns the summary and that cost.
fn run_toy(resolved: &Resolved, dir: &Path) -> anyhow::Result<(ToySummary, BTreeMap<String, f64>)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(dir, files::CONFIG, &json(resolved)?)?;
    let started = Started::now();
    let grid = toys::grid(resolved)?;
    let bar = progress(grid.jobs().len() as u64, "runs", resolved.suite.name());
    let runs = grid
        .run(&|| bar.inc(1))
        .with_context(|| format!("running {}", resolved.source.display()))?;
    bar.finish_and_clear();
    let rows = metrics_rows(&runs);
    let summary = toys::summarize(resolved, &rows);
    let actions = action_rows(&runs, resolved.run.action_seeds());
    write_toy(dir, &rows, &actions, &summary)?;
    let timing = us_per_step(&runs);
    let mut info = started.run_info(resolved.suite.name(), grid.backend_label());
    info.us_per_step = timing.clone();
    write_atomic(dir, files::RUN_INFO, &json(&info)?)?;
    Ok((summary, timing))
}

/// A toy run's `metrics.csv`, `actions.jsonl` (when it keeps any) and `summary.json`.
pub fn write_toy(
    dir: &Path,
    rows: &[fpo_rundir::MetricsRow],
    actions: &[fpo_rundir::ActionRow],
    summary: &ToySummary,
) -> anyhow::Result<()> {
    write_atomic(dir, files::METRICS, &metrics::write(rows.iter().cloned())?)?;
    if !actions.is_empty() {
        write_atomic(dir, files::ACTIONS, &fpo_rundir::to_jsonl(actions)?)?;
    }
    write_atomic(dir, files::SUMMARY, &json(summary)?)
}

/// `run.json` of runs merged from a sweep's cells: the cells' wall times summed (with the
/// merge's own, `merge_s`), a toy's costs averaged, an LLM suite's timings gathered.
pub fn merged_run_info(
    resolved: &Resolved,
    sweep: &Path,
    runs: usize,
    cells: &[RunInfo],
    merge_s: f64,
) -> RunInfo {
    let started = Started::now();
    let backend = if resolved.suite.is_llm() {
        llm_backend_label(resolved.run.llm_backend())
    } else {
        toys::grid(resolved).map_or_else(|_| String::new(), |g| g.backend_label())
    };
    let mut info = started.run_info(resolved.suite.name(), backend);
    info.wall_time_s = cells.iter().map(|c| c.wall_time_s).sum::<f64>() + merge_s;
    if resolved.suite.is_llm() {
        info.llm = Some(LlmTimings::merged(
            cells.iter().filter_map(|c| c.llm.as_ref()),
        ));
    }
    info.started_unix_s = cells.iter().map(|c| c.started_unix_s).min().unwrap_or(0);
    info.merged = Some(fpo_rundir::Merged {
        sweep: sweep.display().to_string(),
        runs,
    });
    let mut cost: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for c in cells {
        for (k, v) in &c.us_per_step {
            cost.entry(k.clone()).or_default().push(*v);
        }
    }
    info.us_per_step = cost
        .into_iter()
        .map(|(k, v)| (k, v.iter().sum::<f64>() / v.len() as f64))
        .collect();
    info
}

/// Runs every suite of a reproduction into `target` (resuming its `.partial`): an LLM suite whose
/// training settings match an earlier one's reuses its variants. Writes `reproduce.json`.
pub fn reproduce(exps: &[Experiment], profile: &str, target: &Path) -> anyhow::Result<PathBuf> {
    let dir = RunDir::create(target)?;
    let started = Started::now();
    let mut trained: Vec<(fpo::llm::reuse::Training, PathBuf)> = Vec::new();
    for exp in exps {
        let exp_dir = dir.path().join(experiment_name(exp));
        let key = match exp {
            Experiment::Single(r) => fpo::llm::reuse::training_of(r),
            Experiment::Ladder { .. } => None,
        };
        let reuse = key
            .as_ref()
            .and_then(|k| trained.iter().find(|(t, _)| t == k).map(|(_, d)| d.clone()));
        run_experiment(exp, &exp_dir, reuse.as_deref(), llm_run::Part::Whole)?;
        if let Some(k) = key {
            trained.push((k, exp_dir));
        }
    }
    let index = ReproduceIndex {
        profile: profile.into(),
        suites: exps.iter().map(|e| experiment_name(e).to_owned()).collect(),
        wall_time_s: started.elapsed_s(),
        machine: Machine::here(fpo_model::CpuPath::active().name()),
        versions: versions(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_unix_s: started.unix_s,
    };
    write_atomic(dir.path(), files::REPRODUCE, &json(&index)?)?;
    dir.commit()
}

/// A timestamp for default run folder names.
pub fn timestamp() -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    now.replace(':', "-")
}
