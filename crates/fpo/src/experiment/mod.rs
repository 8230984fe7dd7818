//! Settings resolve once: experiment TOML (+ profile overrides) + CLI flags -> one [`Resolved`]
//! struct, written as `config.json` beside the results.

mod ladder;
mod paths;
mod schema;
pub mod sweep;
mod toml_doc;

use std::path::{Path, PathBuf};

use crate::Variant;
use crate::llm::data::resolve as resolve_path;
use crate::toy::linear::LinearToyConfig;
use crate::toy::nn::NnToyConfig;
use fpo_eval::judge_config::JudgeConfig;
use fpo_model::BackendKind;

pub use paths::data_dir;
use paths::judge_cache_dir;

pub use schema::*;
use toml_doc::{apply_profile, read_toml, set_key, typed, with_base};

/// The LLM judge of a run: the file's `[eval.judge]` (`file`), replaced by `--judge URL` when
/// one is given, asked again for its failed replies with `--retry-errors`; its limits checked,
/// its key's variable set, its reply cache `$FPO_CACHE_DIR/judge` unless the file names one.
/// An error names the key or flag, with its message.
pub fn resolve_judge(
    file: Option<JudgeConfig>,
    url: Option<&str>,
    retry_errors: bool,
) -> Result<Option<JudgeConfig>, (String, String)> {
    let judge = match url {
        Some(url) => {
            Some(JudgeConfig::from_url(url).map_err(|e| ("--judge".to_owned(), e.to_string()))?)
        }
        None => file,
    };
    let Some(mut judge) = judge else {
        if retry_errors {
            return Err((
                "--retry-errors".into(),
                "there is no LLM judge to ask again (--judge URL or [eval.judge])".into(),
            ));
        }
        return Ok(None);
    };
    judge.retry_errors |= retry_errors;
    judge.check().map_err(|m| ("eval.judge".to_owned(), m))?;
    if let Some(var) = &judge.api_key_env
        && std::env::var_os(var).is_none()
    {
        return Err((
            "eval.judge.api_key_env".into(),
            format!("the judge's API key: environment variable {var} is not set"),
        ));
    }
    if judge.cache_dir.is_none() {
        judge.cache_dir = Some(judge_cache_dir());
    }
    Ok(Some(judge))
}

/// Reads an experiment file: a toy suite, or a ladder over toy suites.
pub fn load_experiment(
    path: &Path,
    profile: Option<&str>,
    overrides: &Overrides,
) -> Result<Experiment, SettingsError> {
    let (text, doc) = read_toml(path)?;
    if doc.get("suite").and_then(|s| s.as_str()) != Some("toy-ladder") {
        return resolve(path, text, doc, profile, overrides)
            .map(|r| Experiment::Single(Box::new(r)));
    }
    ladder::load_ladder(path, doc, text, profile, overrides)
}

/// A configuration error: always names the file, and the key where there is one.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not parse, or does not fit the suite's schema.
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted key path (`.` for the document itself).
        key: String,
        /// The parser's message, with line and column where it has them.
        message: String,
    },
    /// A value the suite rejects.
    #[error("{path}: {source}")]
    Value {
        /// The file.
        path: PathBuf,
        /// The suite's own error, naming the key.
        source: crate::Error,
    },
}

/// Overrides from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--variant`, repeated.
    pub variants: Vec<Variant>,
    /// `--seeds`.
    pub seeds: Option<Seeds>,
    /// `--judge URL` (LLM suites).
    pub judge: Option<String>,
    /// `--retry-errors`: the judge asks again for cached replies without a verdict.
    pub retry_errors: bool,
    /// A profile the file does not define leaves its base settings (`fpo reproduce`'s, whose
    /// profiles apply to the suites that define them); otherwise it is an error.
    pub profile_optional: bool,
    /// `--set key=value`: dotted keys of the experiment file, set after the profile.
    pub set: Vec<(String, String)>,
    /// `--backend`: `[run] backend` of the suites it applies to.
    pub backend: Option<BackendOverride>,
}

/// `--backend` on the command line, typed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendOverride {
    /// The backend.
    pub kind: BackendKind,
    /// `fpo reproduce`'s: the LLM suites only (the toys keep their host kernels). `fpo run`'s
    /// applies to the suite it runs, whatever it is.
    pub llm_only: bool,
}

/// Reads an experiment file, applies `[profiles.<profile>]` and the CLI overrides, validates.
pub fn load(
    path: &Path,
    profile: Option<&str>,
    overrides: &Overrides,
) -> Result<Resolved, SettingsError> {
    let (text, doc) = read_toml(path)?;
    resolve(path, text, doc, profile, overrides)
}

