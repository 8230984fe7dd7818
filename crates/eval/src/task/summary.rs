//! A task's figures across the models of an evaluation (`summary.json`'s `evaluation.tasks`):
//! each model's summary, each trained model against the base model row by row, each variant
//! over its seeds, and the paper's figures beside them.

use std::collections::BTreeMap;

use fpo_rundir::Variant;
use serde::{Deserialize, Serialize};

use super::generation::{self, GenRecord, GenSummary};
use super::mc::{self, McRecord, McSummary, Paired};
use super::{OutputType, Published, Task};
use crate::evaluation::model_name;
use crate::stats::Summary;

/// Every model's records on one task, the base model's first.
#[derive(Debug, Clone)]
pub enum TaskRecords {
    /// Multiple choice.
    Mc(Vec<(String, Vec<McRecord>)>),
    /// Generation.
    Gen(Vec<(String, Vec<GenRecord>)>),
}

/// One task in an evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskEvaluation {
    /// The task file.
    pub source: String,
    /// What it measures.
    pub about: String,
    /// Multiple choice or generation.
    pub output_type: OutputType,
    /// The metrics it reports and compares.
    pub metrics: Vec<String>,
    /// Rows scored.
    pub rows: usize,
    /// Rows in its data (more than `rows` under a limit: a stratified subset).
    pub total: usize,
    /// Few-shot examples per row.
    pub num_fewshot: usize,
    /// Multiple-choice figures per model.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mc: BTreeMap<String, McSummary>,
    /// Generation figures per model.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub generation: BTreeMap<String, GenSummary>,
    /// Per trained model, per metric: the paired difference from the base model.
    pub vs_base: BTreeMap<String, BTreeMap<String, Paired>>,
    /// Per variant, per metric: each seed's model's mean, over its seeds.
    pub across_seeds: BTreeMap<String, BTreeMap<String, Summary>>,
    /// The paper's figures.
    pub published: Option<Published>,
    /// Generation tasks: the paper's pairs of trained models per seed, by the offline judge and,
    /// when configured, the LLM judge (the group as the category).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comparisons: Vec<crate::generation::Comparison>,
}

/// The task's figures from every model's records (`records`, the base model first) at
/// confidence `level`; `trained` names the (variant, seed) behind each trained model.
pub fn evaluate(
    task: &Task,
    records: &TaskRecords,
    trained: &[(Variant, u64)],
    level: f64,
) -> TaskEvaluation {
    let f = &task.file;
    let mut out = TaskEvaluation {
        source: task.source.display().to_string(),
        about: f.about.clone(),
        output_type: f.output_type,
        metrics: f.metrics.clone(),
        rows: task.docs.len(),
        total: task.total,
        num_fewshot: f.num_fewshot,
        mc: BTreeMap::new(),
        generation: BTreeMap::new(),
        vs_base: BTreeMap::new(),
        across_seeds: BTreeMap::new(),
        published: f.published.clone(),
        comparisons: Vec::new(),
    };
    // Each model's mean of each metric, for the figures across seeds.
    let mut means: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let mean = |xs: Vec<f64>| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    match records {
        TaskRecords::Mc(models) => {
            for (name, rows) in models {
                out.mc.insert(name.clone(), mc::summarize(rows, level));
                let m = f.metrics.iter().map(|k| {
                    (
                        k.clone(),
                        mean(rows.iter().map(|r| mc::metric(r, k)).collect()),
                    )
                });
                means.insert(name.clone(), m.collect());
            }
            if let Some((_, base)) = models.first() {
                for (name, rows) in &models[1..] {
                    let p = mc::against_base(
                        rows,
                        base,
                        &f.metrics,
                        mc::metric,
                        |m| m != "mass",
                        level,
                    );
                    out.vs_base.insert(name.clone(), p);
                }
            }
        }
        TaskRecords::Gen(models) => {
            for (name, rows) in models {
                out.generation
                    .insert(name.clone(), generation::summarize(rows, level));
                let m = f.metrics.iter().map(|k| {
                    let xs = rows.iter().map(|r| generation::metric(r, k)).collect();
                    (k.clone(), mean(xs))
                });
                means.insert(name.clone(), m.collect());
            }
            if let Some((_, base)) = models.first() {
                for (name, rows) in &models[1..] {
                    let p = mc::against_base(
                        rows,
                        base,
                        &f.metrics,
                        generation::metric,
                        |m| m == "exact_match",
                        level,
                    );
                    out.vs_base.insert(name.clone(), p);
                }
            }
        }
    }
    for v in Variant::ALL {
        let seeds: Vec<&BTreeMap<String, f64>> = trained
            .iter()
            .filter(|(tv, _)| *tv == v)
            .filter_map(|&(_, s)| means.get(&model_name(v, s)))
            .collect();
        if seeds.is_empty() {
            continue;
        }
        let per_metric = f
            .metrics
            .iter()
            .map(|k| {
                let xs: Vec<f64> = seeds.iter().map(|m| m[k]).collect();
                (k.clone(), Summary::of(&xs, level))
            })
            .collect();
        out.across_seeds.insert(v.to_string(), per_metric);
    }
    out
}

/// One line per model of a task's figures, e.g. `mmlu, base: acc 0.252 [0.245, 0.259],
/// acc_norm ... over 14042 rows (chance 0.250)`.
pub fn describe(name: &str, t: &TaskEvaluation) -> Vec<String> {
    let ci = |m: &str, x: f64, lo: f64, hi: f64| format!("{m} {x:.3} [{lo:.3}, {hi:.3}]");
    let mut out = Vec::new();
    for (model, s) in &t.mc {
        let o = &s.overall;
        let parts: Vec<String> = t
            .metrics
            .iter()
            .map(|m| match m.as_str() {
                "acc" => ci(m, o.acc.share.unwrap_or(0.0), o.acc.ci_low, o.acc.ci_high),
                "acc_norm" => {
                    let a = &o.acc_norm;
                    ci(m, a.share.unwrap_or(0.0), a.ci_low, a.ci_high)
                }
                _ => ci(m, o.mass.mean, o.mass.ci_low, o.mass.ci_high),
            })
            .collect();
        out.push(format!(
            "{name}, {model}: {} over {} rows (chance {:.3})",
            parts.join(", "),
            o.n,
            o.chance
        ));
    }
    for (model, s) in &t.generation {
        let o = &s.overall;
        let parts: Vec<String> = t
            .metrics
            .iter()
            .map(|m| {
                let x = match m.as_str() {
                    "exact_match" => &o.exact_match,
                    "rouge_l" => &o.rouge_l,
                    _ => &o.bleu,
                };
                ci(m, x.mean, x.ci_low, x.ci_high)
            })
            .collect();
        out.push(format!(
            "{name}, {model}: {} over {} rows",
            parts.join(", "),
            o.n
        ));
    }
    out
}
