//! Benchmarks declared by a TOML file over a data file, without Rust: multiple choice by
//! likelihood (`acc`, `acc_norm`, the true answers' mass) and generation (exact match, ROUGE-L,
//! BLEU against reference answers). The fields follow lm-evaluation-harness's task YAML
//! (`doc_to_text`, `doc_to_choice`, `doc_to_target`, `target_delimiter`, `fewshot_delimiter`,
//! `description`, `num_fewshot`), with templates rendered by minijinja over each data row.
//! `docs/tasks.md` is the reference.
//!
//! - [`data`]: the rows (JSON lines, a JSON array or CSV) and dotted field paths.
//! - [`mc`]: multiple choice: the requests, per-item records, summaries, paired differences.
//! - [`generation`]: generation: prompts, per-item records and summaries.
//! - [`summary`]: a task across the models of an evaluation (paired differences, seeds).

pub mod data;
pub mod generation;
pub mod mc;
pub mod summary;

use std::path::{Path, PathBuf};

use minijinja::Value;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use data::{field, index, text, texts};

/// An error reading or applying a task file.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A file that could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A task file whose TOML does not parse or does not fit the schema.
    #[error("{path}: {message}")]
    File {
        /// The task file.
        path: PathBuf,
        /// What is wrong (the key, as TOML's parser names it).
        message: String,
    },
    /// A data row that does not fit the task (line 0: the file as a whole).
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The data file.
        path: PathBuf,
        /// 1-based line or record.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A template that does not parse, or does not render on a row.
    #[error("{path}: `{key}`{}: {source}", row.map(|r| format!(" on data row {r}")).unwrap_or_default())]
    Template {
        /// The task file.
        path: PathBuf,
        /// The template's key.
        key: String,
        /// The 1-based data row it failed on (none: it does not parse).
        row: Option<usize>,
        /// minijinja's error.
        source: minijinja::Error,
    },
}

/// What a task asks of the model (lm-evaluation-harness's `output_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputType {
    /// Each choice scored by its log-likelihood after the context.
    MultipleChoice,
    /// An answer generated after the prompt, scored against reference answers.
    GenerateUntil,
}

/// The choices of a multiple-choice row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Choices {
    /// A field holding a list of choices, or an object of choice -> 0/1 label (TruthfulQA's
    /// `mc_task.json`; the labels then give the gold and `doc_to_target` is left out).
    Field(String),
    /// One template per choice, rendered on the row (MMLU's `["A", "B", "C", "D"]`).
    Templates(Vec<String>),
}

/// How few-shot examples are drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    /// The first `num_fewshot` rows of the pool (lm-evaluation-harness's `first_n`, MMLU's).
    #[default]
    FirstN,
    /// `num_fewshot` rows drawn without replacement, seeded by `fewshot_seed` and the row's
    /// position (deterministic; not lm-evaluation-harness's random stream).
    Random,
}

/// The paper's figures for a task, set beside ours in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    /// The metric they report (`acc`, `acc_norm`, `mass`, ...).
    pub metric: String,
    /// Where the figures come from.
    pub source: String,
    /// Per variant (`standard`, `practical`, `relaxed`) or `base`.
    pub values: std::collections::BTreeMap<String, f64>,
}

fn default_target_delimiter() -> String {
    " ".into()
}
fn default_fewshot_delimiter() -> String {
    "\n\n".into()
}
fn default_fewshot_seed() -> u64 {
    1234
}
fn default_max_new_tokens() -> usize {
    64
}
fn default_top_p() -> f64 {
    1.0
}

