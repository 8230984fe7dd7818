//! `fpo judge-check`: the judges' exam (`fpo_eval::judge_exam`) by itself: the offline judge
//! always, the LLM judge of `--judge` too, each with its report card.

use fpo::llm::evaluate::offline_exam;
use fpo_eval::generation::OFFLINE_JUDGE;
use fpo_eval::judge_exam::{Card, describe, exam};
use fpo_eval::truthfulqa;
use fpo_judge::Judge;
use fpo_model::encoder::SentenceEncoder;
use fpo_model::llm::{DEFAULT_ENCODER, models_dir};

use crate::cli::{BadFlag, JudgeCheckArgs};
use crate::output::{json, progress};

/// Runs `fpo judge-check`; prints each judge's card (text, or JSON with `--json`).
pub fn run(args: JudgeCheckArgs) -> anyhow::Result<()> {
    // Bad flags are refused before any work.
    let cfg =
        fpo::experiment::resolve_judge(None, args.judge.judge.as_deref(), args.judge.retry_errors)
            .map_err(|(flag, message)| BadFlag(format!("{flag}: {message}")))?;
    let data = fpo::experiment::data_dir(None).map_err(BadFlag)?;
    let items = truthfulqa::items(&data, args.limit, &[])?;
    let exam = exam(&items);
    eprintln!(
        "the exam: {} of {} TruthfulQA questions (a correct and an incorrect reference held out of what the judge is shown, both orders)",
        exam.len(),
        items.len()
    );
    let device = fpo_model::device(fpo_model::BackendKind::Flex, false)?;
    let encoder = SentenceEncoder::load(&models_dir().join(DEFAULT_ENCODER), &device)?;
    let mut cards = vec![Card::of(
        OFFLINE_JUDGE,
        &offline_exam(&encoder, &items, &exam)?,
        args.level,
    )];
    if let Some(cfg) = cfg {
        let label = cfg.label();
        let judge = Judge::new(cfg)?;
        let bar = progress(exam.len() as u64, "pairs", "judge: the exam");
        let start = std::time::Instant::now();
        let (run, answers) = fpo_judge::exam::sit(&judge, &exam, &|| bar.inc(1))?;
        let seconds = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        eprintln!(
            "{label}: {} requests sent, {} replies from the cache, in {seconds:.2} s ({:.2} requests/s)",
            run.requests_sent,
            run.cache_hits,
            run.requests_sent as f64 / seconds
        );
        cards.push(Card::of(&label, &answers, args.level));
    }
    if args.json {
        println!("{}", String::from_utf8_lossy(&json(&cards)?));
    } else {
        cards
            .iter()
            .flat_map(describe)
            .for_each(|l| println!("{l}"));
    }
    Ok(())
}
