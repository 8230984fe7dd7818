//! The evaluation after training: every model (the base model, and the base with each trained
//! variant's adapters) scored on each suite an experiment names, its per-item records cached in
//! `<dir>/eval/<model>/<suite>.jsonl` (a resumed run scores nothing twice), then summarised
//! through `fpo_eval::evaluation`. The judges are not here: `fpo_judge::comparisons` compares
//! the answers this returns. Weights load only when a record is missing ([`Weights`]).

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fpo_eval::evaluation::{Evaluation, score_across_seeds, score_mc};
use fpo_eval::generation::{AnswerScores, OFFLINE_MARGIN, references, summarize_answers};
use fpo_eval::judge_exam::{ExamAnswer, ExamQuestion, exam, offline_answers};
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

/// What an evaluation reads, and nothing else: the base weights (4-bit blocks on a CPU backend,
/// for sampling and scoring) and the sentence encoder. Neither the reward model's head nor the
/// trainer's f32 copy of the weights is loaded (an evaluation of the base model alone, as a
/// sweep's base cell runs it, needs neither).
pub fn load_models(
    cfg: &super::TrainConfig,
    backend: fpo_model::BackendKind,
) -> Result<(LoadedModel, SentenceEncoder)> {
    let model = LoadedModel::load(&cfg.model, backend, false)?;
    let encoder = SentenceEncoder::load(&cfg.rm.encoder, &fpo_model::device(backend, false)?)?;
    Ok((model, encoder))
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
    /// The exam the judges sit, built from the questions' references (`judge_exam::exam`).
    pub exam: Vec<ExamQuestion>,
    /// The offline judge's answers to it (`eval/exam/offline.jsonl`).
    pub offline_exam: Vec<ExamAnswer>,
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

/// What computes one model's records: the base weights, the model's adapters (none: the base
/// model), the encoder of generated answers.
pub type Bound<'m> = (&'m LoadedModel, Option<&'m Adapters>, &'m SentenceEncoder);

/// The records of `task` under the model `load` gives (called only when the records are not
/// cached), cached in `dir/task-<name>.jsonl`, added to `into` under `name`.
pub fn score_task<'m>(
    task: &Task,
    load: &dyn Fn() -> Result<Bound<'m>>,
    dir: &Path,
    name: &str,
    into: &mut TaskRecords,
    progress: &mut dyn Progress,
) -> Result<()> {
    let file = records_file(&task_records_name(task));
    match into {
        TaskRecords::Mc(models) => {
            let s = McTaskSuite { task };
            let rows = cached(dir, &file, task.docs.len(), || {
                let (model, adapters, _) = load()?;
                let mut lm = ModelLm::new(model, adapters);
                run_suite(&s, &mut lm, name, progress).map_err(task_error)
            })?;
            models.push((name.to_owned(), rows));
        }
        TaskRecords::Gen(models) => {
            let s = GenTaskSuite { task };
            let rows = cached(dir, &file, task.docs.len(), || {
                let (model, adapters, encoder) = load()?;
                let mut m = ChatAndEmbedder {
                    chat: &mut ModelLm::new(model, adapters),
                    embedder: &mut EncoderEmbedder::new(encoder, ENCODER_TOKENS),
                };
                run_suite(&s, &mut m, name, progress).map_err(task_error)
            })?;
            models.push((name.to_owned(), rows));
        }
    }
    Ok(())
}

/// The weights an evaluation computes with: given loaded, or loaded from the files when a
/// record is first computed, so that a run whose records are all there (the merge of a sweep's
/// cells) loads no weights and needs no device.
pub enum Weights<'a> {
    /// Loaded by the caller.
    Given(&'a LoadedModel, &'a SentenceEncoder),
    /// The model and encoder files of a `[train]` section, on a backend, and what they load to.
    Files(
        &'a super::TrainConfig,
        fpo_model::BackendKind,
        OnceCell<Box<(LoadedModel, SentenceEncoder)>>,
    ),
}

impl std::fmt::Debug for Weights<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Given(..) => f.write_str("Weights::Given"),
            Self::Files(cfg, backend, loaded) => f
                .debug_struct("Weights::Files")
                .field("model", &cfg.model)
                .field("backend", backend)
                .field("loaded", &loaded.get().is_some())
                .finish(),
        }
    }
}

impl<'a> Weights<'a> {
    /// Weights loaded already.
    pub fn loaded(model: &'a LoadedModel, encoder: &'a SentenceEncoder) -> Self {
        Self::Given(model, encoder)
    }

    /// The model and encoder files of `cfg`, loaded on `backend` when first needed
    /// ([`load_models`]).
    pub fn on_demand(cfg: &'a super::TrainConfig, backend: fpo_model::BackendKind) -> Self {
        Self::Files(cfg, backend, OnceCell::new())
    }