/// A task file (`experiments/tasks/*.toml`), as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskFile {
    /// The task's name: records go to `task-<name>.jsonl`.
    pub name: String,
    /// Free text: what the task measures, its source and licence.
    #[serde(default)]
    pub about: String,
    /// Multiple choice or generation.
    pub output_type: OutputType,
    /// The rows, relative to the data folder (`$FPO_DATA_DIR`).
    pub data: PathBuf,
    /// Rows the few-shot examples come from (default: `data`, never the row itself).
    #[serde(default)]
    pub fewshot_data: Option<PathBuf>,
    /// Few-shot examples before each row.
    #[serde(default)]
    pub num_fewshot: usize,
    /// How the examples are drawn.
    #[serde(default)]
    pub fewshot_sampler: Sampler,
    /// Only examples whose field of this name equals the row's (MMLU: `subject`).
    #[serde(default)]
    pub fewshot_match: Option<String>,
    /// Seed of the `random` sampler.
    #[serde(default = "default_fewshot_seed")]
    pub fewshot_seed: u64,
    /// Template before the examples (MMLU's subject header).
    #[serde(default)]
    pub description: String,
    /// Template of a row's question.
    pub doc_to_text: String,
    /// The choices (multiple choice).
    #[serde(default)]
    pub doc_to_choice: Option<Choices>,
    /// Field of the gold answer (multiple choice): an index, a list of indices, a letter A-Z,
    /// or a choice's text.
    #[serde(default)]
    pub doc_to_target: Option<String>,
    /// Between the question and an answer (a choice, or an example's target).
    #[serde(default = "default_target_delimiter")]
    pub target_delimiter: String,
    /// Between examples, and after the last one.
    #[serde(default = "default_fewshot_delimiter")]
    pub fewshot_delimiter: String,
    /// What the report shows and compares: `acc`, `acc_norm`, `mass` (multiple choice);
    /// `exact_match`, `rouge_l`, `bleu` (generation).
    pub metrics: Vec<String>,
    /// Field whose values group the figures (and stratify a subset), e.g. `subject`.
    #[serde(default)]
    pub group_by: Option<String>,
    /// Field of a row's id (default: its position).
    #[serde(default)]
    pub id: Option<String>,
    /// Field of the correct reference answers, a list or one string (generation).
    #[serde(default)]
    pub references: Option<String>,
    /// Field of incorrect reference answers (generation; optional).
    #[serde(default)]
    pub incorrect_references: Option<String>,
    /// The prompt as one user message in the model's chat template (generation).
    #[serde(default)]
    pub chat: bool,
    /// New tokens at most (generation).
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// The answer ends before the first of these strings (generation).
    #[serde(default)]
    pub until: Vec<String>,
    /// 0: greedy (generation).
    #[serde(default)]
    pub temperature: f64,
    /// Nucleus mass when sampling (generation).
    #[serde(default = "default_top_p")]
    pub top_p: f64,
    /// Seed of the sampled answers (generation).
    #[serde(default)]
    pub seed: u64,
    /// Exact match ignores case (generation).
    #[serde(default)]
    pub ignore_case: bool,
    /// The paper's figures for this task.
    #[serde(default)]
    pub published: Option<Published>,
}

/// Metrics of multiple-choice tasks.
pub const MC_METRICS: [&str; 3] = ["acc", "acc_norm", "mass"];
/// Metrics of generation tasks.
pub const GEN_METRICS: [&str; 3] = ["exact_match", "rouge_l", "bleu"];

/// One row made ready: its id, group, and (multiple choice) choices and gold indices, or
/// (generation) reference answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// Position in the data file, 0-based.
    pub index: usize,
    /// The id field's value, or the position.
    pub id: String,
    /// The group field's value (empty without `group_by`).
    pub group: String,
    /// The row.
    pub row: Value,
    /// Choices (multiple choice).
    pub choices: Vec<String>,
    /// Indices of the true choices (multiple choice).
    pub gold: Vec<usize>,
    /// Correct references (generation).
    pub references: Vec<String>,
    /// Incorrect references (generation).
    pub incorrect: Vec<String>,
}

/// A task file with its rows, ready to render prompts.
#[derive(Debug)]
pub struct Task {
    /// The file as written.
    pub file: TaskFile,
    /// Where it was read from.
    pub source: PathBuf,
    /// The rows scored, in file order (a stratified subset under a limit).
    pub docs: Vec<Doc>,
    /// Rows in the data file before any limit.
    pub total: usize,
    /// The few-shot pool (the data's own rows when `fewshot_data` is not set).
    pool: Vec<Doc>,
    /// Whether the pool is the scored file itself (a row is never its own example).
    pool_is_data: bool,
    env: minijinja::Environment<'static>,
}

