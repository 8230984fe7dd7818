//! The approximation ladder's file: the same rungs on each toy file it names, resolved into
//! one [`Resolved`] per toy.

use std::path::{Path, PathBuf};

use crate::{Penalty, Variant};
use serde::{Deserialize, Serialize};

use super::schema::{Experiment, Seeds, default_confidence};
use super::toml_doc::{apply_profile, typed};
use super::{Overrides, SettingsError};

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
pub(super) struct LadderFile {
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
pub(super) struct LadderRun {
    seeds: Seeds,
    #[serde(default = "default_confidence")]
    confidence: f64,
    /// Overrides each toy's `run.log_every` (the exact penalty is evaluated at every logged
    /// point, which costs one Hessian factorisation on the NN toy).
    log_every: Option<usize>,
}

/// The approximation ladder of `path`: its rungs on each toy file it names.
pub(super) fn load_ladder(
    path: &Path,
    doc: toml::Table,
    text: String,
    profile: Option<&str>,
    overrides: &Overrides,
) -> Result<Experiment, SettingsError> {
    let (_, text) = apply_profile(path, doc, text, profile, overrides.profile_optional)?;
    let f: LadderFile = typed(&text, path)?;
    let value_error = |source| SettingsError::Value {
        path: path.to_owned(),
        source,
    };
    if f.rungs.is_empty() {
        return Err(value_error(crate::Error::InvalidConfig {
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
        // The ladder's profile applies to the toys that define it.
        let toy_overrides = Overrides {
            profile_optional: true,
            ..Overrides::default()
        };
        let mut r = super::load(&base.join(toy), profile, &toy_overrides)?;
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
