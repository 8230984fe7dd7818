//! Multiple choice by likelihood: each choice is scored as the continuation `target_delimiter +
//! choice` after the row's prompt; `acc` (the most likely choice is true; the first maximum wins
//! ties, as `np.argmax`), `acc_norm` (lm-evaluation-harness's: the log-likelihood divided by
//! the choice's length in characters) and `mass` (the true choices' share of the probability,
//! TruthfulQA's MC2).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Doc, Task, TaskError};
use crate::lm::LanguageModel;
use crate::stats::{Share, Summary, mcnemar, paired_difference};

/// One row's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McRecord {
    /// The row's id.
    pub id: String,
    /// Its position in the data file.
    pub index: usize,
    /// Its group (`group_by`).
    pub group: String,
    /// Summed log-likelihood of each choice.
    pub lls: Vec<f64>,
    /// Each choice's length in characters.
    pub chars: Vec<usize>,
    /// The true choices.
    pub gold: Vec<usize>,
    /// 1 when the most likely choice is true.
    pub acc: f64,
    /// 1 when the most likely choice per character is true.
    pub acc_norm: f64,
    /// Probability share of the true choices.
    pub mass: f64,
}

/// Why scoring failed: the task (a template on a row) or the model.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError<E: std::error::Error> {
    /// The task.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// The model.
    #[error(transparent)]
    Model(E),
}

/// The first index of the largest value.
fn argmax(xs: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, x) in xs.enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best.0
}

/// A record from a row's log-likelihoods.
pub fn record(doc: &Doc, lls: Vec<f64>) -> McRecord {
    let chars: Vec<usize> = doc.choices.iter().map(|c| c.chars().count()).collect();
    let pick = argmax(lls.iter().copied());
    let pick_norm = argmax(lls.iter().zip(&chars).map(|(l, &c)| l / c.max(1) as f64));
    let labels: Vec<bool> = (0..lls.len()).map(|k| doc.gold.contains(&k)).collect();
    let hit = |k: usize| if doc.gold.contains(&k) { 1.0 } else { 0.0 };
    McRecord {
        id: doc.id.clone(),
        index: doc.index,
        group: doc.group.clone(),
        mass: crate::truthfulqa::mc2(&lls, &labels),
        acc: hit(pick),
        acc_norm: hit(pick_norm),
        lls,
        chars,
        gold: doc.gold.clone(),
    }
}

/// The context and continuations of a row.
pub fn request(task: &Task, doc: &Doc) -> Result<(String, String, Vec<String>), TaskError> {
    let (prefix, question) = task.prompt(doc)?;
    let d = &task.file.target_delimiter;
    let conts = doc.choices.iter().map(|c| format!("{d}{c}")).collect();
    Ok((prefix, question, conts))
}

/// Scores `docs` of `task` under `lm`; `on_item` after each row. The prefix (description and
/// examples) is announced to the model before its rows ([`LanguageModel::prime`]).
pub fn evaluate<L: LanguageModel>(
    lm: &mut L,
    task: &Task,
    docs: &[Doc],
    mut on_item: impl FnMut(),
) -> Result<Vec<McRecord>, ScoreError<L::Error>> {
    let mut out = Vec::with_capacity(docs.len());
    let mut primed = String::new();
    for doc in docs {
        let (prefix, question, conts) = request(task, doc)?;
        // Rows that share their examples (MMLU: a subject's) announce them once.
        if !prefix.is_empty() && prefix != primed {
            lm.prime(&prefix).map_err(ScoreError::Model)?;
            primed.clone_from(&prefix);
        }
        let lls = lm
            .loglikelihoods(&format!("{prefix}{question}"), &conts)
            .map_err(ScoreError::Model)?;
        out.push(record(doc, lls));
        on_item();
    }
    Ok(out)
}

/// One model's figures on a multiple-choice task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct McFigures {
    /// Rows scored.
    pub n: usize,
    /// Accuracy with its Wilson interval.
    pub acc: Share,
    /// Length-normalised accuracy with its Wilson interval.
    pub acc_norm: Share,
    /// Mean true mass with a Student-t interval.
    pub mass: Summary,
    /// Accuracy of picking a choice at random (the mean share of true choices).
    pub chance: f64,
}

/// A model's figures, overall and per group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct McSummary {
    /// Over every row.
    pub overall: McFigures,
    /// Per group (`group_by`; empty without one).
    pub by_group: BTreeMap<String, McFigures>,
}

fn figures(rows: &[&McRecord], level: f64) -> McFigures {
    let count = |f: fn(&McRecord) -> f64| rows.iter().filter(|r| f(r) > 0.5).count();
    let mass: Vec<f64> = rows.iter().map(|r| r.mass).collect();
    let mut m = Summary::of(&mass, level);
    m.ci_low = m.ci_low.max(0.0);
    m.ci_high = m.ci_high.min(1.0);
    McFigures {
        n: rows.len(),
        acc: Share::of(count(|r| r.acc), rows.len(), level),
        acc_norm: Share::of(count(|r| r.acc_norm), rows.len(), level),
        mass: m,
        chance: rows
            .iter()
            .map(|r| r.gold.len() as f64 / r.lls.len() as f64)
            .sum::<f64>()
            / rows.len().max(1) as f64,
    }
}

/// A model's records summarised at confidence `level`.
pub fn summarize(records: &[McRecord], level: f64) -> McSummary {
    let all: Vec<&McRecord> = records.iter().collect();
    let grouped = records.iter().any(|r| !r.group.is_empty());
    McSummary {
        overall: figures(&all, level),
        by_group: if grouped {
            crate::stats::by_group(records, |r| &r.group, |rs| figures(rs, level))
        } else {
            BTreeMap::new()
        },
    }
}

/// A metric's value on a record.
pub fn metric(r: &McRecord, name: &str) -> f64 {
    match name {
        "acc" => r.acc,
        "acc_norm" => r.acc_norm,
        _ => r.mass,
    }
}

/// A trained model against the base model on one metric, row by row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Paired {
    /// Mean of (model - base) with a Student-t interval.
    pub difference: Summary,
    /// McNemar's exact p-value (0/1 metrics; none for `mass`).
    pub mcnemar_p: Option<f64>,
}

/// Per metric of `metrics`, `model`'s records against `base`'s (the same rows, in order), each
/// record's value of a metric from `value`; McNemar's p for the metrics `binary` names.
pub fn against_base<R>(
    model: &[R],
    base: &[R],
    metrics: &[String],
    value: impl Fn(&R, &str) -> f64,
    binary: impl Fn(&str) -> bool,
    level: f64,
) -> BTreeMap<String, Paired> {
    metrics
        .iter()
        .map(|m| {
            let a: Vec<f64> = model.iter().map(|r| value(r, m)).collect();
            let b: Vec<f64> = base.iter().map(|r| value(r, m)).collect();
            let p = binary(m).then(|| {
                let t = |x: &[f64]| x.iter().map(|v| *v > 0.5).collect::<Vec<_>>();
                mcnemar(&t(&a), &t(&b))
            });
            (
                m.clone(),
                Paired {
                    difference: paired_difference(&a, &b, level),
                    mcnemar_p: p,
                },
            )
        })
        .collect()
}
