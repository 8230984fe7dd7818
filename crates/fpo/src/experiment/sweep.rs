//! A sweep's grid: an experiment file's `--set` combinations x variants x seeds, expanded into
//! cells, each one process's work. An LLM suite with an evaluation adds the cells that evaluate
//! the base model: one per distinct evaluation of it, since no variant, seed or penalty weight
//! changes it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    Experiment, LlmEval, Overrides, Resolved, Seeds, SettingsError, SuiteConfig, load_experiment,
};
use crate::Variant;

/// `--set key=v1,v2,...`: a key of the experiment file swept over values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetArg {
    /// Dotted key of the experiment file.
    pub key: String,
    /// Values, as written.
    pub values: Vec<String>,
}

/// One value of each swept key.
pub type Combination = Vec<(String, String)>;

/// One cell of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Index in the grid (the Slurm array index).
    pub index: usize,
    /// Directory name under the sweep's `cells/`.
    pub name: String,
    /// What it runs.
    pub job: Job,
    /// The swept keys' values.
    pub set: Combination,
}

/// What a cell runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    /// One (variant, seed): a toy cell is the complete run of it; an LLM cell trains it and
    /// evaluates the trained model.
    Train {
        /// The variant.
        variant: Variant,
        /// The seed.
        seed: u64,
    },
    /// An LLM suite's evaluation of the base model: one cell for every `--set` combination
    /// that evaluates it the same way ([`base_key`]).
    Base,
}

/// What the base model's evaluation depends on (none: a toy, or an LLM suite without an
/// evaluation): the model and encoder files, the `[eval]` section but for the judge and the
/// claims' margins (the merge's), the data, the backend and the confidence level.
pub fn base_key(r: &Resolved) -> Option<String> {
    let SuiteConfig::Llm(cfg) = &r.config else {
        return None;
    };
    if cfg.eval.metrics.is_empty() && cfg.eval.tasks.is_empty() {
        return None;
    }
    let eval = LlmEval {
        judge: None,
        claims: Default::default(),
        ..cfg.eval.clone()
    };
    let key = (
        &cfg.train.model,
        &cfg.train.rm.encoder,
        eval,
        &cfg.data_dir,
        r.run.llm_backend(),
        r.run.confidence,
    );
    Some(serde_json::to_string(&key).expect("settings serialise"))
}

/// A cell's folder name: the job, then the swept values, in characters safe in a path.
fn cell_name(job: Job, combo: &[(String, String)]) -> String {
    let mut name = match job {
        Job::Train { variant, seed } => format!("{variant}-seed{seed}"),
        Job::Base => "base".to_owned(),
    };
    for (k, v) in combo {
        name.push_str(&format!("-{k}={v}"));
    }
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The one suite of an experiment (a ladder cannot be swept).
pub fn single<'a>(exp: &'a Experiment, path: &Path) -> Result<&'a Resolved, SettingsError> {
    match exp {
        Experiment::Single(r) => Ok(r),
        Experiment::Ladder { .. } => Err(SettingsError::Invalid {
            path: path.to_owned(),
            key: "suite".into(),
            message: "a ladder cannot be swept: sweep its toy files (toy-linear.toml, \
                      toy-nn.toml)"
                .into(),
        }),
    }
}

/// A sweep's grid and its cells, in grid order: `--set` combination, then the base cell where
/// one is new, then variant, then seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// The experiment file, as given.
    pub experiment: PathBuf,
    /// The working directory the sweep was made in (relative paths are relative to it).
    pub workdir: PathBuf,
    /// The profile.
    pub profile: Option<String>,
    /// Variants of the grid.
    pub variants: Vec<Variant>,
    /// Seeds of the grid.
    pub seeds: Vec<u64>,
    /// Swept keys.
    pub set: Vec<SetArg>,
    /// Every cell.
    pub cells: Vec<Cell>,
}

