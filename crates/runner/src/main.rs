//! `fpo`: the command line of the alignment-collapse workspace. Thin glue over `fpo`, `fpo-eval`
//! and `fpo-report`.

#![allow(clippy::print_stdout)]

mod doctor;
mod eval_cli;
mod llm_cli;
mod llm_run;
mod output;
mod settings;
mod sweep;
mod toys;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use serde::Serialize;

use crate::output::{RunDir, json, progress, write_atomic};
use crate::settings::{Experiment, Overrides, Resolved, Seeds, SettingsError};
use fpo_model::BackendKind;

/// Experiments on alignment collapse in iterative RLHF (Gauthier, Bach, Jordan, 2026).
#[derive(Debug, Parser)]
#[command(name = "fpo", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one experiment file (e.g. experiments/toy-linear.toml).
    Run {
        /// The experiment TOML.
        experiment: PathBuf,
        /// Run only these variants (repeatable): standard, relaxed, practical.
        #[arg(long = "variant", value_parser = parse_variant)]
        variants: Vec<fpo::Variant>,
        /// Seeds: `A..B` (half-open), `N`, or `N,M,...`.
        #[arg(long)]
        seeds: Option<Seeds>,
        /// Apply the file's `[profiles.<NAME>]` overrides.
        #[arg(long)]
        profile: Option<String>,
        /// Run directory (default: runs/<suite>/<timestamp>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the resolved settings as JSON and exit.
        #[arg(long)]
        print_config: bool,
        /// Do not write the HTML report.
        #[arg(long)]
        no_report: bool,
        /// Where reports go: <REPORTS>/<run name>/index.html.
        #[arg(long, default_value = "reports")]
        reports: PathBuf,
        /// LLM suites: an LLM judge, `openai://HOST/v1?model=NAME` (HTTPS, key in
        /// $OPENAI_API_KEY or `&key_env=VAR`) or `openai+http://HOST:PORT/v1?model=NAME`.
        #[arg(long)]
        judge: Option<String>,
        /// LLM suites: take the trained variants of this run directory (same [train] and [fpo]
        /// settings) instead of training them again.
        #[arg(long)]
        reuse: Option<PathBuf>,
        /// Set a key of the experiment file: `--set fpo.gamma=10` (repeatable).
        #[arg(long = "set", value_parser = sweep::parse_set)]
        set: Vec<sweep::SetArg>,
        /// Tensor backend (`[run] backend`): flex, ndarray, wgpu or cuda, among those compiled in
        /// (`fpo doctor` lists them). LLM suites default to flex; toy suites without it run on
        /// their hand-written f64 host kernels, with it as tensor programs on that backend.
        #[arg(long, value_parser = llm_cli::parse_backend)]
        backend: Option<BackendKind>,
        /// Run only the cells K, K+N, ... of the grid (variant x seed x `--set` values) into
        /// `<out>/cells/<cell>/`, as one task of `fpo sweep` (a Slurm array task).
        #[arg(long, value_parser = sweep::parse_shard)]
        shard: Option<sweep::Shard>,
    },
    /// Expand a grid (variants x seeds x `--set` values) into cells and run them here, or emit
    /// a Slurm job array (`--emit slurm`).
    Sweep(sweep::SweepArgs),
    /// Put the cells of a sweep back together into run directories (one per `--set` value
    /// combination), with their report.
    Merge {
        /// The sweep directory.
        dir: PathBuf,
        /// Output (default: <DIR>/merged).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Do not write the HTML report.
        #[arg(long)]
        no_report: bool,
        /// Where reports go: <REPORTS>/<run name>/index.html.
        #[arg(long, default_value = "reports")]
        reports: PathBuf,
    },
    /// Render the HTML report of run directories (runs, ladders or reproduce directories).
    Report {
        /// Run directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Report directory (default: reports/<name of the first run directory>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Generate a continuation of one prompt (for debugging a model).
    Generate(llm_cli::GenerateArgs),
    /// What this build and machine offer: the backends compiled in, the devices and adapters
    /// found (each checked with a small computation), the model and data folders.
    Doctor {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Score one prompt (and continuation): next-token logits, per-token NLL.
    Score(llm_cli::ScoreArgs),
    /// Evaluate one model (base, or with LoRA adapters) on one suite, without training.
    Eval(eval_cli::EvalArgs),
    /// Run every suite of experiments/reproduce.toml under one profile.
    Reproduce {
        /// Size of the runs.
        #[arg(long, value_enum, default_value_t = Profile::Cpu)]
        profile: Profile,
        /// Directory of the experiment files.
        #[arg(long, default_value = "experiments")]
        experiments: PathBuf,
        /// Output directory (default: runs/reproduce-<profile>-<timestamp>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the resolved settings of every suite as JSON and exit.
        #[arg(long)]
        print_config: bool,
        /// Where reports go: <REPORTS>/<run name>/index.html.
        #[arg(long, default_value = "reports")]
        reports: PathBuf,
        /// LLM suites: an LLM judge (see `fpo run --help`).
        #[arg(long)]
        judge: Option<String>,
        /// Tensor backend of the LLM suites (the toy suites run on the CPU whatever this says).
        #[arg(long, value_parser = llm_cli::parse_backend)]
        backend: Option<BackendKind>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Profile {
    /// Minutes: what CI runs.
    Smoke,
    /// The default of `just reproduce` on a 2-core CPU.
    Cpu,
    /// Hours on a CPU: the LLM suite at the paper's sizes.
    CpuFull,
    /// The paper's sizes (a GPU for the LLM suites).
    Paper,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Smoke => "smoke",
            Profile::Cpu => "cpu",
            Profile::CpuFull => "cpu-full",
            Profile::Paper => "paper",
        }
    }
}

pub(crate) fn parse_variant(s: &str) -> Result<fpo::Variant, String> {
    fpo::Variant::from_name(s).ok_or_else(|| {
        format!("unknown variant `{s}`, expected one of: standard, relaxed, practical")
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            let usage = err.downcast_ref::<SettingsError>().is_some()
                || err.downcast_ref::<fpo_eval::judge::JudgeError>().is_some()
                || err.downcast_ref::<fpo_model::llm::LlmError>().is_some()
                || err.downcast_ref::<output::AlreadyExists>().is_some()
                || err
                    .downcast_ref::<fpo_eval::truthfulqa::DataError>()
                    .is_some();
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Doctor { json } => return doctor::run(json),
        Command::Generate(args) => llm_cli::generate(args)?,
        Command::Score(args) => llm_cli::score(args)?,
        Command::Eval(args) => println!("{}", eval_cli::run(args)?.display()),
        Command::Sweep(args) => println!("{}", sweep::sweep(args)?),
        Command::Merge {
            dir,
            out,
            no_report,
            reports,
        } => {
            let runs = sweep::merge(&dir, out.as_deref())?;
            for r in &runs {
                println!("{}", r.display());
            }
            if !no_report {
                let name = format!("{}-merged", fpo_report::name_of(&dir));
                let path = fpo_report::write(&name, &runs, &reports.join(&name))?;
                println!("{}", path.display());
            }
        }
        Command::Report { dirs, out } => {
            let name = fpo_report::name_of(&dirs[0]);
            let out = out.unwrap_or_else(|| Path::new("reports").join(&name));
            let path = fpo_report::write(&name, &dirs, &out)?;
            println!("{}", path.display());
        }
        Command::Run {
            experiment,
            variants,
            seeds,
            profile,
            out,
            print_config,
            no_report,
            reports,
            judge,
            reuse,
            set,
            backend,
            shard,
        } => {
            if let Some(shard) = shard {
                let out = out.context("--shard needs --out (the sweep directory)")?;
                if backend.is_some() {
                    anyhow::bail!(
                        "--backend does not apply to a shard: it runs the sweep's grid as \
                         `fpo sweep` wrote it (sweep with `--set run.backend=NAME` instead)"
                    );
                }
                for dir in
                    sweep::run_shard(&experiment, profile, variants, seeds, set, shard, &out)?
                {
                    println!("{}", dir.display());
                }
                return Ok(ExitCode::SUCCESS);
            }
            let mut single_values = Vec::new();
            for s in set {
                let [value] = s.values.as_slice() else {
                    return Err(SettingsError::Invalid {
                        path: experiment.clone(),
                        key: s.key.clone(),
                        message: "--set with several values makes a grid: use `fpo sweep`".into(),
                    }
                    .into());
                };
                single_values.push((s.key.clone(), value.clone()));
            }
            if let Some(b) = backend {
                single_values.push(("run.backend".into(), b.name().into()));
            }
            let overrides = Overrides {
                variants,
                seeds,
                judge,
                set: single_values,
                llm_backend: None,
            };
            let exp = settings::load_experiment(&experiment, profile.as_deref(), &overrides)?;
            if print_config {
                println!("{}", serde_json::to_string_pretty(&exp)?);
                return Ok(ExitCode::SUCCESS);
            }
            let target = out.unwrap_or_else(|| {
                Path::new("runs")
                    .join(experiment_name(&exp))
                    .join(timestamp())
            });
            let dir = RunDir::create(&target)?;
            run_experiment(&exp, dir.path(), reuse.as_deref())?;
            let path = dir.commit()?;
            println!("{}", path.display());
            if !no_report {
                println!("{}", report(&path, &reports)?.display());
            }
        }
        Command::Reproduce {
            profile,
            experiments,
            out,
            print_config,
            reports,
            judge,
            backend,
        } => {
            let list = experiments.join("reproduce.toml");
            let suites = reproduce_list(&list)?;
            let exps = suites
                .iter()
                .map(|f| {
                    settings::load_experiment(
                        &experiments.join(f),
                        Some(profile.name()),
                        &Overrides {
                            judge: judge.clone(),
                            llm_backend: backend,
                            ..Overrides::default()
                        },
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            if print_config {
                println!("{}", serde_json::to_string_pretty(&exps)?);
                return Ok(ExitCode::SUCCESS);
            }
            let target = out.unwrap_or_else(|| {
                Path::new("runs").join(format!("reproduce-{}-{}", profile.name(), timestamp()))
            });
            let dir = RunDir::create(&target)?;
            let started = Started::now();
            // An LLM suite whose training settings match an earlier one's reuses its variants.
            let mut trained: Vec<((serde_json::Value, serde_json::Value), PathBuf)> = Vec::new();
            for exp in &exps {
                let exp_dir = dir.path().join(experiment_name(exp));
                let key = match exp {
                    Experiment::Single(r) if r.suite.is_llm() => {
                        Some(llm_run::training_settings(&serde_json::to_value(r)?))
                    }
                    _ => None,
                };
                let reuse = key
                    .as_ref()
                    .and_then(|k| trained.iter().find(|(t, _)| t == k).map(|(_, d)| d.clone()));
                run_experiment(exp, &exp_dir, reuse.as_deref())?;
                if let Some(k) = key {
                    trained.push((k, exp_dir));
                }
            }
            let index = ReproduceIndex {
                profile: profile.name(),
                suites: exps.iter().map(experiment_name).collect(),
                wall_time_s: started.at.elapsed().as_secs_f64(),
                machine: machine(),
                versions: VERSIONS,
                command: std::env::args().collect::<Vec<_>>().join(" "),
                started_unix_s: started.unix_s,
            };
            write_atomic(dir.path(), "reproduce.json", &json(&index)?)?;
            let path = dir.commit()?;
            println!("{}", path.display());
            println!("{}", report(&path, &reports)?.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `<reports>/<run name>/index.html` for a finished run directory.
fn report(run: &Path, reports: &Path) -> anyhow::Result<PathBuf> {
    let name = fpo_report::name_of(run);
    let out = reports.join(&name);
    fpo_report::write(&name, &[run.to_owned()], &out)
        .with_context(|| format!("writing the report of {}", run.display()))
}

fn experiment_name(exp: &Experiment) -> &'static str {
    match exp {
        Experiment::Single(r) => r.suite.name(),
        Experiment::Ladder { .. } => "toy-ladder",
    }
}

/// Runs an experiment into `dir`: a single suite directly, a ladder as one folder per toy plus
/// `ladder.json`. An LLM suite takes the trained variants of `reuse` when given.
fn run_experiment(exp: &Experiment, dir: &Path, reuse: Option<&Path>) -> anyhow::Result<()> {
    match exp {
        Experiment::Single(r) if r.suite.is_llm() => {
            let started = Started::now();
            llm_run::run(r, dir, reuse)?;
            let info = started.run_info(
                r.suite.name(),
                llm_backend_label(r.run.llm_backend()),
                BTreeMap::new(),
            );
            write_atomic(dir, "run.json", &json(&info)?)?;
        }
        Experiment::Single(r) => {
            run_suite(r, dir)?;
        }
        Experiment::Ladder { parts, .. } => {
            let started = Started::now();
            let mut toys = BTreeMap::new();
            for r in parts {
                let (summary, timing) = run_suite(r, &dir.join(r.suite.name()))?;
                toys.insert(
                    r.suite.name(),
                    LadderToy {
                        summary,
                        us_per_step: timing,
                    },
                );
            }
            write_atomic(dir, "config.json", &json(exp)?)?;
            write_atomic(dir, "ladder.json", &json(&toys)?)?;
            // The ladder refuses a backend: every rung runs on the host kernels.
            let backend = parts.first().map(toys::backend_label).unwrap_or_default();
            let info = started.run_info(experiment_name(exp), backend, BTreeMap::new());
            write_atomic(dir, "run.json", &json(&info)?)?;
        }
    }
    Ok(())
}

/// One toy of `ladder.json`: the per-rung summary and the cost of each rung.
#[derive(Debug, Serialize)]
struct LadderToy {
    summary: toys::ToySummary,
    us_per_step: BTreeMap<String, f64>,
}

#[derive(Debug, Serialize)]
struct ReproduceIndex {
    profile: &'static str,
    suites: Vec<&'static str>,
    wall_time_s: f64,
    machine: Machine,
    versions: Versions,
    /// The command line, as run.
    command: String,
    started_unix_s: u64,
}

/// Versions of what computed a run.
#[derive(Debug, Serialize)]
struct Versions {
    fpo: &'static str,
    burn: &'static str,
}

const VERSIONS: Versions = Versions {
    fpo: env!("CARGO_PKG_VERSION"),
    burn: fpo_model::BURN_VERSION,
};

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

/// `run.json`: what ran where, and for how long (kept out of the deterministic files).
#[derive(Debug, Serialize)]
struct RunInfo {
    suite: &'static str,
    fpo_version: &'static str,
    burn_version: &'static str,
    backend: String,
    machine: Machine,
    started_unix_s: u64,
    wall_time_s: f64,
    /// Mean microseconds per policy step, per penalty (toy suites).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    us_per_step: BTreeMap<String, f64>,
}

/// When a run started, for its `run.json`.
struct Started {
    at: Instant,
    unix_s: u64,
}

impl Started {
    fn now() -> Self {
        Self {
            at: Instant::now(),
            unix_s: unix_now(),
        }
    }

    /// `run.json` of a run that ends now.
    fn run_info(
        &self,
        suite: &'static str,
        backend: String,
        us_per_step: BTreeMap<String, f64>,
    ) -> RunInfo {
        RunInfo {
            suite,
            fpo_version: VERSIONS.fpo,
            burn_version: VERSIONS.burn,
            backend,
            machine: machine(),
            started_unix_s: self.unix_s,
            wall_time_s: self.at.elapsed().as_secs_f64(),
            us_per_step,
        }
    }
}

#[derive(Debug, Serialize)]
struct Machine {
    os: &'static str,
    arch: &'static str,
    threads: usize,
}

fn machine() -> Machine {
    Machine {
        os: std::env::consts::OS,
        arch: std::env::consts::ARCH,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReproduceFile {
    suites: Vec<PathBuf>,
}

fn reproduce_list(path: &Path) -> Result<Vec<PathBuf>, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let f: ReproduceFile = toml::from_str(&text).map_err(|e| SettingsError::Invalid {
        path: path.to_owned(),
        key: "suites".into(),
        message: e.to_string(),
    })?;
    Ok(f.suites)
}

/// Runs one resolved suite into `dir`: config.json, metrics.csv, summary.json, run.json (with
/// the cost per policy step of each penalty).
fn run_suite(
    resolved: &Resolved,
    dir: &Path,
) -> anyhow::Result<(toys::ToySummary, BTreeMap<String, f64>)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(dir, "config.json", &json(resolved)?)?;
    let started = Started::now();
    let jobs = toys::jobs(resolved).len() as u64;
    let bar = progress(jobs, "runs", resolved.suite.name());
    let runs = toys::run(resolved, &|| bar.inc(1))
        .with_context(|| format!("running {}", resolved.source.display()))?;
    bar.finish_and_clear();
    let mut csv = Vec::new();
    toys::write_metrics_csv(&runs, &mut csv)?;
    write_atomic(dir, "metrics.csv", &csv)?;
    let summary = toys::summarize(resolved, &runs);
    write_atomic(dir, "summary.json", &json(&summary)?)?;
    let timing = toys::timing(&runs);
    let info = started.run_info(
        resolved.suite.name(),
        toys::backend_label(resolved),
        timing.clone(),
    );
    write_atomic(dir, "run.json", &json(&info)?)?;
    Ok((summary, timing))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn timestamp() -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    now.replace(':', "-")
}
