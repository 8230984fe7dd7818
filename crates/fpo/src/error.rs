//! Errors of the `fpo` crate.

/// An error of the FPO loop or of its configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value that is out of range or inconsistent with another.
    #[error("invalid value for `{key}`: {message}")]
    InvalidConfig {
        /// Dotted path of the offending key, e.g. `rm.pinned_init[0].weights`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The optimisation produced a non-finite number.
    #[error("non-finite value in {what} at iteration {iteration} (seed {seed}, variant {variant})")]
    NonFinite {
        /// Which quantity.
        what: &'static str,
        /// Outer iteration.
        iteration: usize,
        /// Seed of the run.
        seed: u64,
        /// Variant of the run.
        variant: crate::Variant,
    },
    /// A data file with a bad record.
    #[error("{path}:{line}: {message}")]
    Data {
        /// The file.
        path: std::path::PathBuf,
        /// 1-based line (0: the file as a whole).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A file that could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A checkpoint that does not belong to this run or cannot be read.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A run directory whose trained variants or records cannot be taken into this run.
    #[error("{path}: {message}")]
    Incompatible {
        /// The run directory or file.
        path: std::path::PathBuf,
        /// Why.
        message: String,
    },
    /// The model crate failed (loading, tokenising, running a model).
    #[error(transparent)]
    Model(#[from] fpo_model::llm::LlmError),
    /// A file of the run directory cannot be read or written.
    #[error(transparent)]
    RunDir(#[from] fpo_rundir::Error),
    /// A task file, its data or one of its templates.
    #[error(transparent)]
    Task(#[from] fpo_eval::task::TaskError),
    /// A backend is not available (not compiled in, or no device).
    #[error(transparent)]
    Backend(#[from] fpo_model::backend::BackendError),
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Error {
    Error::InvalidConfig {
        key: key.into(),
        message: message.into(),
    }
}

/// Checks that a config value is strictly positive.
pub(crate) fn check_positive(key: &str, value: f64) -> Result<()> {
    if value > 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("must be a positive finite number, got {value}"),
        ))
    }
}

/// Checks that a config value is finite and not negative.
pub(crate) fn check_non_negative(key: &str, value: f64) -> Result<()> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("must be a finite number >= 0, got {value}"),
        ))
    }
}

/// The largest action space of a toy: past it a run's trajectories and RM outgrow memory.
pub const MAX_TOY_DIM: usize = 10_000;

/// Checks that a size is in `1..=max`.
pub(crate) fn check_size(key: &str, value: usize, max: usize) -> Result<()> {
    if (1..=max).contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("must be between 1 and {max}, got {value}"),
        ))
    }
}
