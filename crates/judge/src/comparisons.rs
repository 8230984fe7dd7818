//! Pairwise comparisons of two models' answers to the same questions: the offline judge always,
//! and the LLM judge when one is configured, its verdicts written to `<dir>/<file>.jsonl`.

use std::path::Path;

use fpo_eval::evaluation::JudgeUsage;
use fpo_eval::generation::{
    AnswerScores, Comparison, Question, WinTieLoss, compare, compare_verdicts,
};

use crate::{Judge, JudgeError, PairItem, write_atomic};

/// Tie margin of the offline judge (difference of cosine margins).
pub const OFFLINE_MARGIN: f64 = 0.05;

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
        let path = self.dir.join(format!("{file}.jsonl"));
        let mut lines = String::new();
        for j in &run.judgements {
            let line = serde_json::to_string(j).map_err(|e| JudgeError::Client(e.to_string()))?;
            lines.push_str(&line);
            lines.push('\n');
        }
        write_atomic(&path, lines.as_bytes()).map_err(|source| JudgeError::Write {
            path: path.clone(),
            source,
        })?;
        let verdicts: Vec<_> = run.judgements.iter().map(|j| j.verdict).collect();
        let consistent: Vec<_> = run.judgements.iter().map(|j| j.consistent).collect();
        self.usage.pairs += pairs.len();
        self.usage.requests_sent += run.requests_sent;
        self.usage.cache_hits += run.cache_hits;
        self.usage.capped_waits += run.capped_waits;
        self.usage.errors += verdicts.iter().filter(|v| v.is_none()).count();
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
        out.push(c);
        Ok(out)
    }
}