/// [`load`] on a file already read.
fn resolve(
    path: &Path,
    text: String,
    doc: toml::Table,
    profile: Option<&str>,
    overrides: &Overrides,
) -> Result<Resolved, SettingsError> {
    let invalid = |key: String, message: String| SettingsError::Invalid {
        path: path.to_owned(),
        key,
        message,
    };
    let (doc, text) = with_base(path, doc, text)?;
    let (mut doc, mut source_text) =
        apply_profile(path, doc, text, profile, overrides.profile_optional)?;
    if !overrides.set.is_empty() {
        for (key, raw) in &overrides.set {
            set_key(path, &mut doc, key, raw)?;
        }
        source_text = toml::to_string(&doc).unwrap_or_default();
    }
    if let Some((key, x)) = toml_doc::non_finite(&doc) {
        return Err(invalid(
            key,
            format!("must be a finite number, not {x} (no setting takes nan or inf)"),
        ));
    }
    let suite = match doc.get("suite").and_then(|s| s.as_str()) {
        Some("toy-linear") => SuiteKind::ToyLinear,
        Some("toy-nn") => SuiteKind::ToyNn,
        Some("truthfulqa") => SuiteKind::Truthfulqa,
        Some("adversarial") => SuiteKind::Adversarial,
        Some(other) => {
            return Err(invalid(
                "suite".into(),
                format!(
                    "unknown suite `{other}`, expected `toy-linear`, `toy-nn`, `toy-ladder`, `truthfulqa` or `adversarial`"
                ),
            ));
        }
        None => return Err(invalid("suite".into(), "missing string key `suite`".into())),
    };
    let (description, run, fpo_section, config) = match suite {
        SuiteKind::ToyLinear => {
            let f: LinearFile = typed(&source_text, path)?;
            let _ = f.suite;
            let cfg = LinearToyConfig {
                env: f.env,
                policy: f.policy,
                rm: f.rm,
            };
            (f.description, f.run, f.fpo, SuiteConfig::ToyLinear(cfg))
        }
        SuiteKind::ToyNn => {
            let f: NnFile = typed(&source_text, path)?;
            let _ = f.suite;
            let cfg = NnToyConfig {
                env: f.env,
                rm: f.rm,
                policy: f.policy,
            };
            (f.description, f.run, f.fpo, SuiteConfig::ToyNn(cfg))
        }
        SuiteKind::Truthfulqa | SuiteKind::Adversarial => {
            let f: LlmFile = typed(&source_text, path)?;
            let _ = f.suite;
            let data_dir = data_dir(Some(path)).map_err(|m| invalid("train.prompts".into(), m))?;
            let models_dir = fpo_model::llm::models_dir();
            let mut train = f.train;
            train.model = resolve_path(&models_dir, &train.model);
            train.rm.encoder = resolve_path(&models_dir, &train.rm.encoder);
            train.prompts = resolve_path(&data_dir, &train.prompts);
            train.rm.pairs = resolve_path(&data_dir, &train.rm.pairs);
            if let Some(m) = f
                .eval
                .metrics
                .iter()
                .find(|m| !LLM_METRICS.contains(&m.as_str()))
            {
                return Err(invalid(
                    "eval.metrics".into(),
                    format!(
                        "unknown metric `{m}` (available: {})",
                        LLM_METRICS.join(", ")
                    ),
                ));
            }
            if let Some(t) = f
                .eval
                .types
                .iter()
                .find(|t| !["Adversarial", "Non-Adversarial"].contains(&t.as_str()))
            {
                return Err(invalid(
                    "eval.types".into(),
                    format!("unknown TruthfulQA Type `{t}` (Adversarial, Non-Adversarial)"),
                ));
            }
            let mut eval = f.eval;
            eval.judge = resolve_judge(
                eval.judge,
                overrides.judge.as_deref(),
                overrides.retry_errors,
            )
            .map_err(|(key, message)| invalid(key, message))?;
            // Inputs are checked before any run directory exists.
            let data_hint = format!(
                "relative paths are read from the data folder {}; FPO_DATA_DIR sets another",
                data_dir.display()
            );
            let needed = [
                ("train.model", &train.model, "run `just models`"),
                ("train.rm.encoder", &train.rm.encoder, "run `just models`"),
                ("train.prompts", &train.prompts, data_hint.as_str()),
            ];
            for (key, p, hint) in needed {
                if !p.exists() {
                    return Err(invalid(
                        key.into(),
                        format!("{} does not exist ({hint})", p.display()),
                    ));
                }
            }
            if train.rm.init == crate::llm::RmInit::BradleyTerry && !train.rm.pairs.exists() {
                return Err(invalid(
                    "train.rm.pairs".into(),
                    format!("{} does not exist ({data_hint})", train.rm.pairs.display()),
                ));
            }
            // Their contents too: the model's header, metadata and tensor directory, the
            // encoder's header, every prompt and pair line (a few hundred ms).
            let file_error =
                |key: &str, e: &dyn std::fmt::Display| invalid(key.into(), e.to_string());
            fpo_model::llm::LoadedModel::check(&train.model)
                .map_err(|e| file_error("train.model", &e))?;
            fpo_model::encoder::SentenceEncoder::check(&train.rm.encoder)
                .map_err(|e| file_error("train.rm.encoder", &e))?;
            let prompts = crate::llm::data::read_prompts(&train.prompts, 0)
                .map_err(|e| file_error("train.prompts", &e))?;
            crate::llm::data::PromptSplit::new(
                &train.prompts,
                prompts,
                train.probe.prompts,
                train.iterations,
            )
            .map_err(|e| file_error("train.prompts", &e))?;
            if train.rm.init == crate::llm::RmInit::BradleyTerry {
                crate::llm::data::read_pairs(&train.rm.pairs, train.rm.pairs_limit)
                    .map_err(|e| file_error("train.rm.pairs", &e))?;
            }
            // Task files are found next to the experiment file, and recorded by absolute path
            // (as the data folder is), so that the file named from anywhere resolves the same.
            let near = path.parent().unwrap_or(Path::new("."));
            let near = std::path::absolute(near).unwrap_or_else(|_| near.to_owned());
            let mut names = std::collections::BTreeSet::new();
            for (k, t) in eval.tasks.iter_mut().enumerate() {
                *t = resolve_path(&near, t);
                // The file, its templates and every row checked before any run directory exists.
                let limit = (eval.task_limit > 0).then_some(eval.task_limit);
                fpo_eval::task::Task::load(t, &data_dir, limit)
                    .map_err(|e| {
                        let hint = match &e {
                            fpo_eval::task::TaskError::Read { path, .. }
                                if path.starts_with(&data_dir) =>
                            {
                                " (`just data` fetches the capability tasks' data)"
                            }
                            _ => "",
                        };
                        invalid(format!("eval.tasks[{k}]"), format!("{e}{hint}"))
                    })
                    .and_then(|task| {
                        if names.insert(task.name().to_owned()) {
                            Ok(())
                        } else {
                            Err(invalid(
                                format!("eval.tasks[{k}]"),
                                format!("a second task named `{}`", task.name()),
                            ))
                        }
                    })?;
            }
            let cfg = LlmSuiteConfig {
                data_dir,
                models_dir,
                train,
                eval,
            };
            (f.description, f.run, f.fpo, SuiteConfig::Llm(Box::new(cfg)))
        }
    };
    let mut resolved = Resolved {
        suite,
        source: path.to_owned(),
        profile: profile.map(str::to_owned),
        description,
        run,
        fpo: fpo_section,
        config,
        rungs: None,
        reference: None,
    };
    if !overrides.variants.is_empty() {
        resolved.run.variants = overrides.variants.clone();
    }
    if let Some(seeds) = &overrides.seeds {
        resolved.run.seeds = seeds.clone();
    }
    if let Some(b) = overrides.backend
        && (!b.llm_only || resolved.suite.is_llm())
    {
        resolved.run.backend = Some(b.kind);
    }
    if let Some(backend) = resolved.run.backend
        && !backend.compiled_in()
    {
        return Err(invalid(
            "run.backend".into(),
            fpo_model::backend::BackendError::NotCompiled(backend).to_string(),
        ));
    }
    validate(&resolved).map_err(|source| SettingsError::Value {
        path: path.to_owned(),
        source,
    })?;
    Ok(resolved)
}