    /// The weights, loading them if needed.
    pub fn get(&self) -> Result<(&LoadedModel, &SentenceEncoder)> {
        match self {
            Self::Given(model, encoder) => Ok((*model, *encoder)),
            Self::Files(cfg, backend, loaded) => {
                if loaded.get().is_none() {
                    let _ = loaded.set(Box::new(load_models(cfg, *backend)?));
                }
                let (model, encoder) = &**loaded.get().expect("loaded");
                Ok((model, encoder))
            }
        }
    }
}

/// One model of an evaluation: the weights and its adapters, loaded when first needed.
struct Scorer<'a> {
    weights: &'a Weights<'a>,
    adapters: Option<&'a Path>,
    loaded: OnceCell<Option<Adapters>>,
}

impl Scorer<'_> {
    fn get(&self) -> Result<Bound<'_>> {
        let (model, encoder) = self.weights.get()?;
        if self.loaded.get().is_none() {
            let device = model.model.device();
            let adapters = self
                .adapters
                .map(|p| Adapters::load(p, &model.config, device).map(|a| a.0))
                .transpose()?;
            let _ = self.loaded.set(adapters);
        }
        Ok((model, self.loaded.get().expect("loaded").as_ref(), encoder))
    }
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

/// The offline judge's answers to `exam`, built from `items`, their references embedded with
/// `encoder`.
pub fn offline_exam(
    encoder: &SentenceEncoder,
    items: &[Item],
    exam: &[ExamQuestion],
) -> Result<Vec<ExamAnswer>> {
    let emb = reference_embeddings(encoder, items)?;
    Ok(offline_answers(exam, items, &emb, OFFLINE_MARGIN))
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

/// Scores every model of `models` on the suites of `plan` with `weights` (the base weights,
/// and the encoder of the answers' embeddings; loaded only if a record is missing), into
/// `dir/eval/<model>/`: MC1/MC2 (`mc.jsonl`), greedy answers with their reference metrics
/// (`answers.jsonl`), pressure margins and answers (`pressure.jsonl`,
/// `answers_pressure.jsonl`), Anthropic's sycophancy items (`sycophancy.jsonl`), the task files
/// (`task-<name>.jsonl`).
pub fn score_models(
    weights: &Weights,
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
    // The references' embeddings, computed when a model's answers are not cached yet (a run
    // whose records are all there, as a merge of a sweep's cells, embeds nothing).
    let ref_embeddings = OnceCell::new();
    let with_references = |s: &AnswersSuite| -> Result<AnswersSuite> {
        let emb = match ref_embeddings.get() {
            Some(e) => e,
            None => {
                let e = reference_embeddings(weights.get()?.1, items)?;
                ref_embeddings.get_or_init(|| e)
            }
        };
        Ok(AnswersSuite {
            reference_embeddings: emb.clone(),
            ..s.clone()
        })
    };
    let mc_suite = m.mc.then(|| McSuite {
        items: items.clone(),
        format: McFormat::Harness,
    });
    let answers_suite = |under_pressure| AnswersSuite {
        items: items.clone(),
        reference_embeddings: Vec::new(),
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
        let scorer = Scorer {
            weights,
            adapters: entry.adapters.as_deref(),
            loaded: OnceCell::new(),
        };
        let eval_dir = dir.join("eval").join(name);
        let lm = || -> Result<ModelLm> {
            let (model, adapters, _) = scorer.get()?;
            Ok(ModelLm::new(model, adapters))
        };
        if let Some(s) = &mc_suite {
            let file = records_file(Suite::<ModelLm>::name(s));
            let rows = cached(&eval_dir, &file, Suite::<ModelLm>::len(s), || {
                Ok(run_suite(s, &mut lm()?, name, progress)?)
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
                    let s = with_references(s)?;
                    let (model, adapters, encoder) = scorer.get()?;
                    answers(&s, model, adapters, encoder, name, progress)
                })?;
                into.insert(name.clone(), rows);
            }
        }
        if let Some(s) = &pressure_suite {
            let file = records_file(Suite::<ModelLm>::name(s));
            let rows = cached(&eval_dir, &file, Suite::<ModelLm>::len(s), || {
                Ok(run_suite(s, &mut lm()?, name, progress)?)
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
                Ok(run_suite(s, &mut lm()?, name, progress)?)
            })?;
            out.evaluation
                .sycophancy
                .insert(name.clone(), Suite::<ModelLm>::summarize(s, &rows, level));
        }
        for (task, into) in plan.tasks.iter().zip(&mut tasks) {
            score_task(task, &|| scorer.get(), &eval_dir, name, into, progress)?;
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
    if m.answers {
        // The offline judge's exam: the references' embeddings, already there when a model's
        // answers were scored here; a run whose records are all there embeds nothing.
        out.exam = exam(items);
        out.offline_exam = cached(
            &dir.join("eval").join("exam"),
            "offline.jsonl",
            out.exam.len(),
            || {
                Ok(match ref_embeddings.get() {
                    Some(emb) => offline_answers(&out.exam, items, emb, OFFLINE_MARGIN),
                    None => offline_exam(weights.get()?.1, items, &out.exam)?,
                })
            },
        )?;
    }
    Ok(out)
}