impl Task {
    /// Reads the task file `path`, then its rows from `data_dir`; `limit` rows at most,
    /// stratified by `group_by` (each group in proportion, spread evenly within it).
    pub fn load(path: &Path, data_dir: &Path, limit: Option<usize>) -> Result<Self, TaskError> {
        let bad = |message: String| TaskError::File {
            path: path.to_owned(),
            message,
        };
        let source_text = std::fs::read_to_string(path).map_err(|source| TaskError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file: TaskFile = toml::from_str(&source_text).map_err(|e| bad(e.to_string()))?;
        file.check().map_err(bad)?;
        let mut env = minijinja::Environment::new();
        env.set_keep_trailing_newline(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        let mut add = |key: &str, src: &str| {
            env.add_template_owned(key.to_owned(), src.to_owned())
                .map_err(|source| TaskError::Template {
                    path: path.to_owned(),
                    key: key.to_owned(),
                    row: None,
                    source,
                })
        };
        add("description", &file.description)?;
        add("doc_to_text", &file.doc_to_text)?;
        if let Some(Choices::Templates(ts)) = &file.doc_to_choice {
            for (k, t) in ts.iter().enumerate() {
                add(&format!("doc_to_choice.{k}"), t)?;
            }
        }
        let data_path = data_dir.join(&file.data);
        let rows = data::read_rows(&data_path)?;
        let total = rows.len();
        let mut task = Self {
            source: path.to_owned(),
            docs: Vec::new(),
            total,
            pool: Vec::new(),
            pool_is_data: file.fewshot_data.is_none(),
            env,
            file,
        };
        let docs = task.docs_of(rows, &data_path)?;
        task.pool = match &task.file.fewshot_data {
            Some(p) if task.file.num_fewshot > 0 => {
                let p = data_dir.join(p);
                let rows = data::read_rows(&p)?;
                task.docs_of(rows, &p)?
            }
            _ if task.file.num_fewshot > 0 => docs.clone(),
            _ => Vec::new(),
        };
        task.docs = stratified(docs, limit.unwrap_or(0), |d| &d.group);
        Ok(task)
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        &self.file.name
    }

    fn docs_of(&self, rows: Vec<Value>, path: &Path) -> Result<Vec<Doc>, TaskError> {
        rows.into_iter()
            .enumerate()
            .map(|(i, row)| self.doc(i, row, path))
            .collect()
    }

    fn doc(&self, index: usize, row: Value, path: &Path) -> Result<Doc, TaskError> {
        let f = &self.file;
        let invalid = |message: String| TaskError::Invalid {
            path: path.to_owned(),
            line: index + 1,
            message,
        };
        let need = |name: &str| {
            field(&row, name).ok_or_else(|| invalid(format!("the row has no field `{name}`")))
        };
        let id = match &f.id {
            Some(k) => text(&need(k)?),
            None => index.to_string(),
        };
        let group = match &f.group_by {
            Some(k) => text(&need(k)?),
            None => String::new(),
        };
        let mut doc = Doc {
            index,
            id,
            group,
            row: Value::UNDEFINED,
            choices: Vec::new(),
            gold: Vec::new(),
            references: Vec::new(),
            incorrect: Vec::new(),
        };
        match f.output_type {
            OutputType::MultipleChoice => {
                let mut labels = None;
                doc.choices = match f.doc_to_choice.as_ref() {
                    Some(Choices::Field(name)) => {
                        let (c, l) = data::labelled(&need(name)?).ok_or_else(|| {
                            invalid(format!(
                                "`{name}` is neither a list of choices nor an object of choice -> label"
                            ))
                        })?;
                        labels = l;
                        c
                    }
                    Some(Choices::Templates(ts)) => (0..ts.len())
                        .map(|k| self.render(&format!("doc_to_choice.{k}"), &row, index))
                        .collect::<Result<_, _>>()?,
                    None => unreachable!("checked: multiple choice has doc_to_choice"),
                };
                if doc.choices.len() < 2 {
                    return Err(invalid("fewer than two choices".into()));
                }
                doc.gold = match (labels, &f.doc_to_target) {
                    (Some(l), _) => (0..l.len()).filter(|&k| l[k]).collect(),
                    (None, Some(t)) => gold(&need(t)?, &doc.choices).map_err(invalid)?,
                    (None, None) => unreachable!("checked: list choices have doc_to_target"),
                };
                if doc.gold.is_empty() {
                    return Err(invalid("no true choice".into()));
                }
            }
            OutputType::GenerateUntil => {
                let refs = |name: &str| -> Result<Vec<String>, TaskError> {
                    let v = need(name)?;
                    Ok(texts(&v).unwrap_or_else(|| vec![text(&v)]))
                };
                doc.references = refs(f.references.as_deref().unwrap_or_default())?;
                if let Some(k) = &f.incorrect_references {
                    doc.incorrect = refs(k)?;
                }
            }
        }
        doc.row = row;
        Ok(doc)
    }

    fn render(&self, key: &str, row: &Value, index: usize) -> Result<String, TaskError> {
        self.env
            .get_template(key)
            .and_then(|t| t.render(row))
            .map_err(|source| TaskError::Template {
                path: self.source.clone(),
                key: key.to_owned(),
                row: Some(index + 1),
                source,
            })
    }

    /// The text an example is shown with: its question, the delimiter, its first true choice
    /// (multiple choice) or first reference (generation).
    fn example(&self, ex: &Doc) -> Result<String, TaskError> {
        let q = self.render("doc_to_text", &ex.row, ex.index)?;
        let target = match self.file.output_type {
            OutputType::MultipleChoice => &ex.choices[ex.gold[0]],
            OutputType::GenerateUntil => &ex.references[0],
        };
        Ok(format!("{q}{}{target}", self.file.target_delimiter))
    }

    /// The examples before `doc`.
    fn examples(&self, doc: &Doc) -> Vec<&Doc> {
        let f = &self.file;
        let eligible: Vec<&Doc> = self
            .pool
            .iter()
            .filter(|ex| !(self.pool_is_data && ex.index == doc.index))
            .filter(|ex| {
                f.fewshot_match.as_ref().is_none_or(|k| {
                    field(&ex.row, k).map(|v| text(&v)) == field(&doc.row, k).map(|v| text(&v))
                })
            })
            .collect();
        match f.fewshot_sampler {
            Sampler::FirstN => eligible.into_iter().take(f.num_fewshot).collect(),
            Sampler::Random => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
                    f.fewshot_seed ^ (doc.index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                );
                let mut picks = eligible;
                picks.shuffle(&mut rng);
                picks.truncate(f.num_fewshot);
                picks
            }
        }
    }

    /// The prompt of `doc` in two parts: the prefix (description and examples; the same for
    /// rows that share their examples, so a model can compute it once) and the question.
    pub fn prompt(&self, doc: &Doc) -> Result<(String, String), TaskError> {
        let mut prefix = self.render("description", &doc.row, doc.index)?;
        let examples = self.examples(doc);
        if self.file.num_fewshot > 0 && examples.len() < self.file.num_fewshot {
            return Err(TaskError::Invalid {
                path: self.source.clone(),
                line: 0,
                message: format!(
                    "row {} has {} few-shot examples, not num_fewshot = {}",
                    doc.index + 1,
                    examples.len(),
                    self.file.num_fewshot
                ),
            });
        }
        for ex in examples {
            prefix.push_str(&self.example(ex)?);
            prefix.push_str(&self.file.fewshot_delimiter);
        }
        Ok((prefix, self.render("doc_to_text", &doc.row, doc.index)?))
    }
}

impl TaskFile {
    /// What serde cannot check: the fields each output type needs, and known metrics.
    fn check(&self) -> Result<(), String> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(format!(
                "`name`: `{}` must be non-empty letters, digits, `_`, `-` or `.` (it names files)",
                self.name
            ));
        }
        let known: &[&str] = match self.output_type {
            OutputType::MultipleChoice => &MC_METRICS,
            OutputType::GenerateUntil => &GEN_METRICS,
        };
        if self.metrics.is_empty() {
            return Err("`metrics`: name at least one".into());
        }
        if let Some(m) = self.metrics.iter().find(|m| !known.contains(&m.as_str())) {
            return Err(format!(
                "`metrics`: unknown metric `{m}` for {:?} (available: {})",
                self.output_type,
                known.join(", ")
            ));
        }
        match self.output_type {
            OutputType::MultipleChoice => match &self.doc_to_choice {
                None => return Err("`doc_to_choice`: a multiple-choice task needs it".into()),
                Some(Choices::Templates(_)) if self.doc_to_target.is_none() => {
                    return Err("`doc_to_target`: choices from templates need a gold field".into());
                }
                _ => {}
            },
            OutputType::GenerateUntil => {
                if self.references.is_none() {
                    return Err("`references`: a generation task needs it".into());
                }
                if !(self.top_p > 0.0 && self.top_p <= 1.0) || self.temperature < 0.0 {
                    return Err("`temperature` >= 0 and 0 < `top_p` <= 1".into());
                }
            }
        }
        Ok(())
    }
}

