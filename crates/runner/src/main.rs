//! `fpo`: the command line of the alignment-collapse workspace. Thin glue over `fpo`, `fpo-eval`,
//! `fpo-judge` and `fpo-report`: [`cli`] parses, this file dispatches, [`record`] writes runs.

#![allow(clippy::print_stdout)]

mod cli;
mod doctor;
mod eval_cli;
mod judge_check;
mod llm_cli;
mod llm_run;
mod output;
mod record;
mod sweep;
mod toys;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::cli::{Cli, Command};
use crate::output::RunDir;
use crate::record::timestamp;
use fpo::experiment::{self, BackendOverride, Overrides, SettingsError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(exit_code(&err))
        }
    }
}

/// The exit code of an error (docs/running.md, "Errors"): 2 for bad input, anything that the
/// files and flags show before work starts (settings, data and model files, the output
/// directory, a folder that holds no run); 1 for a failure while running.
fn exit_code(err: &anyhow::Error) -> u8 {
    let bad_input = |e: &(dyn std::error::Error + 'static)| {
        e.is::<SettingsError>()
            || e.is::<fpo_judge::JudgeError>()
            || e.is::<fpo_model::llm::LlmError>()
            || e.is::<fpo_model::CpuPathError>()
            || e.is::<fpo_eval::truthfulqa::DataError>()
            || e.is::<output::AlreadyExists>()
            || matches!(
                e.downcast_ref::<fpo_rundir::lock::LockError>(),
                Some(
                    fpo_rundir::lock::LockError::Held { .. }
                        | fpo_rundir::lock::LockError::Folder { .. }
                )
            )
            || e.is::<cli::BadFlag>()
            || matches!(
                e.downcast_ref::<fpo_report::Error>(),
                Some(fpo_report::Error::NotARun(_) | fpo_report::Error::RunDir(_))
            )
    };
    if err.chain().any(bad_input) { 2 } else { 1 }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if !matches!(cli.command, Command::Doctor { .. }) {
        // A kernel path the CPU lacks is refused before any work (`fpo doctor` reports it).
        fpo_model::CpuPath::from_env()?;
    }
    match cli.command {
        Command::Doctor { json } => return doctor::run(json),
        Command::Generate(args) => llm_cli::generate(args)?,
        Command::Score(args) => llm_cli::score(args)?,
        Command::Eval(args) => println!("{}", eval_cli::run(args)?.display()),
        Command::JudgeCheck(args) => judge_check::run(args)?,
        Command::Sweep(args) => println!("{}", sweep::sweep(args)?),
        Command::Merge {
            dir,
            out,
            no_report,
            reports,
            judge,
        } => {
            let runs = sweep::merge(&dir, out.as_deref(), &judge)?;
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
                let out = out.ok_or_else(|| {
                    cli::BadFlag("--shard needs --out (the sweep directory)".into())
                })?;
                if backend.is_some() {
                    return Err(cli::BadFlag(
                        "--backend does not apply to a shard: it runs the sweep's grid as \
                         `fpo sweep` wrote it (sweep with `--set run.backend=NAME` instead)"
                            .into(),
                    )
                    .into());
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
            let overrides = Overrides {
                variants,
                seeds,
                judge: judge.judge,
                retry_errors: judge.retry_errors,
                profile_optional: false,
                set: single_values,
                backend: backend.map(|kind| BackendOverride {
                    kind,
                    llm_only: false,
                }),
            };
            let exp = experiment::load_experiment(&experiment, profile.as_deref(), &overrides)?;
            if print_config {
                println!("{}", serde_json::to_string_pretty(&exp)?);
                return Ok(ExitCode::SUCCESS);
            }
            let target = out.unwrap_or_else(|| {
                Path::new("runs")
                    .join(record::experiment_name(&exp))
                    .join(timestamp())
            });
            let dir = RunDir::create(&target)?;
            record::run_experiment(&exp, dir.path(), reuse.as_deref(), llm_run::Part::Whole)?;
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
            let suites = experiment::reproduce_list(&list)?;
            let exps = suites
                .iter()
                .map(|f| {
                    experiment::load_experiment(
                        &experiments.join(f),
                        Some(profile.name()),
                        &Overrides {
                            judge: judge.judge.clone(),
                            retry_errors: judge.retry_errors,
                            profile_optional: true,
                            backend: backend.map(|kind| BackendOverride {
                                kind,
                                llm_only: true,
                            }),
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
            let path = record::reproduce(&exps, profile.name(), &target)?;
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
