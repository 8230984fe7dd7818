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
        /// `run.json`, when present (machine, wall time of the whole ladder).
        run_info: Option<serde_json::Value>,
    },
    /// An LLM training run.
    Llm(LlmSection),
}

/// An LLM run: per-iteration curves from each variant's `log.jsonl`, the summary, and samples.
#[derive(Debug, Clone, Serialize)]
pub struct LlmSection {
    /// The directory.
    pub dir: String,
    /// Suite name.
    pub suite: String,
    /// The description from the config.
    pub description: String,
    /// The resolved config, pretty JSON.
    pub config: String,
    /// `summary.json` as written (RM warm start, outcomes).
    pub summary: serde_json::Value,
    /// `run.json`, when present.
    pub run_info: Option<serde_json::Value>,
    /// Trailing moving-average window of the curves, in iterations.
    pub window: usize,
    /// Per variant: the curves (mean over seeds, then the moving average).
    pub curves: BTreeMap<String, LlmCurves>,
    /// The last iterations' winners side by side (first seed), newest first.
    pub samples: Vec<Sample>,
    /// The evaluation's greedy answers side by side, per question (the first questions).
    pub answers: Vec<AnswerRow>,
}

/// One evaluation question's answers under every model.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerRow {
    /// The question's id.
    pub id: u64,
    /// The question (absent in runs from before it was recorded).
    pub question: String,
    /// TruthfulQA Type and Category.
    pub kind: String,
    /// Category.
    pub category: String,
    /// Model -> (answer, cosine margin to the references).
    pub answers: BTreeMap<String, (String, f64)>,
}

/// Questions shown in the side-by-side answers.
const ANSWER_ROWS: usize = 40;

/// The greedy answers of every model under `dir/eval/<model>/answers.jsonl`, side by side.
fn answer_rows(dir: &Path) -> Result<Vec<AnswerRow>> {
    let mut rows: Vec<AnswerRow> = Vec::new();
    let Ok(models) = std::fs::read_dir(dir.join("eval")) else {
        return Ok(rows);
    };
    let mut models: Vec<_> = models.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    models.sort();
    for m in models {
        let path = m.join("answers.jsonl");
        if !path.is_file() {
            continue;
        }
        let name = name_of(&m);
        for line in read(&path)?.lines().take(ANSWER_ROWS) {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|source| Error::Json {
                    path: path.clone(),
                    source,
                })?;
            let id = v["id"].as_u64().unwrap_or(0);
            let row = match rows.iter_mut().position(|r| r.id == id) {
                Some(i) => &mut rows[i],
                None => {
                    rows.push(AnswerRow {
                        id,
                        question: v["question"].as_str().unwrap_or("").to_owned(),
                        kind: v["kind"].as_str().unwrap_or("").to_owned(),
                        category: v["category"].as_str().unwrap_or("").to_owned(),
                        answers: BTreeMap::new(),
                    });
                    rows.last_mut().expect("just pushed")
                }
            };
            row.answers.insert(
                name.clone(),
                (
                    v["answer"].as_str().unwrap_or("").to_owned(),
                    v["cos_diff"].as_f64().unwrap_or(f64::NAN),
                ),
            );
        }
    }
    Ok(rows)
}

/// Per-iteration series of one variant.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LlmCurves {
    /// Iterations.
    pub iteration: Vec<f64>,
    /// RM score of the winner.
    pub winner_reward: Vec<f64>,
    /// Oracle utility of the winner.
    pub winner_utility: Vec<f64>,
    /// Penalty of the winner.
    pub penalty: Vec<f64>,
    /// Self-influence of the winner.
    pub self_influence: Vec<f64>,
}

/// One prompt's winners under each variant.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Iteration.
    pub iteration: u64,
    /// Line of the prompt in the prompts file.
    pub prompt_line: u64,
    /// Variant -> (winner text, oracle utility, RM score).
    pub winners: BTreeMap<String, (String, f64, f64)>,
}

const LLM_SERIES: [&str; 4] = [
    "winner_reward",
    "winner_utility",
    "penalty",
    "self_influence",
];
/// Winners shown in the samples table.
const SAMPLES: usize = 8;

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

/// `reproduce.json` of a reproduce directory (profile, suites, versions, machine, wall time,
/// command), with the directory; none for other runs.
pub fn reproduce_index(dir: &Path) -> Result<Option<serde_json::Value>> {
    let path = dir.join("reproduce.json");
    if !path.is_file() {
        return Ok(None);
    }
    let mut index = json(&path)?;
    index["dir"] = serde_json::Value::String(dir.display().to_string());
    Ok(Some(index))
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
            run_info: run_info(dir)?,
        }]);
    }
    if dir.join("rm_head_fit.json").is_file() {
        return Ok(vec![Section::Llm(llm(dir)?)]);
    }
    if dir.join("metrics.csv").is_file() {
        return Ok(vec![Section::Toy(toy(dir)?)]);
    }
    Err(Error::NotARun(dir.to_owned()))
}

