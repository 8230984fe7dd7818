//! The `Suite` trait: a benchmark holds its items, scores one model on each (one record per
//! item, written as a JSON line) and aggregates one model's records into a summary. The runner
//! runs every suite an experiment's `[eval] metrics` names the same way for every model
//! (caching the records, so a resumed run scores nothing twice); adding a benchmark is one
//! implementation here and its name in a TOML file's metrics (plus one line where the runner
//! builds suites from names).

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::generation::{AnswerScores, AnswersSummary, score_answer, summarize_answers};
use crate::lm::{ChatModel, Embedder, LanguageModel};
use crate::pressure::{self, PressureResult, PressureSummary};
use crate::sycophancy::{self, SycophancyItem, SycophancyResult, SycophancySummary};
use crate::task::generation::{GenRecord, GenSummary};
use crate::task::mc::{McRecord, ScoreError};
use crate::task::{self, Task};
use crate::truthfulqa::{self, Item, McFormat, McResult, McSummary};

/// A benchmark over one model of type `M`.
pub trait Suite<M> {
    /// One item's result.
    type Record: Serialize + DeserializeOwned;
    /// One model's aggregate.
    type Summary: Serialize;
    /// The model's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The suite's name: records go to `<name>.jsonl`.
    fn name(&self) -> &str;

    /// Items scored (records expected).
    fn len(&self) -> usize;

    /// Whether the suite has no item.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One record per item under `model`, in item order; `on_item` after each item.
    fn records(
        &self,
        model: &mut M,
        on_item: &mut dyn FnMut(),
    ) -> Result<Vec<Self::Record>, Self::Error>;

    /// The aggregate of one model's records, intervals at confidence `level`.
    fn summarize(&self, records: &[Self::Record], level: f64) -> Self::Summary;
}

/// Threads for item-parallel suites: `RAYON_NUM_THREADS` when set (as for burn's own pool),
/// otherwise the machine's.
fn worker_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// TruthfulQA MC1/MC2 (`mc.jsonl`).
#[derive(Debug, Clone)]
pub struct McSuite {
    /// The questions.
    pub items: Vec<Item>,
    /// The prompt format.
    pub format: McFormat,
}

impl<L: LanguageModel + Send> Suite<L> for McSuite {
    type Record = McResult;
    type Summary = McSummary;
    type Error = L::Error;

    fn name(&self) -> &str {
        "mc"
    }
    fn len(&self) -> usize {
        self.items.len()
    }
    fn records(&self, lm: &mut L, on_item: &mut dyn FnMut()) -> Result<Vec<McResult>, L::Error> {
        let format = self.format;
        in_shards(
            worker_threads(),
            lm,
            &self.items,
            on_item,
            |lm, items, tick| truthfulqa::evaluate_mc(lm, items, format, tick),
        )
    }
    fn summarize(&self, records: &[McResult], level: f64) -> McSummary {
        truthfulqa::summarize_mc(records, level)
    }
}

/// `score` over contiguous shards of `items`, side by side on up to `workers` threads, when the
/// model forks ([`LanguageModel::fork`]); otherwise in one pass here. Each shard runs on its own
/// thread with a one-thread rayon pool for the tensor backend: a forward pass of one item keeps
/// only about 1.2 cores busy, so whole items in parallel use the machine better. Each item's
/// computation is the same either way, records come back in item order, and `on_item` runs on
/// this thread once per item.
fn in_shards<L, I, R, E>(
    workers: usize,
    lm: &mut L,
    items: &[I],
    on_item: &mut dyn FnMut(),
    score: impl Fn(&mut L, &[I], &mut dyn FnMut()) -> Result<Vec<R>, E> + Sync,
) -> Result<Vec<R>, E>
where
    L: LanguageModel + Send,
    I: Sync,
    R: Send,
    E: Send,
{
    let workers = workers.min(items.len());
    let mut forks: Vec<L> = (1..workers).map_while(|_| lm.fork()).collect();
    if forks.is_empty() {
        return score(lm, items, on_item);
    }
    let per = items.len().div_ceil(forks.len() + 1);
    let done = AtomicUsize::new(0);
    let models = std::iter::once(lm).chain(forks.iter_mut());
    std::thread::scope(|s| {
        let handles: Vec<_> = models
            .zip(items.chunks(per))
            .map(|(model, shard)| {
                let (done, score) = (&done, &score);
                s.spawn(move || {
                    let mut run = move || {
                        score(model, shard, &mut || {
                            done.fetch_add(1, Ordering::Relaxed);
                        })
                    };
                    match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
                        Ok(pool) => pool.install(run),
                        Err(_) => run(),
                    }
                })
            })
            .collect();
        let mut reported = 0;
        loop {
            let finished = handles.iter().all(|h| h.is_finished());
            while reported < done.load(Ordering::Relaxed) {
                on_item();
                reported += 1;
            }
            if finished {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            out.extend(h.join().expect("a scoring thread panicked")?);
        }
        Ok(out)
    })
}

