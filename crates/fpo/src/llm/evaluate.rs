//! The evaluation after training: every model (the base model, and the base with each trained
//! variant's adapters) scored on each suite an experiment names, its per-item records cached in
//! `<dir>/eval/<model>/<suite>.jsonl` (a resumed run scores nothing twice), then summarised
//! through `fpo_eval::evaluation`. The LLM judge is not here: it is the runner's, over the
//! answers this returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fpo_eval::evaluation::{Evaluation, score_across_seeds, score_mc};
use fpo_eval::generation::{AnswerScores, references, summarize_answers};
use fpo_eval::lm::Embedder;
use fpo_eval::suite::{
    AnswersSuite, ChatAndEmbedder, ChatOrEmbedError, GenTaskSuite, McSuite, McTaskSuite,
    PressureSuite, Suite, SycophancySuite, task_records_name,
};
use fpo_eval::sycophancy::SycophancyItem;
use fpo_eval::task::summary::TaskRecords;
use fpo_eval::task::{OutputType, Task};
use fpo_eval::truthfulqa::{Item, McFormat, McResult};
use fpo_model::encoder::SentenceEncoder;
use fpo_model::llm::{Adapters, LlmError, LoadedModel};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::checkpoint::{io, write_atomic};
use super::lm::{EncoderEmbedder, ModelLm};
use crate::penalty::Variant;
use crate::{Error, Result};

/// Tokens of a reference answer the encoder reads.
const ENCODER_TOKENS: usize = 128;

/// What the answers suites run under: the policy as a chat model, the encoder for the answers.
type Answerer<'a> = ChatAndEmbedder<'a, ModelLm<'a>, EncoderEmbedder<'a>>;

/// The file a suite's records go to.
fn records_file(suite: &str) -> String {
    format!("{suite}.jsonl")
}

/// Which suites run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// TruthfulQA MC1/MC2 (lm-evaluation-harness prompt).
    pub mc: bool,
    /// Greedy answers against the reference answers (`gen`).
    pub answers: bool,
    /// Anthropic's A/B sycophancy items.
    pub syco: bool,
    /// Sycophancy under pressure (with `answers`, the answers under pressure too).
    pub pressure: bool,
}

/// What an evaluation scores.
#[derive(Debug)]
pub struct Plan {
    /// TruthfulQA items.
    pub items: Vec<Item>,
    /// Anthropic A/B sycophancy items (with `metrics.syco`).
    pub sycophancy: Vec<SycophancyItem>,
    /// The suites.
    pub metrics: Metrics,
    /// Task files (`[eval] tasks`), their rows loaded.
    pub tasks: Vec<Task>,
    /// Confidence level of every interval.
    pub level: f64,
}

/// One model to score: a name in the evaluation and its adapters (none: the base model).
#[derive(Debug, Clone)]
pub struct Model {
    /// `base` or `<variant>-seed<k>`.
    pub name: String,
    /// Its `adapters.safetensors`.
    pub adapters: Option<PathBuf>,
    /// The trained (variant, seed), for the figures across seeds.
    pub trained: Option<(Variant, u64)>,
}

/// What a long step reports while it runs (a progress bar in the binary).
pub trait Progress {
    /// A step of `len` items begins.
    fn start(&mut self, label: &str, len: usize);
    /// One item is done.
    fn tick(&mut self);
    /// The step is done.
    fn finish(&mut self);
}

/// The scored evaluation, and the greedy answers (plain and under pressure) per model, for the
/// judges.
#[derive(Debug, Clone, Default)]
pub struct Scored {
    /// Everything but the comparisons.
    pub evaluation: Evaluation,
    /// Answers to the plain questions, per model.
    pub answers: BTreeMap<String, Vec<AnswerScores>>,
    /// Answers under pressure, per model.
    pub pressured: BTreeMap<String, Vec<AnswerScores>>,
    /// Each generation task's answers per model, as the pairwise judges take them.
    pub task_answers: BTreeMap<String, BTreeMap<String, Vec<AnswerScores>>>,
}

fn task_error<E: std::error::Error + Into<Error>>(e: fpo_eval::task::mc::ScoreError<E>) -> Error {
    match e {
        fpo_eval::task::mc::ScoreError::Task(e) => Error::Task(e),
        fpo_eval::task::mc::ScoreError::Model(e) => e.into(),
    }
}

impl From<ChatOrEmbedError<LlmError, LlmError>> for Error {
    fn from(e: ChatOrEmbedError<LlmError, LlmError>) -> Self {
        chat_or_embed(e)
    }
}

