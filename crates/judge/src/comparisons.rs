//! Pairwise comparisons of two models' answers to the same questions: the offline judge always,
//! and the LLM judge when one is configured, its verdicts written to `<dir>/<file>.jsonl`. Before
//! them, each judge sits the exam (`fpo_eval::judge_exam`), and its report card goes beside its
//! comparisons.

use std::collections::BTreeMap;
use std::path::Path;

use fpo_eval::evaluation::{Evaluation, JudgeUsage, paper_pairs};
pub use fpo_eval::generation::OFFLINE_MARGIN;
use fpo_eval::generation::{
    AnswerScores, Comparison, OFFLINE_JUDGE, Question, WinTieLoss, compare, compare_verdicts,
};
use fpo_eval::judge_exam::{Card, ExamAnswer, ExamQuestion};
use fpo_eval::stats::Summary;

use crate::{Judge, JudgeError, JudgeRun, PairItem, PairJudgement, write_atomic};

/// Answers per model name (`base`, `<variant>-seed<k>`).
pub type ByModel = BTreeMap<String, Vec<AnswerScores>>;

/// What a run's judges compare.
#[derive(Debug, Clone, Copy)]
pub struct RunAnswers<'a> {
    /// The TruthfulQA questions.
    pub questions: &'a [Question],
    /// The answers to them.
    pub plain: &'a ByModel,
    /// The answers under pressure.
    pub pressured: &'a ByModel,
    /// Per generation task file: its questions, and the answers to them.
    pub tasks: &'a BTreeMap<String, (Vec<Question>, ByModel)>,
}

/// Reports a comparison's progress: `start(label, pairs)` gives the tick of each pair the LLM
/// judge decides; dropping it ends the comparison.
pub type OnComparison<'p> = dyn FnMut(&str, usize) -> Box<dyn Fn() + Sync> + 'p;

/// The judges of one evaluation, and what the LLM judge was asked.
#[derive(Debug)]
pub struct Judging<'a> {
    /// The LLM judge and its label, when one is configured.
    pub judge: Option<&'a (Judge, String)>,
    /// Where the LLM judge's verdicts go.
    pub dir: &'a Path,
    /// Confidence level of every interval.
    pub level: f64,
    /// Pairs, requests, cache hits and errors so far.
    pub usage: JudgeUsage,
}

