//! The judge's exam (`fpo_eval::judge_exam`) sat by the LLM judge: each exam question is a pair,
//! the correct answer first, judged in both orders like any pair and cached like any verdict.

use fpo_eval::judge_exam::{ExamAnswer, ExamQuestion};

use crate::{Judge, JudgeError, JudgeRun, PairItem, PairJudgement};

/// `judge` sits the exam: its verdicts on [`pairs`] (`on_pair` after each), and the answers in
/// them.
pub fn sit(
    judge: &Judge,
    exam: &[ExamQuestion],
    on_pair: &(dyn Fn() + Sync),
) -> Result<(JudgeRun, Vec<ExamAnswer>), JudgeError> {
    let run = judge.judge_pairs(&pairs(exam), on_pair)?;
    let answers = answers(exam, &run.judgements);
    Ok((run, answers))
}

/// The exam as pairs: the held-out correct answer first, the held-out incorrect one second,
/// with only the references the judge may be shown.
pub fn pairs(exam: &[ExamQuestion]) -> Vec<PairItem> {
    exam.iter()
        .map(|q| PairItem {
            id: q.id,
            question: q.question.clone(),
            first: q.correct.clone(),
            second: q.incorrect.clone(),
            correct_answers: q.shown_correct.clone(),
            incorrect_answers: q.shown_incorrect.clone(),
        })
        .collect()
}

/// The exam answers in the judgements of [`pairs`] (same order).
pub fn answers(exam: &[ExamQuestion], judgements: &[PairJudgement]) -> Vec<ExamAnswer> {
    exam.iter()
        .zip(judgements)
        .map(|(q, j)| ExamAnswer {
            id: q.id,
            kind: q.kind.clone(),
            correct_as_a: j.first_as_a.verdict,
            incorrect_as_a: j.second_as_a.verdict,
            // The pair's soft preference is for the second answer, the incorrect one.
            soft: j.soft.map(|s| 1.0 - s),
        })
        .collect()
}
