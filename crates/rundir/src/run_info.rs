//! `run.json` (what ran where, and for how long) and `reproduce.json`: the only files whose
//! contents differ between two runs of the same seed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Suite name (or `toy-ladder`).
    pub suite: String,
    /// Version of this workspace.
    pub fpo_version: String,
    /// Version of burn.
    pub burn_version: String,
    /// Where the run computed, in words.
    pub backend: String,
    /// The machine.
    pub machine: Machine,
    /// Start, seconds since the Unix epoch.
    pub started_unix_s: u64,
    /// Wall time of the whole run (of the process that finished it, when resumed).
    pub wall_time_s: f64,
    /// Toy suites: mean microseconds per policy step, per penalty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub us_per_step: BTreeMap<String, f64>,
    /// LLM suites: where the training time went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmTimings>,
    /// A run merged from a sweep's cells: which sweep, and how many runs it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<Merged>,
}

/// Where a merged run came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merged {
    /// The sweep directory.
    pub sweep: String,
    /// Runs (variant, seed) taken from its cells.
    pub runs: usize,
}

/// The timings of an LLM run, measured in the process that finished it: a resumed run counts
/// the iterations it ran itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LlmTimings {
    /// Seconds spent embedding the reward model's warm-start pairs (0 when its fit was reused).
    pub rm_embed_seconds: f64,
    /// Mean seconds per iteration over every (variant, seed) trained here.
    pub seconds_per_iteration: f64,
    /// Per `<variant>-seed<k>`: iterations trained here and their seconds.
    pub variants: BTreeMap<String, VariantTiming>,
}

impl LlmTimings {
    /// Sets `seconds_per_iteration` from `variants`.
    pub fn set_seconds_per_iteration(&mut self) {
        let (its, secs) = self
            .variants
            .values()
            .fold((0, 0.0), |(n, s), t| (n + t.iterations, s + t.seconds));
        self.seconds_per_iteration = if its == 0 { 0.0 } else { secs / its as f64 };
    }

    /// The timings of the cells of a sweep together: their (variant, seed) timings, the
    /// reward model's embedding seconds summed (each cell that trains fits the head itself).
    pub fn merged<'a>(cells: impl IntoIterator<Item = &'a LlmTimings>) -> Self {
        let mut out = Self::default();
        for c in cells {
            out.rm_embed_seconds += c.rm_embed_seconds;
            out.variants
                .extend(c.variants.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        out.set_seconds_per_iteration();
        out
    }
}

/// The training time of one (variant, seed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VariantTiming {
    /// Iterations run in this process.
    pub iterations: usize,
    /// Their wall-clock seconds, the probes' not included (those are `probe_seconds`).
    pub seconds: f64,
    /// Probes run in this process.
    #[serde(default)]
    pub probes: usize,
    /// Their wall-clock seconds.
    #[serde(default)]
    pub probe_seconds: f64,
    /// Where the iterations' seconds went, per stage of an iteration (reference sampling,
    /// candidate sampling, oracle scoring, RM features, selection and RM update, policy step);
    /// empty in records written before stages were timed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stages: BTreeMap<String, f64>,
}

/// The machine a run computed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// `std::env::consts::OS`.
    pub os: String,
    /// `std::env::consts::ARCH`.
    pub arch: String,
    /// Threads available.
    pub threads: usize,
    /// The CPU kernel path the host kernels took (`avx512`, `avx2`, `portable`; `fpo_model::cpu`),
    /// empty in records written before it was recorded.
    #[serde(default)]
    pub cpu_kernels: String,
}

impl Machine {
    /// This machine, whose host kernels take the path named `cpu_kernels`.
    pub fn here(cpu_kernels: &str) -> Self {
        Self {
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_kernels: cpu_kernels.into(),
        }
    }
}

/// Versions of what computed a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    /// This workspace.
    pub fpo: String,
    /// burn.
    pub burn: String,
}

/// `reproduce.json`: the index of an `fpo reproduce` directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReproduceIndex {
    /// The profile.
    pub profile: String,
    /// The suites' folders, in the order they ran.
    pub suites: Vec<String>,
    /// Wall time of the whole reproduction.
    pub wall_time_s: f64,
    /// The machine.
    pub machine: Machine,
    /// Versions.
    pub versions: Versions,
    /// The command line, as run.
    pub command: String,
    /// Start, seconds since the Unix epoch.
    pub started_unix_s: u64,
}
