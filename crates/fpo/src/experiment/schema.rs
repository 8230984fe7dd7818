//! The experiment files' schemas (one per suite) and what they resolve to: [`Resolved`], one
//! suite's settings, and [`Experiment`], one suite or the approximation ladder.

use std::path::{Path, PathBuf};

use crate::llm::TrainConfig;
use crate::toy::linear::LinearToyConfig;
use crate::toy::nn::NnToyConfig;
use crate::{Penalty, Variant};
use fpo_model::BackendKind;
use serde::{Deserialize, Serialize};

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

/// The most seeds one run takes: past it the rows of a toy run outgrow memory (each seed keeps
/// its trajectory), and a sweep is the tool.
pub const MAX_SEEDS: usize = 100_000;

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
        let too_many = |n: u64| format!("`{s}` selects {n} seeds; at most {MAX_SEEDS} run at once");
        let seeds: Vec<u64> = if let Some((a, b)) = s.split_once("..") {
            let (a, b): (u64, u64) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            // Counted before they are collected: a huge range would not fit in memory.
            if b.saturating_sub(a) > MAX_SEEDS as u64 {
                return Err(too_many(b - a));
            }
            (a..b).collect()
        } else {
            s.split(',')
                .map(|x| x.trim().parse().map_err(|_| bad()))
                .collect::<Result<_, _>>()?
        };
        if seeds.is_empty() {
            return Err(format!("`{s}` selects no seed"));
        }
        if seeds.len() > MAX_SEEDS {
            return Err(too_many(seeds.len() as u64));
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
    /// Toys: the whole actions of the first this many seeds go to `actions.jsonl` at every
    /// logged iteration (0: none); `metrics.csv` has every seed's norms.
    #[serde(default = "one")]
    pub action_seeds: usize,
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
    /// The seeds whose whole actions a toy run writes: the first `action_seeds`.
    pub fn action_seeds(&self) -> &[u64] {
        &self.seeds.0[..self.action_seeds.min(self.seeds.0.len())]
    }

    /// The backend of an LLM suite: the one set, else flex.
    pub fn llm_backend(&self) -> BackendKind {
        self.backend.unwrap_or_default()
    }
}

pub(super) fn one() -> usize {
    1
}

pub(super) fn default_confidence() -> f64 {
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
pub(super) struct LinearFile {
    pub(super) suite: SuiteKind,
    #[serde(default)]
    pub(super) description: String,
    pub(super) run: RunSection,
    pub(super) fpo: FpoSection,
    pub(super) env: crate::toy::linear::LinearEnv,
    pub(super) policy: crate::toy::linear::LinearPolicy,
    pub(super) rm: crate::toy::linear::LinearRm,
    /// Profile overrides (applied before this struct is read).
    #[serde(default, rename = "profiles")]
    pub(super) _profiles: Option<toml::Value>,
    /// Slurm options of `fpo sweep --emit slurm` (read by the sweep).
    #[serde(default, rename = "slurm")]
    pub(super) _slurm: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NnFile {
    pub(super) suite: SuiteKind,
    #[serde(default)]
    pub(super) description: String,
    pub(super) run: RunSection,
    pub(super) fpo: FpoSection,
    pub(super) env: crate::toy::nn::NnEnv,
    pub(super) rm: crate::toy::nn::NnRm,
    pub(super) policy: crate::toy::nn::NnPolicy,
    /// Profile overrides (applied before this struct is read).
    #[serde(default, rename = "profiles")]
    pub(super) _profiles: Option<toml::Value>,
    /// Slurm options of `fpo sweep --emit slurm` (read by the sweep).
    #[serde(default, rename = "slurm")]
    pub(super) _slurm: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LlmFile {
    pub(super) suite: SuiteKind,
    /// The file this one extends (merged before it is read).
    #[serde(default, rename = "base")]
    pub(super) _base: Option<String>,
    #[serde(default)]
    pub(super) description: String,
    pub(super) run: RunSection,
    pub(super) fpo: FpoSection,
    pub(super) train: TrainConfig,
    #[serde(default)]
    pub(super) eval: LlmEval,
    /// Profile overrides (applied before this struct is read).
    #[serde(default, rename = "profiles")]
    pub(super) _profiles: Option<toml::Value>,
    /// Slurm options of `fpo sweep --emit slurm` (read by the sweep).
    #[serde(default, rename = "slurm")]
    pub(super) _slurm: Option<toml::Value>,
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
    /// Task files (`tasks/*.toml`, relative to the experiment file): every model is scored on
    /// each (see docs/tasks.md). Resolved to absolute paths.
    #[serde(default)]
    pub tasks: Vec<PathBuf>,
    /// Only N rows of each task file, stratified by its `group_by` (0: all).
    #[serde(default)]
    pub task_limit: usize,
    /// The LLM judge (an OpenAI-compatible endpoint); `--judge URL` sets it too.
    #[serde(default)]
    pub judge: Option<fpo_eval::judge_config::JudgeConfig>,
    /// The equivalence margins of the LLM claims ("ties", "no change in verbosity"), fixed
    /// before the run.
    #[serde(default)]
    pub claims: fpo_eval::llm_claims::ClaimMargins,
}

/// The metrics the LLM suites know.
pub const LLM_METRICS: [&str; 4] = ["mc", "gen", "syco", "pressure"];

impl Default for LlmEval {
    fn default() -> Self {
        Self {
            metrics: vec!["mc".into(), "gen".into(), "syco".into()],
            limit: 0,
            types: Vec::new(),
            tasks: Vec::new(),
            task_limit: 0,
            judge: None,
            claims: Default::default(),
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

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReproduceFile {
    pub(super) suites: Vec<PathBuf>,
}
