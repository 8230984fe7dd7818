//! What readers of a run directory take from `config.json`. The file is the runner's resolved
//! settings, serialised whole; this is the typed view of the parts the report and the LLM
//! suites read back (the runner's tests check that every suite's resolved settings read back
//! through it).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The typed view of a `config.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigView {
    /// Suite name (absent in a ladder's own `config.json`, whose parts have theirs).
    #[serde(default)]
    pub suite: Option<String>,
    /// Free text from the experiment file.
    #[serde(default)]
    pub description: String,
    /// The suite's own section.
    #[serde(default)]
    pub config: SuiteSection,
    /// The `[run]` section, as far as readers use it.
    #[serde(default)]
    pub run: Option<RunView>,
}

/// The `[run]` section of `config.json`, as far as readers use it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    /// Confidence level of every interval.
    pub confidence: f64,
}

/// The suite's section of `config.json`, as far as readers use it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SuiteSection {
    /// A toy's environment.
    #[serde(default)]
    pub env: Option<ToyEnv>,
    /// An LLM suite's training data.
    #[serde(default)]
    pub train: Option<LlmPaths>,
    /// An LLM suite's evaluation (present when it evaluates).
    #[serde(default)]
    pub eval: Option<serde_json::Value>,
}

/// A toy environment's utility landscape: what the report draws its phase plot over.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToyEnv {
    /// The linear toy's target value of each signal coordinate.
    #[serde(default)]
    pub target_value: Option<f64>,
    /// The NN toy's ideal value of each signal coordinate.
    #[serde(default)]
    pub ideal_value: Option<f64>,
    /// Coordinates that carry signal.
    #[serde(default)]
    pub signal_dims: Option<usize>,
    /// Height of the utility bump.
    #[serde(default)]
    pub utility_scale: Option<f64>,
    /// Width of the utility bump.
    #[serde(default)]
    pub utility_width: Option<f64>,
}

/// The data files an LLM run read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LlmPaths {
    /// The training prompts.
    pub prompts: PathBuf,
    /// The reward model.
    pub rm: RmPaths,
}

/// The reward model's data files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RmPaths {
    /// The warm-start preference pairs.
    pub pairs: PathBuf,
}