/// Sycophancy under pressure, by likelihood (`pressure.jsonl`).
#[derive(Debug, Clone)]
pub struct PressureSuite {
    /// The questions (those without an incorrect answer are skipped).
    pub items: Vec<Item>,
}

impl<L: LanguageModel + Send> Suite<L> for PressureSuite {
    type Record = PressureResult;
    type Summary = PressureSummary;
    type Error = L::Error;

    fn name(&self) -> &str {
        "pressure"
    }
    fn len(&self) -> usize {
        self.items
            .iter()
            .filter(|i| pressure::asserted(i).is_some())
            .count()
    }
    fn records(
        &self,
        lm: &mut L,
        on_item: &mut dyn FnMut(),
    ) -> Result<Vec<PressureResult>, L::Error> {
        in_shards(
            worker_threads(),
            lm,
            &self.items,
            on_item,
            |lm, items, tick| pressure::evaluate(lm, items, tick),
        )
    }
    fn summarize(&self, records: &[PressureResult], level: f64) -> PressureSummary {
        pressure::summarize(records, level)
    }
}

/// Anthropic's A/B sycophancy items, by likelihood (`sycophancy.jsonl`).
#[derive(Debug, Clone)]
pub struct SycophancySuite {
    /// The items.
    pub items: Vec<SycophancyItem>,
}

impl<L: LanguageModel + Send> Suite<L> for SycophancySuite {
    type Record = SycophancyResult;
    type Summary = SycophancySummary;
    type Error = L::Error;

    fn name(&self) -> &str {
        "sycophancy"
    }
    fn len(&self) -> usize {
        self.items.len()
    }
    fn records(
        &self,
        lm: &mut L,
        on_item: &mut dyn FnMut(),
    ) -> Result<Vec<SycophancyResult>, L::Error> {
        in_shards(
            worker_threads(),
            lm,
            &self.items,
            on_item,
            |lm, items, tick| sycophancy::evaluate(lm, items, tick),
        )
    }
    fn summarize(&self, records: &[SycophancyResult], level: f64) -> SycophancySummary {
        sycophancy::summarize(records, level)
    }
}

/// A multiple-choice task file (`task-<name>.jsonl`).
#[derive(Debug, Clone, Copy)]
pub struct McTaskSuite<'a> {
    /// The task, its rows loaded.
    pub task: &'a Task,
}

/// The file name a task's records go to, without `.jsonl`.
pub fn task_records_name(task: &Task) -> String {
    format!("task-{}", task.name())
}

impl<L: LanguageModel + Send> Suite<L> for McTaskSuite<'_> {
    type Record = McRecord;
    type Summary = task::mc::McSummary;
    type Error = ScoreError<L::Error>;

    fn name(&self) -> &str {
        self.task.name()
    }
    fn len(&self) -> usize {
        self.task.docs.len()
    }
    fn records(&self, lm: &mut L, on_item: &mut dyn FnMut()) -> Result<Vec<McRecord>, Self::Error> {
        in_shards(
            worker_threads(),
            lm,
            &self.task.docs,
            on_item,
            |lm, docs, tick| task::mc::evaluate(lm, self.task, docs, tick),
        )
    }
    fn summarize(&self, records: &[McRecord], level: f64) -> task::mc::McSummary {
        task::mc::summarize(records, level)
    }
}

/// A generation task file (`task-<name>.jsonl`).
#[derive(Debug, Clone, Copy)]
pub struct GenTaskSuite<'a> {
    /// The task, its rows loaded.
    pub task: &'a Task,
}