impl Grid {
    /// The grid of an experiment file and flags (variants and seeds: the flags', else the
    /// file's), every swept value checked by resolving it.
    pub fn new(
        experiment: &Path,
        profile: Option<String>,
        variants: &[Variant],
        seeds: Option<Seeds>,
        set: Vec<SetArg>,
    ) -> Result<Self, SettingsError> {
        let workdir = std::env::current_dir().map_err(|source| SettingsError::Read {
            path: PathBuf::from("."),
            source,
        })?;
        let mut grid = Self {
            experiment: experiment.to_owned(),
            workdir,
            profile,
            variants: Vec::new(),
            seeds: Vec::new(),
            set,
            cells: Vec::new(),
        };
        let mut base_keys = Vec::new();
        for combo in grid.combinations() {
            let exp = grid.load(variants, seeds.clone(), &combo, None)?;
            let r = single(&exp, experiment)?;
            grid.variants = r.run.variants.clone();
            grid.seeds = r.run.seeds.0.clone();
            base_keys.push(base_key(r));
        }
        // One base cell per distinct evaluation of the base model, named `base` when there is
        // one, else after the first combination that needs it.
        let distinct: BTreeSet<_> = base_keys.iter().flatten().collect();
        let mut seen = Vec::new();
        let mut cells = Vec::new();
        for (combo, key) in grid.combinations().into_iter().zip(&base_keys) {
            if let Some(key) = key.as_ref().filter(|k| !seen.contains(k)) {
                seen.push(key);
                let named = if distinct.len() == 1 { &[][..] } else { &combo };
                cells.push(Cell {
                    index: cells.len(),
                    name: cell_name(Job::Base, named),
                    job: Job::Base,
                    set: combo.clone(),
                });
            }
            for &variant in &grid.variants {
                for &seed in &grid.seeds {
                    let job = Job::Train { variant, seed };
                    cells.push(Cell {
                        index: cells.len(),
                        name: cell_name(job, &combo),
                        job,
                        set: combo.clone(),
                    });
                }
            }
        }
        grid.cells = cells;
        Ok(grid)
    }

    /// The `--set` combinations, in grid order.
    pub fn combinations(&self) -> Vec<Combination> {
        let mut out = vec![Vec::new()];
        for s in &self.set {
            out = out
                .into_iter()
                .flat_map(|prefix| {
                    s.values.iter().map(move |v| {
                        let mut c = prefix.clone();
                        c.push((s.key.clone(), v.clone()));
                        c
                    })
                })
                .collect();
        }
        out
    }

    /// The experiment under the given variants, seeds, `--set` values and judge (`--judge`
    /// and `--retry-errors`).
    pub fn load(
        &self,
        variants: &[Variant],
        seeds: Option<Seeds>,
        combo: &[(String, String)],
        judge: Option<(String, bool)>,
    ) -> Result<Experiment, SettingsError> {
        let retry_errors = judge.as_ref().is_some_and(|j| j.1);
        let overrides = Overrides {
            variants: variants.to_vec(),
            seeds,
            judge: judge.map(|j| j.0),
            retry_errors,
            profile_optional: false,
            set: combo.to_vec(),
            backend: None,
        };
        let path = self.workdir.join(&self.experiment);
        let mut exp = load_experiment(&path, self.profile.as_deref(), &overrides)?;
        // Recorded as given, as `fpo run` records it, wherever the cell or the merge runs.
        if let Experiment::Single(r) = &mut exp {
            r.source = self.experiment.clone();
        }
        Ok(exp)
    }

    /// The cell of (variant, seed) in the combination `combo`.
    pub fn train_cell(&self, combo: &[(String, String)], variant: Variant, seed: u64) -> &Cell {
        self.cells
            .iter()
            .find(|c| c.job == Job::Train { variant, seed } && c.set == combo)
            .expect("every (variant, seed) of every combination has a cell")
    }

    /// The cell that evaluates the base model for each combination (none where its suite has
    /// no evaluation), given the combinations' experiments in grid order: the base cell made for
    /// the first combination with the same [`base_key`], as [`Grid::new`] makes them.
    pub fn base_cells(&self, resolved: &[&Resolved]) -> Vec<Option<&Cell>> {
        let combos = self.combinations();
        let keys: Vec<Option<String>> = resolved.iter().map(|r| base_key(r)).collect();
        keys.iter()
            .map(|key| {
                let key = key.as_ref()?;
                let (first, _) = combos
                    .iter()
                    .zip(&keys)
                    .find(|(_, k)| k.as_ref() == Some(key))?;
                self.cells
                    .iter()
                    .find(|c| c.job == Job::Base && &c.set == first)
            })
            .collect()
    }
}
