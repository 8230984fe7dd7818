//! Trained variants and scores taken from other run directories instead of computed again:
//! from a run trained with the same settings (`fpo run --reuse`, a reproduction's second LLM
//! suite), or from a sweep's cells (`fpo merge`). What the run has already is never
//! overwritten.

use std::path::{Path, PathBuf};

use fpo_rundir::files;

use super::TrainConfig;
use crate::experiment::{FpoSection, LlmRunConfig, LlmSuiteConfig, Resolved, SuiteConfig};
use crate::{Error, Result, Variant};

/// The settings that make two LLM runs' training the same: the `[train]` and `[fpo]` sections.
/// Variants and seeds may differ: a reused run gives the (variant, seed) folders it has, the
/// others are trained.
pub type Training = (TrainConfig, FpoSection);

fn training_settings(cfg: &LlmSuiteConfig, fpo: &FpoSection) -> Training {
    (cfg.train.clone(), fpo.clone())
}

/// The training settings of an LLM suite (none for a toy).
pub fn training_of(resolved: &Resolved) -> Option<Training> {
    match &resolved.config {
        SuiteConfig::Llm(cfg) => Some(training_settings(cfg, &resolved.fpo)),
        _ => None,
    }
}

/// The items an evaluation scores: the same data, `limit` and Types give the same items.
fn evaluation_items(cfg: &LlmSuiteConfig) -> (&Path, usize, &[String]) {
    (&cfg.data_dir, cfg.eval.limit, &cfg.eval.types)
}

fn incompatible(path: &Path, message: impl Into<String>) -> Error {
    Error::Incompatible {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Copies the trained (variant, seed) folders of the run `from` into `dir` (only those `dir`
/// lacks), after checking that `from` was trained with the same settings; with them the
/// reward model's fit, and the models' scores when they are of the same items, so that judging
/// a finished run with an LLM judge pays for the judge alone.
pub fn reuse_training(resolved: &Resolved, from: &Path, dir: &Path) -> Result<()> {
    let SuiteConfig::Llm(ours) = &resolved.config else {
        return Err(incompatible(from, "only an LLM suite reuses a run"));
    };
    let theirs = LlmRunConfig::read(from)?;
    if training_settings(&theirs.config, &theirs.fpo) != training_settings(ours, &resolved.fpo) {
        return Err(incompatible(
            from,
            format!(
                "trained with other [train] or [fpo] settings than {}: it cannot be reused",
                resolved.source.display()
            ),
        ));
    }
    for &seed in &resolved.run.seeds.0 {
        for &variant in &resolved.run.variants {
            fpo_rundir::copy_trained(from, dir, variant, seed)?;
        }
    }
    let fit = from.join(files::HEAD_FIT);
    if fit.exists() && !dir.join(files::HEAD_FIT).exists() {
        std::fs::copy(&fit, dir.join(files::HEAD_FIT)).map_err(|source| Error::Io {
            path: dir.join(files::HEAD_FIT),
            source,
        })?;
    }
    if evaluation_items(&theirs.config) == evaluation_items(ours) {
        fpo_rundir::copy_records(from, dir)?;
    }
    Ok(())
}

/// A sweep's cell, as a merged run takes it.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Its run directory.
    pub dir: PathBuf,
    /// The (variant, seed) it trained; none for the base model's cell.
    pub trained: Option<(Variant, u64)>,
}

/// Gathers the files of a sweep's cells into the run `dir`: each trained cell's (variant, seed)
/// folder and the reward model's fit (every trained cell fitted the head itself, from the same
/// pairs: cells whose fits differ are refused), and every cell's evaluation records.
pub fn gather(cells: &[Cell], dir: &Path) -> Result<()> {
    let mut fit: Option<(Vec<u8>, PathBuf)> = None;
    for cell in cells {
        if let Some((variant, seed)) = cell.trained {
            let path = cell.dir.join(files::HEAD_FIT);
            let io = |source| Error::Io {
                path: path.clone(),
                source,
            };
            let bytes = std::fs::read(&path).map_err(io)?;
            match &fit {
                Some((first, at)) if *first != bytes => {
                    return Err(incompatible(
                        &path,
                        format!(
                            "the reward model's head was fitted otherwise than in {} (another \
                             build or backend?): these cells cannot be merged",
                            at.display()
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    let target = dir.join(files::HEAD_FIT);
                    super::checkpoint::write_atomic(&target, &bytes)?;
                    fit = Some((bytes, path.clone()));
                }
            }
            fpo_rundir::copy_trained(&cell.dir, dir, variant, seed)?;
        }
        fpo_rundir::copy_records(&cell.dir, dir)?;
    }
    Ok(())
}
