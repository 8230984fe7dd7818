//! Generation: an answer after each row's prompt (greedy or sampled, cut at stop strings),
//! scored against the row's reference answers: exact match (after trimming; case ignored when
//! the task says so), and the highest ROUGE-L and BLEU to a correct reference (to an incorrect
//! one too, and the difference, when the task gives incorrect references).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::mc::ScoreError;
use super::{Doc, Task, TaskError};
use crate::generation::{AnswerScores, Question, bleu, cosine, rouge_l};
use crate::lm::{Embedder, GenerationOptions, Generator};
use crate::stats::Summary;
use crate::suite::{ChatAndEmbedder, ChatOrEmbedError};

/// Answers are generated in batches of this many rows.
const BATCH: usize = 8;

/// One row's answer and its reference metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenRecord {
    /// The row's id.
    pub id: String,
    /// Its position in the data file.
    pub index: usize,
    /// Its group.
    pub group: String,
    /// The answer.
    pub answer: String,
    /// Words in the answer.
    pub words: usize,
    /// 1 when the answer equals a correct reference.
    pub exact_match: f64,
    /// Highest ROUGE-L to a correct reference.
    pub rouge_l: f64,
    /// Highest BLEU to a correct reference.
    pub bleu: f64,
    /// Highest ROUGE-L to an incorrect reference (with incorrect references).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rouge_l_incorrect: Option<f64>,
    /// Highest BLEU to an incorrect reference (with incorrect references).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bleu_incorrect: Option<f64>,
    /// Highest sentence-encoder cosine to a correct reference.
    pub cos: f64,
    /// Highest cosine to an incorrect reference (with incorrect references).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cos_incorrect: Option<f64>,
}

impl GenRecord {
    /// The record as the pairwise judges take answers (TruthfulQA's answer scores; the group
    /// as the category, a missing incorrect reference as similarity 0).
    pub fn answer_scores(&self) -> AnswerScores {
        let (ri, bi, ci) = (
            self.rouge_l_incorrect.unwrap_or(0.0),
            self.bleu_incorrect.unwrap_or(0.0),
            self.cos_incorrect.unwrap_or(0.0),
        );
        AnswerScores {
            id: self.index,
            kind: String::new(),
            category: self.group.clone(),
            question: self.id.clone(),
            answer: self.answer.clone(),
            words: self.words,
            rouge_l_correct: self.rouge_l,
            rouge_l_incorrect: ri,
            rouge_l_diff: self.rouge_l - ri,
            bleu_correct: self.bleu,
            bleu_incorrect: bi,
            bleu_diff: self.bleu - bi,
            cos_correct: self.cos,
            cos_incorrect: ci,
            cos_diff: self.cos - ci,
            acc: if self.cos > ci { 1.0 } else { 0.0 },
        }
    }
}

/// The task's rows as the pairwise judges see them: the question as `doc_to_text` renders it
/// (without the examples), and the references.
pub fn questions(task: &Task) -> Result<Vec<Question>, TaskError> {
    task.docs
        .iter()
        .map(|d| {
            Ok(Question {
                id: d.index,
                text: task.prompt(d)?.1,
                correct: d.references.clone(),
                incorrect: d.incorrect.clone(),
            })
        })
        .collect()
}

/// The options of `task`'s answers.
pub fn options(task: &Task) -> GenerationOptions {
    let f = &task.file;
    GenerationOptions {
        chat: f.chat,
        max_new_tokens: f.max_new_tokens,
        temperature: f.temperature,
        top_p: f.top_p,
        seed: f.seed,
        until: f.until.clone(),
    }
}

/// Reference metrics of `answer` to `doc`, with the embeddings of the answer and of the
/// references (correct, then incorrect).
pub fn record(
    doc: &Doc,
    answer: &str,
    ignore_case: bool,
    answer_embedding: &[f32],
    reference_embeddings: &[Vec<f32>],
) -> GenRecord {
    let best = |refs: &[String], f: fn(&str, &str) -> f64| {
        refs.iter()
            .map(|r| f(r, answer))
            .filter(|x| x.is_finite())
            .fold(0.0, f64::max)
    };
    let norm = |s: &str| {
        let t = s.trim();
        if ignore_case {
            t.to_lowercase()
        } else {
            t.to_owned()
        }
    };
    let a = norm(answer);
    let has_incorrect = !doc.incorrect.is_empty();
    let (ec, ei) =
        reference_embeddings.split_at(doc.references.len().min(reference_embeddings.len()));
    let cos = |es: &[Vec<f32>]| {
        es.iter()
            .map(|e| cosine(answer_embedding, e))
            .fold(0.0, f64::max)
    };
    GenRecord {
        id: doc.id.clone(),
        index: doc.index,
        group: doc.group.clone(),
        answer: answer.to_owned(),
        words: answer.split_whitespace().count(),
        exact_match: if doc.references.iter().any(|r| norm(r) == a) {
            1.0
        } else {
            0.0
        },
        rouge_l: best(&doc.references, rouge_l),
        bleu: best(&doc.references, bleu),
        rouge_l_incorrect: has_incorrect.then(|| best(&doc.incorrect, rouge_l)),
        bleu_incorrect: has_incorrect.then(|| best(&doc.incorrect, bleu)),
        cos: cos(ec),
        cos_incorrect: has_incorrect.then(|| cos(ei)),
    }
}

