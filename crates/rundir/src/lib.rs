//! The run directory: every file a run writes, as the one type its writers and readers share.
//!
//! A run directory holds `config.json` (the resolved settings), `metrics.csv` ([`MetricsRow`],
//! toy suites; `actions.jsonl` ([`ActionRow`]) the whole actions of its first seeds), `summary.json` ([`ToySummary`]; an LLM run's is `fpo_eval`'s `LlmSummary`, which
//! embeds the evaluation's own types), `run.json` ([`RunInfo`]: versions, machine, timings), and
//! for the LLM suites one folder per (variant, seed) with `log.jsonl` ([`llm::IterationLog`]) and
//! `outcome.json` ([`llm::VariantOutcome`]), plus `rm_head_fit.json` ([`llm::HeadFit`]). A ladder
//! adds `ladder.json` ([`Ladder`]), a reproduction `reproduce.json` ([`ReproduceIndex`]).
//!
//! Timings live in `run.json` (and a ladder's `us_per_step`) only, so two runs of one seed write
//! the same bytes everywhere else. Plain numbers only: no tensors, no I/O beyond reading a file
//! and taking the run's [`lock`].

pub mod actions;
mod claim;
mod config;
pub mod llm;
pub mod lock;
pub mod metrics;
mod run_info;
mod summary;
mod toy;
mod variant;

use std::path::{Path, PathBuf};

pub use actions::ActionRow;
pub use claim::{Claim, CountsTest, Side, Verdict};
pub use config::{ConfigView, LlmPaths, RmPaths, SuiteSection, ToyEnv};
pub use metrics::MetricsRow;
pub use run_info::{LlmTimings, Machine, Merged, ReproduceIndex, RunInfo, VariantTiming, Versions};
pub use summary::Summary;
pub use toy::{Ladder, LadderToy, ToySummary, VariantSummary};
pub use variant::{UnknownVariant, Variant};

/// The files of a run directory.
pub mod files {
    /// The resolved settings.
    pub const CONFIG: &str = "config.json";
    /// Toy suites' logged iterations.
    pub const METRICS: &str = "metrics.csv";
    /// Toy suites' whole actions at the logged iterations of the first seeds.
    pub const ACTIONS: &str = "actions.jsonl";
    /// Final metrics and claims.
    pub const SUMMARY: &str = "summary.json";
    /// Versions, machine, timings.
    pub const RUN_INFO: &str = "run.json";
    /// The approximation ladder's rungs per toy.
    pub const LADDER: &str = "ladder.json";
    /// The index of an `fpo reproduce` directory.
    pub const REPRODUCE: &str = "reproduce.json";
    /// The LLM reward model's warm start.
    pub const HEAD_FIT: &str = "rm_head_fit.json";
    /// One line per LLM iteration, in a variant's folder.
    pub const LOG: &str = "log.jsonl";
    /// A trained variant's outcome, in its folder.
    pub const OUTCOME: &str = "outcome.json";
    /// A trained variant's LoRA adapters, in its folder.
    pub const ADAPTERS: &str = "adapters.safetensors";
    /// The reward model's head at the end of an LLM variant's training, in its folder.
    pub const HEAD: &str = "head.json";
    /// The held-out probe of an LLM variant, one line per probe, in its folder.
    pub const PROBE: &str = "probe.jsonl";
}

/// The folder of one trained (variant, seed) in an LLM run directory, and the model's name in
/// its evaluation: `<variant>-seed<k>`.
pub fn variant_name(variant: Variant, seed: u64) -> String {
    format!("{}-seed{seed}", variant.name())
}

/// `<run>/<variant>-seed<k>/`.
pub fn variant_dir(run: &Path, variant: Variant, seed: u64) -> PathBuf {
    run.join(variant_name(variant, seed))
}

/// Copies the trained (variant, seed) of the LLM run `from` into the run `to` (its adapters,
/// reward-model head, log, probe and outcome), unless `to` has it already or `from` does not.
/// Returns whether it copied.
pub fn copy_trained(from: &Path, to: &Path, variant: Variant, seed: u64) -> Result<bool, Error> {
    let (src, dst) = (
        variant_dir(from, variant, seed),
        variant_dir(to, variant, seed),
    );
    if dst.join(files::OUTCOME).exists() || !src.join(files::OUTCOME).exists() {
        return Ok(false);
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Write { path, source }
    };
    std::fs::create_dir_all(&dst).map_err(io(&dst))?;
    for name in [
        files::ADAPTERS,
        files::HEAD,
        files::LOG,
        files::PROBE,
        files::OUTCOME,
    ] {
        if name == files::PROBE && !src.join(name).exists() {
            continue; // trained without a probe
        }
        std::fs::copy(src.join(name), dst.join(name)).map_err(io(&dst.join(name)))?;
    }
    Ok(true)
}

/// Copies the evaluation records of every model of the run `from` (`eval/<model>/*.jsonl`, not
/// the judges' verdicts) into the run `to`, where `to` lacks them.
pub fn copy_records(from: &Path, to: &Path) -> Result<(), Error> {
    let scores = from.join("eval");
    if !scores.is_dir() {
        return Ok(());
    }
    let read = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Read { path, source }
    };
    for model in std::fs::read_dir(&scores).map_err(read(&scores))? {
        let model = model.map_err(read(&scores))?.path();
        let Some(name) = model.file_name() else {
            continue;
        };
        if name == "judge" || !model.is_dir() {
            continue;
        }
        let dst = to.join("eval").join(name);
        std::fs::create_dir_all(&dst).map_err(|source| Error::Write {
            path: dst.clone(),
            source,
        })?;
        for f in std::fs::read_dir(&model).map_err(read(&model))? {
            let f = f.map_err(read(&model))?.path();
            let target = dst.join(f.file_name().unwrap_or_default());
            if f.extension().is_some_and(|e| e == "jsonl") && !target.exists() {
                std::fs::copy(&f, &target).map_err(|source| Error::Write {
                    path: target.clone(),
                    source,
                })?;
            }
        }
    }
    Ok(())
}

/// A run-directory file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file cannot be written (or copied to).
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the JSON its name promises.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// Where and why (serde_json names the line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A JSON-lines file has a bad line.
    #[error("{path}: line {line}: {source}")]
    JsonLine {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A CSV file has a bad row (the csv error names the line).
    #[error("{path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// Where and why.
        #[source]
        source: csv::Error,
    },
    /// Writing CSV into memory failed.
    #[error("writing CSV: {0}")]
    CsvWrite(#[source] csv::Error),
    /// Serialising JSON failed.
    #[error("writing JSON: {0}")]
    JsonWrite(#[source] serde_json::Error),
}

/// A JSON file of a run directory, typed.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })
}

/// The lines of a JSON-lines file of a run directory, typed.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| Error::JsonLine {
                path: path.to_owned(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// Pretty JSON with a final newline: how every JSON file of a run directory is written.
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(Error::JsonWrite)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// JSON lines, one value per line.
pub fn to_jsonl<T: serde::Serialize>(rows: &[T]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    for r in rows {
        serde_json::to_writer(&mut out, r).map_err(Error::JsonWrite)?;
        out.push(b'\n');
    }
    Ok(out)
}