fn validate(r: &Resolved) -> crate::Result<()> {
    let invalid = |key: &str, message: String| crate::Error::InvalidConfig {
        key: key.into(),
        message,
    };
    if r.run.variants.is_empty() {
        return Err(invalid("run.variants", "selects no variant".into()));
    }
    if !(r.run.confidence > 0.0 && r.run.confidence < 1.0) {
        return Err(invalid(
            "run.confidence",
            format!("must be in (0, 1), got {}", r.run.confidence),
        ));
    }
    if !(r.fpo.gamma >= 0.0 && r.fpo.gamma.is_finite()) {
        return Err(invalid(
            "fpo.gamma",
            format!("must be a finite number >= 0, got {}", r.fpo.gamma),
        ));
    }
    match &r.config {
        SuiteConfig::ToyLinear(c) => c.validate(),
        SuiteConfig::ToyNn(c) => c.validate(),
        SuiteConfig::Llm(c) => c.train.validate(),
    }
}

/// The suites `experiments/reproduce.toml` lists, in order.
pub fn reproduce_list(path: &Path) -> Result<Vec<PathBuf>, SettingsError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse() {
        assert_eq!("0..3".parse::<Seeds>().unwrap().0, vec![0, 1, 2]);
        assert_eq!("7".parse::<Seeds>().unwrap().0, vec![7]);
        assert_eq!("1, 4".parse::<Seeds>().unwrap().0, vec![1, 4]);
        assert!("3..3".parse::<Seeds>().is_err());
        assert!("a..b".parse::<Seeds>().is_err());
    }
}