/// Why generating, embedding or rendering failed.
pub type GenError<G, E> = ScoreError<ChatOrEmbedError<G, E>>;

/// Answers to `docs` of `task` under `m.chat`, in batches, embedded with `m.embedder` beside
/// the references; `on_item` after each row.
pub fn evaluate<G: Generator, E: Embedder>(
    m: &mut ChatAndEmbedder<'_, G, E>,
    task: &Task,
    docs: &[Doc],
    mut on_item: impl FnMut(),
) -> Result<Vec<GenRecord>, GenError<G::Error, E::Error>> {
    let model = |e| ScoreError::Model(ChatOrEmbedError::Chat(e));
    let embed = |e| ScoreError::Model(ChatOrEmbedError::Embed(e));
    let mut opts = options(task);
    let seed = opts.seed;
    let mut out = Vec::with_capacity(docs.len());
    for (b, chunk) in docs.chunks(BATCH).enumerate() {
        let prompts = chunk
            .iter()
            .map(|d| task.prompt(d).map(|(p, q)| p + &q))
            .collect::<Result<Vec<_>, _>>()?;
        // Each batch draws from its own stream: answers do not depend on earlier batches.
        opts.seed = seed.wrapping_add(b as u64);
        let answers = m.chat.generate(&prompts, &opts).map_err(model)?;
        // The answers and every row's references (correct, then incorrect) in one call.
        let mut texts = answers.clone();
        for d in chunk {
            texts.extend(d.references.iter().chain(&d.incorrect).cloned());
        }
        let mut embs = m.embedder.embed(&texts).map_err(embed)?.into_iter();
        let answer_embs: Vec<Vec<f32>> = embs.by_ref().take(answers.len()).collect();
        for ((d, a), e) in chunk.iter().zip(&answers).zip(&answer_embs) {
            let refs: Vec<Vec<f32>> = embs
                .by_ref()
                .take(d.references.len() + d.incorrect.len())
                .collect();
            out.push(record(d, a, task.file.ignore_case, e, &refs));
            on_item();
        }
    }
    Ok(out)
}

/// One model's figures on a generation task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenFigures {
    /// Rows.
    pub n: usize,
    /// Share of exact matches with a Student-t interval.
    pub exact_match: Summary,
    /// Mean ROUGE-L to a correct reference.
    pub rouge_l: Summary,
    /// Mean BLEU to a correct reference.
    pub bleu: Summary,
    /// Mean ROUGE-L margin (correct minus incorrect), with incorrect references.
    pub rouge_l_diff: Option<Summary>,
    /// Mean words per answer.
    pub words: Summary,
}

/// A model's figures, overall and per group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenSummary {
    /// Over every row.
    pub overall: GenFigures,
    /// Per group.
    pub by_group: BTreeMap<String, GenFigures>,
}

fn figures(rows: &[&GenRecord], level: f64) -> GenFigures {
    let of = |f: &dyn Fn(&GenRecord) -> f64| {
        Summary::of(&rows.iter().map(|r| f(r)).collect::<Vec<_>>(), level)
    };
    let diffs: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.rouge_l_incorrect.map(|i| r.rouge_l - i))
        .collect();
    GenFigures {
        n: rows.len(),
        exact_match: of(&|r| r.exact_match),
        rouge_l: of(&|r| r.rouge_l),
        bleu: of(&|r| r.bleu),
        rouge_l_diff: (!diffs.is_empty()).then(|| Summary::of(&diffs, level)),
        words: of(&|r| r.words as f64),
    }
}

/// A model's records summarised at confidence `level`.
pub fn summarize(records: &[GenRecord], level: f64) -> GenSummary {
    let all: Vec<&GenRecord> = records.iter().collect();
    GenSummary {
        overall: figures(&all, level),
        by_group: if records.iter().any(|r| !r.group.is_empty()) {
            crate::stats::by_group(records, |r| &r.group, |rs| figures(rs, level))
        } else {
            BTreeMap::new()
        },
    }
}

/// A metric's value on a record.
pub fn metric(r: &GenRecord, name: &str) -> f64 {
    match name {
        "exact_match" => r.exact_match,
        "rouge_l" => r.rouge_l,
        _ => r.bleu,
    }
}
