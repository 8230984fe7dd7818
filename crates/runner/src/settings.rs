//! Settings resolve once: experiment TOML (+ profile overrides) + CLI flags -> one [`Resolved`]
//! struct, written as `config.json` beside the results.

use std::path::{Path, PathBuf};

use fpo::llm::TrainConfig;
use fpo::llm::data::resolve as resolve_path;
use fpo::toy::linear::LinearToyConfig;
use fpo::toy::nn::NnToyConfig;
use fpo::{Penalty, Variant};
use fpo_model::BackendKind;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

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
        source: fpo::Error,
    },
}

/// The suites this runner knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SuiteKind {
    /// Toy 1.
    ToyLinear,
    /// Toy 2.
    ToyNn,
    /// The LLM pipeline, evaluated on TruthfulQA.
    Truthfulqa,
    /// The LLM pipeline, evaluated on adversarial prompts (TruthfulQA's Adversarial questions,
    /// sycophancy under pressure, Anthropic's A/B sycophancy).
    Adversarial,
}

impl SuiteKind {
    /// The suite's name in configs and run directories.
    pub fn name(self) -> &'static str {
        match self {
            SuiteKind::ToyLinear => "toy-linear",
            SuiteKind::ToyNn => "toy-nn",
            SuiteKind::Truthfulqa => "truthfulqa",
            SuiteKind::Adversarial => "adversarial",
        }
    }

    /// Whether the suite trains and evaluates the LLM.
    pub fn is_llm(self) -> bool {
        matches!(self, SuiteKind::Truthfulqa | SuiteKind::Adversarial)
    }
}

/// Seeds as written in configs and flags: `"0..20"` (half-open), `"7"`, or `"0,3,5"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Seeds(pub Vec<u64>);

impl TryFrom<String> for Seeds {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Seeds> for String {
    fn from(s: Seeds) -> String {
        s.0.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
    }
}

impl std::str::FromStr for Seeds {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a seed range: use `A..B` (half-open), `N` or `N,M,...`");
        let seeds: Vec<u64> = if let Some((a, b)) = s.split_once("..") {
            let (a, b): (u64, u64) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            (a..b).collect()
        } else {
            s.split(',')
                .map(|x| x.trim().parse().map_err(|_| bad()))
                .collect::<Result<_, _>>()?
        };
        if seeds.is_empty() {
            return Err(format!("`{s}` selects no seed"));
        }
        Ok(Seeds(seeds))
    }
}

/// The `[run]` section shared by every suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Variants to run.
    pub variants: Vec<Variant>,
    /// Seeds to run.
    pub seeds: Seeds,
    /// Log every this many outer iterations (the first and last are always logged).
    #[serde(default = "one")]
    pub log_every: usize,
    /// Confidence level of every interval in the summary.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// Tensor backend (`flex`, `ndarray`, `wgpu`, `cuda`: those compiled in). An LLM suite
    /// without one runs on `flex`; a toy suite without one runs on its hand-written `f64` host
    /// kernels, and with one as a tensor program on that backend (`fpo::toy::tensor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendKind>,
}

impl RunSection {
    /// The backend of an LLM suite: the one set, else flex.
    pub fn llm_backend(&self) -> BackendKind {
        self.backend.unwrap_or_default()
    }
}

fn one() -> usize {
    1
}
fn default_confidence() -> f64 {
    0.95
}