impl<G: crate::lm::Generator, E: Embedder> Suite<ChatAndEmbedder<'_, G, E>> for GenTaskSuite<'_> {
    type Record = GenRecord;
    type Summary = GenSummary;
    type Error = task::generation::GenError<G::Error, E::Error>;

    fn name(&self) -> &str {
        self.task.name()
    }
    fn len(&self) -> usize {
        self.task.docs.len()
    }
    fn records(
        &self,
        m: &mut ChatAndEmbedder<'_, G, E>,
        on_item: &mut dyn FnMut(),
    ) -> Result<Vec<GenRecord>, Self::Error> {
        task::generation::evaluate(m, self.task, &self.task.docs, on_item)
    }
    fn summarize(&self, records: &[GenRecord], level: f64) -> GenSummary {
        task::generation::summarize(records, level)
    }
}

/// A chat model and a sentence encoder, for suites that generate and compare answers.
#[derive(Debug)]
pub struct ChatAndEmbedder<'a, C, E> {
    /// Answers.
    pub chat: &'a mut C,
    /// Embeds answers (the references are embedded once, outside).
    pub embedder: &'a mut E,
}

/// Why answering or embedding failed.
#[derive(Debug, thiserror::Error)]
pub enum ChatOrEmbedError<C: std::error::Error, E: std::error::Error> {
    /// The chat model failed.
    #[error(transparent)]
    Chat(C),
    /// The encoder failed.
    #[error(transparent)]
    Embed(E),
}

/// Greedy answers (64 new tokens) to each item's user message, scored against its reference
/// answers (`answers.jsonl`, or `answers_pressure.jsonl` for the pressure messages).
#[derive(Debug, Clone)]
pub struct AnswersSuite {
    /// The questions.
    pub items: Vec<Item>,
    /// Embeddings of each item's references (correct, then incorrect).
    pub reference_embeddings: Vec<Vec<Vec<f32>>>,
    /// Plain questions, or the questions under pressure.
    pub under_pressure: bool,
}

impl AnswersSuite {
    /// The user message of an item.
    pub fn message(&self, item: &Item) -> String {
        match (self.under_pressure, pressure::asserted(item)) {
            (true, Some(claim)) => pressure::pressure_message(item, claim),
            _ => item.question.clone(),
        }
    }
}

/// Answers are generated in batches of this many questions.
const ANSWER_BATCH: usize = 8;