impl Judging<'_> {
    /// The judges' report cards on `exam`: the offline judge's from its answers (`offline`),
    /// then the LLM judge's, which sits the exam now (verdicts in `<dir>/exam.jsonl`, cached
    /// like any verdict); `on_pair` after each exam question it decides.
    pub fn examine(
        &mut self,
        exam: &[ExamQuestion],
        offline: &[ExamAnswer],
        on_pair: &(dyn Fn() + Sync),
    ) -> Result<Vec<Card>, JudgeError> {
        let mut cards = vec![Card::of(OFFLINE_JUDGE, offline, self.level)];
        if let Some((judge, label)) = self.judge {
            let (run, answers) = crate::exam::sit(judge, exam, on_pair)?;
            self.record(&run, "exam")?;
            cards.push(Card::of(label, &answers, self.level));
        }
        Ok(cards)
    }

    /// Writes a batch's verdicts to `<dir>/<file>.jsonl` and counts what it cost.
    fn record(&mut self, run: &JudgeRun, file: &str) -> Result<(), JudgeError> {
        write_judgements(&self.dir.join(format!("{file}.jsonl")), &run.judgements)?;
        self.usage.pairs += run.judgements.len();
        self.usage.requests_sent += run.requests_sent;
        self.usage.cache_hits += run.cache_hits;
        self.usage.capped_waits += run.capped_waits;
        self.usage.errors += run
            .judgements
            .iter()
            .filter(|j| j.verdict.is_none())
            .count();
        Ok(())
    }

    /// The comparisons of a run, added to `ev`: for each seed, the paper's pairs of trained
    /// models on the questions and on each generation task file, then each model's answers
    /// against its answers under pressure. A pair whose models were not both evaluated is left
    /// out.
    pub fn judge_run(
        &mut self,
        ev: &mut Evaluation,
        answers: RunAnswers,
        seeds: &[u64],
        start: &mut OnComparison,
    ) -> Result<(), JudgeError> {
        for &seed in seeds {
            for (nx, ny) in paper_pairs(seed) {
                if let (Some(a), Some(b)) = (answers.plain.get(&nx), answers.plain.get(&ny)) {
                    let (x, y) = ((nx.as_str(), &a[..]), (ny.as_str(), &b[..]));
                    let file = format!("{nx}__{ny}");
                    let c = self.judged(start, answers.questions, x, y, &file)?;
                    ev.comparisons.extend(c);
                }
                for (task, (questions, by_model)) in answers.tasks {
                    if let (Some(a), Some(b)) = (by_model.get(&nx), by_model.get(&ny)) {
                        let (x, y) = ((nx.as_str(), &a[..]), (ny.as_str(), &b[..]));
                        let file = format!("task-{task}/{nx}__{ny}");
                        let c = self.judged(start, questions, x, y, &file)?;
                        if let Some(t) = ev.tasks.get_mut(task) {
                            t.comparisons.extend(c);
                        }
                    }
                }
            }
        }
        for (name, rows) in answers.pressured {
            if let Some(plain) = answers.plain.get(name) {
                let under = format!("{name} under pressure");
                let (x, y) = ((name.as_str(), &plain[..]), (under.as_str(), &rows[..]));
                let file = format!("{name}__pressure");
                let c = self.judged(start, answers.questions, x, y, &file)?;
                ev.pressure_comparisons.extend(c);
            }
        }
        Ok(())
    }

    /// [`Self::compare`], its progress reported to `start`.
    fn judged(
        &mut self,
        start: &mut OnComparison,
        questions: &[Question],
        first: (&str, &[AnswerScores]),
        second: (&str, &[AnswerScores]),
        file: &str,
    ) -> Result<Vec<Comparison>, JudgeError> {
        let pairs = if self.judge.is_some() {
            questions.len()
        } else {
            0
        };
        let tick = start(&format!("judge: {} vs {}", first.0, second.0), pairs);
        self.compare(questions, first, second, file, &*tick)
    }

    /// The comparisons of two models' answers to `questions` (the same rows, in order): the
    /// offline judge's, then the LLM judge's (its verdicts in `<dir>/<file>.jsonl`); `on_pair`
    /// after each pair the LLM judge decides.
    pub fn compare(
        &mut self,
        questions: &[Question],
        first: (&str, &[AnswerScores]),
        second: (&str, &[AnswerScores]),
        file: &str,
        on_pair: &(dyn Fn() + Sync),
    ) -> Result<Vec<Comparison>, JudgeError> {
        let mut out = vec![compare(first, second, OFFLINE_MARGIN, self.level)];
        let Some((judge, label)) = self.judge else {
            return Ok(out);
        };
        let pairs: Vec<PairItem> = questions
            .iter()
            .zip(first.1.iter().zip(second.1))
            .map(|(q, (a, b))| PairItem {
                id: q.id,
                question: q.text.clone(),
                first: a.answer.clone(),
                second: b.answer.clone(),
                correct_answers: q.correct.clone(),
                incorrect_answers: q.incorrect.clone(),
            })
            .collect();
        let run = judge.judge_pairs(&pairs, on_pair)?;
        self.record(&run, file)?;
        let verdicts: Vec<_> = run.judgements.iter().map(|j| j.verdict).collect();
        let consistent: Vec<_> = run.judgements.iter().map(|j| j.consistent).collect();
        let mut c = compare_verdicts(
            first,
            second,
            &verdicts,
            Some(&consistent),
            label,
            self.level,
        );
        let first_order: Vec<_> = run
            .judgements
            .iter()
            .map(|j| j.first_as_a.verdict)
            .collect();
        c.single_order = Some(WinTieLoss::of(&first_order, self.level));
        let soft: Vec<f64> = run.judgements.iter().filter_map(|j| j.soft).collect();
        c.soft = (!soft.is_empty()).then(|| Summary::of(&soft, self.level));
        out.push(c);
        Ok(out)
    }
}

/// Writes judgements as JSON lines, atomically.
fn write_judgements(path: &Path, judgements: &[PairJudgement]) -> Result<(), JudgeError> {
    let mut lines = String::new();
    for j in judgements {
        let line = serde_json::to_string(j).map_err(|e| JudgeError::Client(e.to_string()))?;
        lines.push_str(&line);
        lines.push('\n');
    }
    write_atomic(path, lines.as_bytes()).map_err(|source| JudgeError::Write {
        path: path.to_owned(),
        source,
    })
}