/// The gold indices from a target value: an index, a list of indices, a letter, or a choice.
fn gold(v: &Value, choices: &[String]) -> Result<Vec<usize>, String> {
    let n = choices.len();
    let picks = if let Some(list) = texts(v).filter(|_| v.as_str().is_none()) {
        list.iter()
            .map(|s| {
                s.parse::<usize>()
                    .map_err(|_| format!("gold `{s}` is not an index"))
            })
            .collect::<Result<Vec<_>, _>>()?
    } else if let Some(i) = index(v) {
        vec![i]
    } else {
        let s = text(v);
        if let Some(i) = choices.iter().position(|c| *c == s) {
            vec![i]
        } else if s.len() == 1 && s.as_bytes()[0].is_ascii_uppercase() {
            vec![usize::from(s.as_bytes()[0] - b'A')]
        } else {
            return Err(format!(
                "gold `{s}` is not an index, a letter or one of the choices"
            ));
        }
    };
    if let Some(i) = picks.iter().find(|&&i| i >= n) {
        return Err(format!("gold index {i} is out of range ({n} choices)"));
    }
    Ok(picks)
}

/// `n` of `items` (all when `n` is 0 or at least their number), each group in proportion to
/// its size (largest remainders; at least one row per group when `n` is at least the number of
/// groups), spread evenly within it; file order kept.
pub fn stratified<T>(items: Vec<T>, n: usize, group: impl Fn(&T) -> &str) -> Vec<T> {
    let len = items.len();
    if n == 0 || n >= len {
        return items;
    }
    let mut groups: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for (i, it) in items.iter().enumerate() {
        groups.entry(group(it).to_owned()).or_default().push(i);
    }
    let sizes: Vec<usize> = groups.values().map(Vec::len).collect();
    // Largest remainders: each group's share rounded down, the rest to the largest fractions.
    let mut quota: Vec<usize> = sizes.iter().map(|&s| s * n / len).collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&g| (std::cmp::Reverse(sizes[g] * n % len), g));
    let left = n - quota.iter().sum::<usize>();
    for &g in order.iter().take(left) {
        quota[g] += 1;
    }
    // A group left out gets one row from the group with the most, while the limit allows.
    if n >= sizes.len() {
        while let Some(empty) = quota.iter().position(|&q| q == 0) {
            let (most, _) = quota
                .iter()
                .enumerate()
                .max_by_key(|&(g, &q)| (q, std::cmp::Reverse(g)))
                .expect("groups");
            quota[most] -= 1;
            quota[empty] = 1;
        }
    }
    let mut keep = vec![false; len];
    for (rows, q) in groups.values().zip(quota) {
        for k in 0..q {
            keep[rows[k * rows.len() / q]] = true;
        }
    }
    items
        .into_iter()
        .zip(keep)
        .filter_map(|(it, k)| k.then_some(it))
        .collect()
}

#[cfg(test)]
mod tests;