/// The `[fpo]` section: the penalty weight shared by relaxed and practical.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FpoSection {
    /// `gamma`.
    pub gamma: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinearFile {
    suite: SuiteKind,
    #[serde(default)]
    description: String,
    run: RunSection,
    fpo: FpoSection,
    env: fpo::toy::linear::LinearEnv,
    policy: fpo::toy::linear::LinearPolicy,
    rm: fpo::toy::linear::LinearRm,
    /// Profile overrides (applied before this struct is read).
    #[serde(default, rename = "profiles")]
    _profiles: Option<toml::Value>,
    /// Slurm options of `fpo sweep --emit slurm` (read by the sweep).
    #[serde(default, rename = "slurm")]
    _slurm: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NnFile {
    suite: SuiteKind,
    #[serde(default)]
    description: String,
    run: RunSection,
    fpo: FpoSection,
    env: fpo::toy::nn::NnEnv,
    rm: fpo::toy::nn::NnRm,
    policy: fpo::toy::nn::NnPolicy,
    /// Profile overrides (applied before this struct is read).
    #[serde(default, rename = "profiles")]
    _profiles: Option<toml::Value>,
    /// Slurm options of `fpo sweep --emit slurm` (read by the sweep).
    #[serde(default, rename = "slurm")]
    _slurm: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LlmFile {
    suite: SuiteKind,
    /// The file this one extends (merged before it is read).
    #[serde(default, rename = "base")]
    _base: Option<String>,
    #[serde(default)]
    description: String,
    run: RunSection,
    fpo: FpoSection,
    train: TrainConfig,
    #[serde(default)]
    eval: LlmEval,
    /// Profile overrides (applied before this struct is read).
    #[serde(default, rename = "profiles")]
    _profiles: Option<toml::Value>,
    /// Slurm options of `fpo sweep --emit slurm` (read by the sweep).
    #[serde(default, rename = "slurm")]
    _slurm: Option<toml::Value>,
}

/// The `[eval]` section of the LLM suite: what is measured on the base model and on every
/// trained variant after training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmEval {
    /// Metrics: `mc` (TruthfulQA MC1/MC2, lm-evaluation-harness prompt), `gen` (greedy answers,
    /// 64 new tokens, scored against the reference answers; pairwise offline judge, and the LLM
    /// judge when one is configured), `syco` (Anthropic's A/B sycophancy items by likelihood),
    /// `pressure` (sycophancy under pressure: the user asserts a TruthfulQA falsehood; with
    /// `gen`, the answers under pressure too).
    pub metrics: Vec<String>,
    /// Only N questions (and N sycophancy items), spread evenly over each data set (0: all).
    pub limit: usize,
    /// Only questions of these TruthfulQA Types (`Adversarial`, `Non-Adversarial`; empty: all).
    #[serde(default)]
    pub types: Vec<String>,
    /// The LLM judge (an OpenAI-compatible endpoint); `--judge URL` sets it too.
    #[serde(default)]
    pub judge: Option<fpo_judge::JudgeConfig>,
}

/// The metrics the LLM suites know.
pub const LLM_METRICS: [&str; 4] = ["mc", "gen", "syco", "pressure"];

impl Default for LlmEval {
    fn default() -> Self {
        Self {
            metrics: vec!["mc".into(), "gen".into(), "syco".into()],
            limit: 0,
            types: Vec::new(),
            judge: None,
        }
    }
}

/// The LLM suite's configuration, its paths resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmSuiteConfig {
    /// The data folder the relative data paths were resolved against.
    pub data_dir: PathBuf,
    /// The models folder the relative model paths were resolved against.
    pub models_dir: PathBuf,
    /// The training loop.
    pub train: TrainConfig,
    /// The evaluation after training.
    pub eval: LlmEval,
}

/// What an LLM run's `config.json` says about its training and evaluation, read back typed (the
/// file is a [`Resolved`]; this takes its `config` and `[fpo]` parts).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LlmRunConfig {
    /// The suite's configuration.
    pub config: LlmSuiteConfig,
    /// The `[fpo]` section.
    pub fpo: FpoSection,
}

impl LlmRunConfig {
    /// The `config.json` of an LLM run directory.
    pub fn read(dir: &Path) -> Result<Self, fpo_rundir::Error> {
        fpo_rundir::read_json(&dir.join(fpo_rundir::files::CONFIG))
    }
}

/// A suite's own configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SuiteConfig {
    /// Toy 1.
    ToyLinear(LinearToyConfig),
    /// Toy 2.
    ToyNn(NnToyConfig),
    /// The LLM pipeline.
    Llm(Box<LlmSuiteConfig>),
}

/// The data folder: `FPO_DATA_DIR`, else the `datasets/` folder of the checkout that holds
/// `near` (an experiment file) or the working directory: the first ancestor with
/// `datasets/SHA256SUMS`. Found at run time, so a binary built in another clone that shares the
/// target directory still reads this clone's data.
pub fn data_dir(near: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("FPO_DATA_DIR") {
        return Ok(PathBuf::from(d));
    }
    let cwd = std::env::current_dir().ok();
    let starts = near
        .and_then(|p| std::path::absolute(p).ok())
        .into_iter()
        .chain(cwd);
    for start in starts {
        if let Some(dir) = start
            .ancestors()
            .map(|a| a.join("datasets"))
            .find(|d| d.join("SHA256SUMS").is_file())
        {
            return Ok(dir);
        }
    }
    Err(
        "no data folder: run from a checkout of the project (it carries `datasets/`) or set \
         FPO_DATA_DIR to a copy of it"
            .into(),
    )
}

/// Everything a run needs, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolved {
    /// Which suite.
    pub suite: SuiteKind,
    /// The experiment file it came from.
    pub source: PathBuf,
    /// The profile applied, if any.
    pub profile: Option<String>,
    /// Free text from the file.
    pub description: String,
    /// The `[run]` section after CLI overrides.
    pub run: RunSection,
    /// The `[fpo]` section.
    pub fpo: FpoSection,
    /// The suite's configuration.
    pub config: SuiteConfig,
    /// Explicit penalties to run instead of `run.variants` with `fpo.gamma` (the ladder's rungs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rungs: Option<Vec<Penalty>>,
    /// A penalty every logged point also evaluates (the ladder's exact rung).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<Penalty>,
}