impl<C: ChatModel, E: Embedder> Suite<ChatAndEmbedder<'_, C, E>> for AnswersSuite
where
    C::Error: 'static,
    E::Error: 'static,
{
    type Record = AnswerScores;
    type Summary = AnswersSummary;
    type Error = ChatOrEmbedError<C::Error, E::Error>;

    fn name(&self) -> &str {
        if self.under_pressure {
            "answers_pressure"
        } else {
            "answers"
        }
    }
    fn len(&self) -> usize {
        self.items.len()
    }
    fn records(
        &self,
        m: &mut ChatAndEmbedder<'_, C, E>,
        on_item: &mut dyn FnMut(),
    ) -> Result<Vec<AnswerScores>, Self::Error> {
        let mut out = Vec::with_capacity(self.items.len());
        for (chunk, refs) in self
            .items
            .chunks(ANSWER_BATCH)
            .zip(self.reference_embeddings.chunks(ANSWER_BATCH))
        {
            let messages: Vec<String> = chunk.iter().map(|i| self.message(i)).collect();
            let texts = m
                .chat
                .answer(&messages, 64)
                .map_err(ChatOrEmbedError::Chat)?;
            let embs = m.embedder.embed(&texts).map_err(ChatOrEmbedError::Embed)?;
            for (((item, text), e), r) in chunk.iter().zip(&texts).zip(&embs).zip(refs) {
                out.push(score_answer(item, text, e, r));
                on_item();
            }
        }
        Ok(out)
    }
    fn summarize(&self, records: &[AnswerScores], level: f64) -> AnswersSummary {
        summarize_answers(records, level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::references;

    /// Answers each message with the message itself.
    struct Echo;
    impl ChatModel for Echo {
        type Error = std::convert::Infallible;
        fn answer(&mut self, m: &[String], _: usize) -> Result<Vec<String>, Self::Error> {
            Ok(m.to_vec())
        }
    }

    /// Embeds a text by whether it mentions "pretty sure".
    struct Flag;
    impl Embedder for Flag {
        type Error = std::convert::Infallible;
        fn embed(&mut self, t: &[String]) -> Result<Vec<Vec<f32>>, Self::Error> {
            Ok(t.iter()
                .map(|x| {
                    if x.contains("pretty sure") {
                        vec![0.0, 1.0]
                    } else {
                        vec![1.0, 0.0]
                    }
                })
                .collect())
        }
    }

    /// Log-likelihood from the texts alone (so that every fork scores alike); counts calls.
    #[derive(Clone)]
    struct Lengths(std::sync::Arc<AtomicUsize>);
    impl LanguageModel for Lengths {
        type Error = std::convert::Infallible;
        fn chat_context(&self, user: &str) -> Result<String, Self::Error> {
            Ok(user.to_owned())
        }
        fn loglikelihoods(&mut self, c: &str, conts: &[String]) -> Result<Vec<f64>, Self::Error> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(conts
                .iter()
                .map(|a| -(((a.len() * 7 + c.len()) % 13) as f64))
                .collect())
        }
        fn fork(&self) -> Option<Self> {
            Some(self.clone())
        }
    }

    #[test]
    fn mc_records_are_the_same_on_one_thread_or_several() {
        let items = truthfulqa::spread(
            truthfulqa::load(&crate::test_data_dir().join("truthfulqa")).unwrap(),
            23,
        );
        let suite = McSuite {
            items,
            format: McFormat::Harness,
        };
        let calls = std::sync::Arc::new(AtomicUsize::new(0));
        let mut lm = Lengths(calls.clone());
        let mc = |workers: usize, lm: &mut Lengths, tick: &mut dyn FnMut()| {
            in_shards(workers, lm, &suite.items, tick, |lm, items, tick| {
                truthfulqa::evaluate_mc(lm, items, suite.format, tick)
            })
        };
        let one = mc(1, &mut lm, &mut || {}).unwrap();
        for workers in [2, 3, 40] {
            let mut ticks = 0;
            let many = mc(workers, &mut lm, &mut || ticks += 1).unwrap();
            assert_eq!(ticks, 23, "progress once per question ({workers} workers)");
            assert_eq!(
                serde_json::to_string(&many).unwrap(),
                serde_json::to_string(&one).unwrap(),
                "{workers} workers"
            );
        }
        assert_eq!(calls.load(Ordering::Relaxed), 4 * 23);
    }

    #[test]
    fn the_answers_suite_answers_each_item_in_order_plain_or_under_pressure() {
        let items = truthfulqa::spread(
            truthfulqa::load(&crate::test_data_dir().join("truthfulqa")).unwrap(),
            11,
        );
        // Correct references point one way, incorrect ones the other.
        let refs: Vec<Vec<Vec<f32>>> = items
            .iter()
            .map(|i| {
                let (c, w) = references(i);
                [vec![vec![1.0, 0.0]; c.len()], vec![vec![0.0, 1.0]; w.len()]].concat()
            })
            .collect();
        for under_pressure in [false, true] {
            let suite = AnswersSuite {
                items: items.clone(),
                reference_embeddings: refs.clone(),
                under_pressure,
            };
            let mut m = ChatAndEmbedder {
                chat: &mut Echo,
                embedder: &mut Flag,
            };
            let mut seen = 0;
            let rows = suite.records(&mut m, &mut || seen += 1).unwrap();
            assert_eq!(
                (
                    rows.len(),
                    seen,
                    Suite::<ChatAndEmbedder<Echo, Flag>>::len(&suite)
                ),
                (11, 11, 11)
            );
            for (r, i) in rows.iter().zip(&items) {
                assert_eq!((r.id, &r.question), (i.id, &i.question));
                assert_eq!(r.answer, suite.message(i));
            }
            let s = Suite::<ChatAndEmbedder<Echo, Flag>>::summarize(&suite, &rows, 0.95);
            let want = if under_pressure { 0.0 } else { 1.0 };
            assert_eq!(
                s.overall.acc.mean, want,
                "pressured answers lean to the falsehood here"
            );
            assert_eq!(
                Suite::<ChatAndEmbedder<Echo, Flag>>::name(&suite),
                if under_pressure {
                    "answers_pressure"
                } else {
                    "answers"
                }
            );
        }
    }
}
