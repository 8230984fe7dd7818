//! Loading run directories into plain numbers.

use std::collections::BTreeMap;
use std::path::Path;

use fpo_eval::stats::Summary;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One section of a report.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Section {
    /// A toy suite run.
    Toy(ToySection),
    /// The approximation ladder over toys.
    Ladder {
        /// The directory.
        dir: String,
        /// One toy section per toy, with the rungs as variants.
        toys: Vec<ToySection>,
        /// Microseconds per policy step, per toy and rung.
        us_per_step: BTreeMap<String, BTreeMap<String, f64>>,
    },
}

/// A toy suite run: the curves over seeds and the summary.
#[derive(Debug, Clone, Serialize)]
pub struct ToySection {
    /// The directory.
    pub dir: String,
    /// Suite name.
    pub suite: String,
    /// The description from the config.
    pub description: String,
    /// The resolved config, pretty JSON.
    pub config: String,
    /// `summary.json` as written (variants, claims).
    pub summary: serde_json::Value,
    /// `run.json`, when present (machine, wall time).
    pub run_info: Option<serde_json::Value>,
    /// Per variant, per logged iteration: mean and CI over seeds.
    pub curves: BTreeMap<String, Curves>,
    /// `(A, tau, ideal signal norm)` of the true utility, for the phase-space contours.
    pub utility: Option<(f64, f64, f64)>,
}

/// Mean and confidence band over seeds, per logged iteration.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Curves {
    /// Iterations.
    pub iteration: Vec<f64>,
    /// Signal magnitude.
    pub signal: Vec<Summary>,
    /// Noise magnitude.
    pub noise: Vec<Summary>,
    /// True utility.
    pub true_utility: Vec<Summary>,
    /// RM score.
    pub proxy_reward: Vec<Summary>,
}

#[derive(Debug, Deserialize)]
struct Row {
    variant: String,
    iteration: u64,
    signal: f64,
    noise: f64,
    true_utility: f64,
    proxy_reward: f64,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

fn json(path: &Path) -> Result<serde_json::Value> {
    serde_json::from_str(&read(path)?).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })
}

/// The sections of a directory: a toy run, a ladder, or a reproduce directory of either.
pub fn sections(dir: &Path) -> Result<Vec<Section>> {
    if dir.join("reproduce.json").is_file() {
        let index = json(&dir.join("reproduce.json"))?;
        let mut out = Vec::new();
        for suite in index["suites"].as_array().into_iter().flatten() {
            if let Some(name) = suite.as_str() {
                out.extend(sections(&dir.join(name))?);
            }
        }
        return Ok(out);
    }
    if dir.join("ladder.json").is_file() {
        let ladder = json(&dir.join("ladder.json"))?;
        let mut toys = Vec::new();
        let mut us_per_step = BTreeMap::new();
        for (name, value) in ladder.as_object().into_iter().flatten() {
            toys.push(toy(&dir.join(name))?);
            let costs = value["us_per_step"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect();
            us_per_step.insert(name.clone(), costs);
        }
        return Ok(vec![Section::Ladder {
            dir: dir.display().to_string(),
            toys,
            us_per_step,
        }]);
    }
    if dir.join("metrics.csv").is_file() {
        return Ok(vec![Section::Toy(toy(dir)?)]);
    }
    Err(Error::NotARun(dir.to_owned()))
}

fn toy(dir: &Path) -> Result<ToySection> {
    let config = json(&dir.join("config.json"))?;
    let summary = json(&dir.join("summary.json"))?;
    let run_info = dir
        .join("run.json")
        .is_file()
        .then(|| json(&dir.join("run.json")))
        .transpose()?;
    let level = summary["confidence"].as_f64().unwrap_or(0.95);
    let path = dir.join("metrics.csv");
    let mut reader = csv::Reader::from_path(&path).map_err(|source| Error::Csv {
        path: path.clone(),
        source,
    })?;
    // variant -> iteration -> columns of values over seeds
    let mut acc: BTreeMap<String, BTreeMap<u64, [Vec<f64>; 4]>> = BTreeMap::new();
    for row in reader.deserialize::<Row>() {
        let r = row.map_err(|source| Error::Csv {
            path: path.clone(),
            source,
        })?;
        let cols = acc
            .entry(r.variant)
            .or_default()
            .entry(r.iteration)
            .or_default();
        for (c, v) in cols
            .iter_mut()
            .zip([r.signal, r.noise, r.true_utility, r.proxy_reward])
        {
            c.push(v);
        }
    }
    let curves = acc
        .into_iter()
        .map(|(variant, by_iter)| {
            let mut c = Curves::default();
            for (it, cols) in by_iter {
                c.iteration.push(it as f64);
                let [s, n, u, r] = cols.map(|xs| Summary::of(&xs, level));
                c.signal.push(s);
                c.noise.push(n);
                c.true_utility.push(u);
                c.proxy_reward.push(r);
            }
            (variant, c)
        })
        .collect();
    let env = &config["config"]["env"];
    let utility = (|| {
        let value = env["target_value"]
            .as_f64()
            .or_else(|| env["ideal_value"].as_f64())?;
        let dims = env["signal_dims"].as_f64()?;
        Some((
            env["utility_scale"].as_f64()?,
            env["utility_width"].as_f64()?,
            value * dims.sqrt(),
        ))
    })();
    Ok(ToySection {
        dir: dir.display().to_string(),
        suite: config["suite"].as_str().unwrap_or("?").to_owned(),
        description: config["description"].as_str().unwrap_or("").to_owned(),
        config: serde_json::to_string_pretty(&config).unwrap_or_default(),
        summary,
        run_info,
        curves,
        utility,
    })
}

/// The directory name, for report titles.
pub fn name_of(dir: &Path) -> String {
    dir.file_name()
        .map_or_else(|| "run".to_owned(), |n| n.to_string_lossy().into_owned())
}