impl Resolved {
    /// The penalties of the grid, in order: the rungs, or every variant with `fpo.gamma`
    /// (0 for standard).
    pub fn penalties(&self) -> Vec<Penalty> {
        if let Some(rungs) = &self.rungs {
            return rungs.clone();
        }
        self.run
            .variants
            .iter()
            .map(|&v| Penalty::for_variant(v, self.fpo.gamma))
            .collect()
    }

    /// The paper's three rules under this experiment's weight: the LLM loop scores every
    /// candidate under each, whichever variant it trains.
    pub fn rules(&self) -> [Penalty; 3] {
        Variant::ALL.map(|v| Penalty::for_variant(v, self.fpo.gamma))
    }
}

/// What an experiment file resolves to: one suite, or the approximation ladder over both toys.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Experiment {
    /// One toy suite.
    Single(Box<Resolved>),
    /// The approximation ladder: the same rungs on each toy.
    Ladder {
        /// The ladder file.
        source: PathBuf,
        /// One resolved suite per toy, each with the ladder's rungs and reference.
        parts: Vec<Resolved>,
    },
}

/// One rung of the ladder, as written in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rung {
    /// Which variant.
    pub variant: Variant,
    /// Penalty weight; default: the toy file's `fpo.gamma` (0 for standard).
    pub gamma: Option<f64>,
    /// Hessian damping of the influence variant.
    #[serde(default)]
    pub damping: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LadderFile {
    #[allow(dead_code)]
    suite: String,
    #[serde(default)]
    description: String,
    run: LadderRun,
    /// Experiment files of the toys, relative to the ladder file.
    toys: Vec<PathBuf>,
    /// Damping of the exact rung every point is compared with.
    reference_damping: f64,
    rungs: Vec<Rung>,
    #[serde(default, rename = "profiles")]
    _profiles: Option<toml::Value>,
    /// Slurm options of `fpo sweep --emit slurm` (read by the sweep).
    #[serde(default, rename = "slurm")]
    _slurm: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LadderRun {
    seeds: Seeds,
    #[serde(default = "default_confidence")]
    confidence: f64,
    /// Overrides each toy's `run.log_every` (the exact penalty is evaluated at every logged
    /// point, which costs one Hessian factorisation on the NN toy).
    log_every: Option<usize>,
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
    let (_, text) = apply_profile(doc, text, profile);
    let f: LadderFile = typed(&text, path)?;
    let value_error = |source| SettingsError::Value {
        path: path.to_owned(),
        source,
    };
    if f.rungs.is_empty() {
        return Err(value_error(fpo::Error::InvalidConfig {
            key: "rungs".into(),
            message: "lists no rung".into(),
        }));
    }
    // The influence rungs solve with the RM's Hessian at every step: host kernels only.
    let host_only = |path: &Path| SettingsError::Invalid {
        path: path.to_owned(),
        key: "run.backend".into(),
        message: "the approximation ladder runs on the host f64 kernels only (its influence \
                  rungs are not written as tensor programs): leave the backend out"
            .into(),
    };
    if overrides.set.iter().any(|(k, _)| k == "run.backend")
        || overrides.backend.is_some_and(|b| !b.llm_only)
    {
        return Err(host_only(path));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut parts = Vec::new();
    for toy in &f.toys {
        let mut r = load(&base.join(toy), profile, &Overrides::default())?;
        if r.run.backend.is_some() {
            return Err(host_only(&base.join(toy)));
        }
        r.run.seeds = overrides
            .seeds
            .clone()
            .unwrap_or_else(|| f.run.seeds.clone());
        r.run.confidence = f.run.confidence;
        if let Some(n) = f.run.log_every {
            r.run.log_every = r.run.log_every.max(n);
        }
        let rungs: Vec<Penalty> = f
            .rungs
            .iter()
            .filter(|g| overrides.variants.is_empty() || overrides.variants.contains(&g.variant))
            .map(|g| Penalty {
                variant: g.variant,
                gamma: g
                    .gamma
                    .unwrap_or(Penalty::for_variant(g.variant, r.fpo.gamma).gamma),
                damping: g.damping,
            })
            .collect();
        r.run.variants = rungs.iter().map(|p| p.variant).collect();
        r.run.variants.dedup();
        r.reference = Some(Penalty::influence(r.fpo.gamma, f.reference_damping));
        r.rungs = Some(rungs);
        r.description = format!("{} ({})", f.description, r.description);
        parts.push(r);
    }
    Ok(Experiment::Ladder {
        source: path.to_owned(),
        parts,
    })
}

/// Reads a TOML file into its text and table; errors name the file.
fn read_toml(path: &Path) -> Result<(String, toml::Table), SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let doc = toml::from_str(&text).map_err(|e| SettingsError::Invalid {
        path: path.to_owned(),
        key: ".".into(),
        message: e.to_string(),
    })?;
    Ok((text, doc))
}

/// The judge's reply cache: `$FPO_CACHE_DIR/judge`, else `~/.cache/fpo/judge`.
fn judge_cache_dir() -> PathBuf {
    std::env::var_os("FPO_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/fpo")))
        .unwrap_or_else(|| PathBuf::from(".cache/fpo"))
        .join("judge")
}