/// The records of `task` under `model` (+ `adapters`; `encoder` embeds generated answers),
/// cached in `dir/task-<name>.jsonl`, added to `into` under `name`.
#[allow(clippy::too_many_arguments)]
pub fn score_task(
    task: &Task,
    model: &LoadedModel,
    adapters: Option<&Adapters>,
    encoder: &SentenceEncoder,
    dir: &Path,
    name: &str,
    into: &mut TaskRecords,
    progress: &mut dyn Progress,
) -> Result<()> {
    let file = records_file(&task_records_name(task));
    let mut lm = ModelLm::new(model, adapters);
    match into {
        TaskRecords::Mc(models) => {
            let s = McTaskSuite { task };
            let rows = cached(dir, &file, task.docs.len(), || {
                run_suite(&s, &mut lm, name, progress).map_err(task_error)
            })?;
            models.push((name.to_owned(), rows));
        }
        TaskRecords::Gen(models) => {
            let s = GenTaskSuite { task };
            let mut embedder = EncoderEmbedder::new(encoder, ENCODER_TOKENS);
            let mut m = ChatAndEmbedder {
                chat: &mut lm,
                embedder: &mut embedder,
            };
            let rows = cached(dir, &file, task.docs.len(), || {
                run_suite(&s, &mut m, name, progress).map_err(task_error)
            })?;
            models.push((name.to_owned(), rows));
        }
    }
    Ok(())
}

/// The task files of an experiment's `[eval]`, their rows read from `data_dir`.
pub fn load_tasks(eval: &crate::experiment::LlmEval, data_dir: &Path) -> Result<Vec<Task>> {
    let limit = (eval.task_limit > 0).then_some(eval.task_limit);
    Ok(eval
        .tasks
        .iter()
        .map(|t| Task::load(t, data_dir, limit))
        .collect::<std::result::Result<_, _>>()?)
}

/// No records yet, of the task's kind.
pub fn task_records(task: &Task) -> TaskRecords {
    match task.file.output_type {
        OutputType::MultipleChoice => TaskRecords::Mc(Vec::new()),
        OutputType::GenerateUntil => TaskRecords::Gen(Vec::new()),
    }
}

fn chat_or_embed(e: ChatOrEmbedError<LlmError, LlmError>) -> Error {
    match e {
        ChatOrEmbedError::Chat(e) | ChatOrEmbedError::Embed(e) => Error::Model(e),
    }
}

/// The records of `suite` under `model`, reporting each item to `progress`.
pub fn run_suite<M, S: Suite<M>>(
    suite: &S,
    model: &mut M,
    label: &str,
    progress: &mut dyn Progress,
) -> std::result::Result<Vec<S::Record>, S::Error> {
    progress.start(&format!("{label}: {}", suite.name()), suite.len());
    let rows = suite.records(model, &mut || progress.tick());
    progress.finish();
    rows
}

/// The embeddings of every item's reference answers (correct, then incorrect).
pub fn reference_embeddings(
    encoder: &SentenceEncoder,
    items: &[Item],
) -> Result<Vec<Vec<Vec<f32>>>> {
    let mut emb = EncoderEmbedder::new(encoder, ENCODER_TOKENS);
    Ok(items
        .iter()
        .map(|it| {
            let (c, i) = references(it);
            emb.embed(&[c, i].concat())
        })
        .collect::<std::result::Result<_, _>>()?)
}

/// Greedy answers to the suite's messages under `model` (+ `adapters`), scored against the
/// references with `encoder`.
pub fn answers(
    suite: &AnswersSuite,
    model: &LoadedModel,
    adapters: Option<&Adapters>,
    encoder: &SentenceEncoder,
    label: &str,
    progress: &mut dyn Progress,
) -> Result<Vec<AnswerScores>> {
    let mut chat = ModelLm::new(model, adapters);
    let mut embedder = EncoderEmbedder::new(encoder, ENCODER_TOKENS);
    let mut m = ChatAndEmbedder {
        chat: &mut chat,
        embedder: &mut embedder,
    };
    run_suite(suite, &mut m, label, progress).map_err(chat_or_embed)
}

/// Rows of `dir/name` (JSON lines) when the file holds `n` of them; otherwise computes and
/// writes them (so a resumed run does not score twice).
fn cached<T: Serialize + DeserializeOwned>(
    dir: &Path,
    name: &str,
    n: usize,
    compute: impl FnOnce() -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    let path = dir.join(name);
    if path.is_file() {
        let rows: Vec<T> = fpo_rundir::read_jsonl(&path)?;
        if rows.len() == n {
            return Ok(rows);
        }
    }
    let rows = compute()?;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    write_atomic(&path, &fpo_rundir::to_jsonl(&rows)?)?;
    Ok(rows)
}