/// A run directory's `run.json` (what ran where, and for how long), when it has one.
fn run_info(dir: &Path) -> Result<Option<serde_json::Value>> {
    let path = dir.join("run.json");
    path.is_file().then(|| json(&path)).transpose()
}

fn toy(dir: &Path) -> Result<ToySection> {
    let config = json(&dir.join("config.json"))?;
    let summary = json(&dir.join("summary.json"))?;
    let run_info = run_info(dir)?;
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

/// Trailing moving average over `w` points (fewer at the start).
fn moving_average(xs: &[f64], w: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(xs.len());
    let mut sum = 0.0;
    for (i, x) in xs.iter().enumerate() {
        sum += x;
        if i >= w {
            sum -= xs[i - w];
        }
        out.push(sum / (i + 1).min(w) as f64);
    }
    out
}

fn llm(dir: &Path) -> Result<LlmSection> {
    let config = json(&dir.join("config.json"))?;
    let summary = json(&dir.join("summary.json"))?;
    let run_info = run_info(dir)?;
    // variant -> seed -> log lines
    let mut logs: BTreeMap<String, BTreeMap<u64, Vec<serde_json::Value>>> = BTreeMap::new();
    for o in summary["outcomes"].as_array().into_iter().flatten() {
        let (Some(variant), Some(seed)) = (o["variant"].as_str(), o["seed"].as_u64()) else {
            continue;
        };
        let path = dir.join(format!("{variant}-seed{seed}")).join("log.jsonl");
        let lines = read(&path)?
            .lines()
            .map(|l| {
                serde_json::from_str(l).map_err(|source| Error::Json {
                    path: path.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<serde_json::Value>>>()?;
        logs.entry(variant.to_owned())
            .or_default()
            .insert(seed, lines);
    }
    let len = logs
        .values()
        .flat_map(|s| s.values().map(Vec::len))
        .max()
        .unwrap_or(0);
    let window = (len / 10).max(1);
    let mut curves = BTreeMap::new();
    for (variant, seeds) in &logs {
        let n = seeds.values().map(Vec::len).min().unwrap_or(0);
        let mean_of = |key: &str| -> Vec<f64> {
            (0..n)
                .map(|i| {
                    let vals: Vec<f64> =
                        seeds.values().filter_map(|l| l[i][key].as_f64()).collect();
                    vals.iter().sum::<f64>() / vals.len().max(1) as f64
                })
                .collect()
        };
        let [r, u, p, si] = LLM_SERIES.map(|k| moving_average(&mean_of(k), window));
        curves.insert(
            variant.clone(),
            LlmCurves {
                iteration: (0..n).map(|i| i as f64).collect(),
                winner_reward: r,
                winner_utility: u,
                penalty: p,
                self_influence: si,
            },
        );
    }
    let mut samples: Vec<Sample> = Vec::new();
    for (variant, seeds) in &logs {
        let Some(lines) = seeds.values().next() else {
            continue;
        };
        for l in lines.iter().rev().take(SAMPLES) {
            let it = l["iteration"].as_u64().unwrap_or(0);
            let entry = match samples.iter_mut().find(|s| s.iteration == it) {
                Some(e) => e,
                None => {
                    samples.push(Sample {
                        iteration: it,
                        prompt_line: l["prompt_line"].as_u64().unwrap_or(0),
                        winners: BTreeMap::new(),
                    });
                    samples.last_mut().expect("just pushed")
                }
            };
            entry.winners.insert(
                variant.clone(),
                (
                    l["winner_text"].as_str().unwrap_or("").to_owned(),
                    l["winner_utility"].as_f64().unwrap_or(f64::NAN),
                    l["winner_reward"].as_f64().unwrap_or(f64::NAN),
                ),
            );
        }
    }
    samples.sort_by_key(|s| std::cmp::Reverse(s.iteration));
    Ok(LlmSection {
        dir: dir.display().to_string(),
        suite: config["suite"].as_str().unwrap_or("?").to_owned(),
        description: config["description"].as_str().unwrap_or("").to_owned(),
        config: serde_json::to_string_pretty(&config).unwrap_or_default(),
        summary,
        run_info,
        window,
        curves,
        samples,
        answers: answer_rows(dir)?,
    })
}

/// The directory name, for report titles.
pub fn name_of(dir: &Path) -> String {
    dir.file_name()
        .map_or_else(|| "run".to_owned(), |n| n.to_string_lossy().into_owned())
}