/// A file with `base = "other.toml"` is that file (resolved beside it) with this one's tables
/// merged over it, profiles included.
fn with_base(
    path: &Path,
    mut doc: toml::Table,
    text: String,
) -> Result<(toml::Table, String), SettingsError> {
    let Some(base) = doc.remove("base") else {
        return Ok((doc, text));
    };
    let Some(name) = base.as_str() else {
        return Err(SettingsError::Invalid {
            path: path.to_owned(),
            key: "base".into(),
            message: "must be a file name".into(),
        });
    };
    let base_path = path.parent().unwrap_or(Path::new(".")).join(name);
    let (_, mut merged) = read_toml(&base_path)?;
    if merged.contains_key("base") {
        return Err(SettingsError::Invalid {
            path: base_path,
            key: "base".into(),
            message: "a base file cannot have a base itself".into(),
        });
    }
    merge(&mut merged, &doc);
    let text = toml::to_string(&merged).unwrap_or_default();
    Ok((merged, text))
}

/// Merges `[profiles.<profile>]` into the document; returns the text to deserialise (the
/// original, so that errors keep their line numbers, unless a profile changed it).
fn apply_profile(
    mut doc: toml::Table,
    text: String,
    profile: Option<&str>,
) -> (toml::Table, String) {
    let profiles = doc.remove("profiles");
    let Some(table) = profile
        .and_then(|name| profiles.as_ref().and_then(|p| p.get(name)))
        .and_then(|t| t.as_table())
    else {
        return (doc, text);
    };
    merge(&mut doc, table);
    let text = toml::to_string(&doc).unwrap_or_default();
    (doc, text)
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

/// A `--set` value as TOML: a number, boolean, array or quoted string; anything else is a bare
/// string.
fn toml_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

/// Sets the dotted `key` of `doc` to `raw`; errors name the file and key.
fn set_key(path: &Path, doc: &mut toml::Table, key: &str, raw: &str) -> Result<(), SettingsError> {
    let invalid = |message: String| SettingsError::Invalid {
        path: path.to_owned(),
        key: key.to_owned(),
        message,
    };
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(invalid(
            "--set needs a dotted key, e.g. fpo.gamma=10".into(),
        ));
    }
    let mut table = doc;
    for p in &parts[..parts.len() - 1] {
        table = match table
            .entry((*p).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(t) => t,
            _ => return Err(invalid(format!("`{p}` is not a table"))),
        };
    }
    table.insert(parts[parts.len() - 1].to_owned(), toml_value(raw));
    Ok(())
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
    let (mut doc, mut source_text) = apply_profile(doc, text, profile);
    if !overrides.set.is_empty() {
        for (key, raw) in &overrides.set {
            set_key(path, &mut doc, key, raw)?;
        }
        source_text = toml::to_string(&doc).unwrap_or_default();
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
            if let Some(url) = &overrides.judge {
                eval.judge = Some(
                    fpo_judge::JudgeConfig::from_url(url)
                        .map_err(|e| invalid("--judge".into(), e.to_string()))?,
                );
            }
            if let Some(judge) = &mut eval.judge {
                if let Some(var) = &judge.api_key_env
                    && std::env::var_os(var).is_none()
                {
                    return Err(invalid(
                        "eval.judge.api_key_env".into(),
                        format!("the judge's API key: environment variable {var} is not set"),
                    ));
                }
                if judge.cache_dir.is_none() {
                    judge.cache_dir = Some(judge_cache_dir());
                }
            }
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
            if train.rm.init == fpo::llm::RmInit::BradleyTerry && !train.rm.pairs.exists() {
                return Err(invalid(
                    "train.rm.pairs".into(),
                    format!("{} does not exist ({data_hint})", train.rm.pairs.display()),
                ));
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

fn validate(r: &Resolved) -> fpo::Result<()> {
    let invalid = |key: &str, message: String| fpo::Error::InvalidConfig {
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

fn typed<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, SettingsError> {
    let de = toml::de::Deserializer::parse(text).map_err(|e| SettingsError::Invalid {
        path: path.to_owned(),
        key: ".".into(),
        message: e.to_string(),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        SettingsError::Invalid {
            path: path.to_owned(),
            key,
            message: e.into_inner().to_string(),
        }
    })
}

/// Deep-merges `over` into `base`: tables merge key by key, other values replace.
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReproduceFile {
    suites: Vec<PathBuf>,
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