/// Scores every model of `models` on the suites of `plan` with `model` (the base weights) and
/// `encoder` (the answers' embeddings), into `dir/eval/<model>/`: MC1/MC2 (`mc.jsonl`), greedy
/// answers with their reference metrics (`answers.jsonl`), pressure margins and answers
/// (`pressure.jsonl`, `answers_pressure.jsonl`), Anthropic's sycophancy items
/// (`sycophancy.jsonl`).
pub fn score_models(
    model: &LoadedModel,
    encoder: &SentenceEncoder,
    models: &[Model],
    plan: &Plan,
    dir: &Path,
    progress: &mut dyn Progress,
) -> Result<Scored> {
    let m = plan.metrics;
    let level = plan.level;
    let mut out = Scored::default();
    out.evaluation.questions = plan.items.len();
    out.evaluation.sycophancy_items = plan.sycophancy.len();
    let items = &plan.items;
    let ref_embeddings = if m.answers {
        reference_embeddings(encoder, items)?
    } else {
        Vec::new()
    };
    let mc_suite = m.mc.then(|| McSuite {
        items: items.clone(),
        format: McFormat::Harness,
    });
    let answers_suite = |under_pressure| AnswersSuite {
        items: items.clone(),
        reference_embeddings: ref_embeddings.clone(),
        under_pressure,
    };
    let plain_answers = m.answers.then(|| answers_suite(false));
    let pressured_answers = (m.answers && m.pressure).then(|| answers_suite(true));
    let pressure_suite = m.pressure.then(|| PressureSuite {
        items: items.clone(),
    });
    let syco_suite = m.syco.then(|| SycophancySuite {
        items: plan.sycophancy.clone(),
    });
    let mut mcs: Vec<(String, Vec<McResult>)> = Vec::new();
    let mut tasks: Vec<TaskRecords> = plan.tasks.iter().map(task_records).collect();
    for entry in models {
        let name = &entry.name;
        let adapters = entry
            .adapters
            .as_deref()
            .map(|p| Adapters::load(p, &model.config, model.model.device()).map(|a| a.0))
            .transpose()?;
        let eval_dir = dir.join("eval").join(name);
        let lm = || ModelLm::new(model, adapters.as_ref());
        if let Some(s) = &mc_suite {
            let file = records_file(Suite::<ModelLm>::name(s));
            let rows = cached(&eval_dir, &file, Suite::<ModelLm>::len(s), || {
                Ok(run_suite(s, &mut lm(), name, progress)?)
            })?;
            mcs.push((name.clone(), rows));
        }
        for (suite, into) in [
            (&plain_answers, &mut out.answers),
            (&pressured_answers, &mut out.pressured),
        ] {
            if let Some(s) = suite {
                let file = records_file(Suite::<Answerer>::name(s));
                let rows = cached(&eval_dir, &file, Suite::<Answerer>::len(s), || {
                    answers(s, model, adapters.as_ref(), encoder, name, progress)
                })?;
                into.insert(name.clone(), rows);
            }
        }
        if let Some(s) = &pressure_suite {
            let file = records_file(Suite::<ModelLm>::name(s));
            let rows = cached(&eval_dir, &file, Suite::<ModelLm>::len(s), || {
                Ok(run_suite(s, &mut lm(), name, progress)?)
            })?;
            if !rows.is_empty() {
                out.evaluation
                    .pressure
                    .insert(name.clone(), Suite::<ModelLm>::summarize(s, &rows, level));
            }
        }
        if let Some(s) = &syco_suite {
            let file = records_file(Suite::<ModelLm>::name(s));
            let rows = cached(&eval_dir, &file, Suite::<ModelLm>::len(s), || {
                Ok(run_suite(s, &mut lm(), name, progress)?)
            })?;
            out.evaluation
                .sycophancy
                .insert(name.clone(), Suite::<ModelLm>::summarize(s, &rows, level));
        }
        for (task, into) in plan.tasks.iter().zip(&mut tasks) {
            let a = adapters.as_ref();
            score_task(task, model, a, encoder, &eval_dir, name, into, progress)?;
        }
    }
    let trained: Vec<(Variant, u64)> = models.iter().filter_map(|m| m.trained).collect();
    for (task, records) in plan.tasks.iter().zip(&tasks) {
        let t = fpo_eval::task::summary::evaluate(task, records, &trained, level);
        out.evaluation.tasks.insert(task.name().to_owned(), t);
        if let TaskRecords::Gen(models) = records {
            let answers = models
                .iter()
                .map(|(m, rows)| (m.clone(), rows.iter().map(|r| r.answer_scores()).collect()))
                .collect();
            out.task_answers.insert(task.name().to_owned(), answers);
        }
    }
    let ev = &mut out.evaluation;
    score_mc(ev, &mcs, level);
    ev.generation = out
        .answers
        .iter()
        .map(|(name, rows)| (name.clone(), summarize_answers(rows, level)))
        .collect();
    ev.pressure_generation = out
        .pressured
        .iter()
        .map(|(name, rows)| (name.clone(), summarize_answers(rows, level)))
        .collect();
    score_across_seeds(ev, &trained, level);
    Ok(out)
}
