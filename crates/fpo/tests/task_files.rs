//! TruthfulQA MC1/MC2 written as task files (`experiments/tasks/truthfulqa_mc{1,2}.toml`, over
//! the data set's own `mc_task.json`) give the built-in suite's numbers item by item, through
//! the generic task path (needs `just models`).

use std::collections::HashMap;
use std::path::PathBuf;

use fpo::llm::lm::ModelLm;
use fpo_eval::suite::{McSuite, McTaskSuite, Suite};
use fpo_eval::task::Task;
use fpo_eval::truthfulqa::{self, McFormat};
use fpo_model::BackendKind;
use fpo_model::llm::{DEFAULT_LLM, LoadedModel, models_dir};

fn repo() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("../..")
}

fn data_dir() -> PathBuf {
    std::env::var_os("FPO_DATA_DIR").map_or_else(|| repo().join("datasets"), PathBuf::from)
}

#[test]
fn truthfulqa_as_task_files_equals_the_built_in_suite_item_by_item() {
    let data = data_dir();
    let model = LoadedModel::load(&models_dir().join(DEFAULT_LLM), BackendKind::Flex, false)
        .expect("the default model (`just models`)");
    let items = truthfulqa::items(&data, Some(40), &[]).unwrap();
    // The same questions for the task files: mc_task.json's rows of those questions, verbatim
    // and in the file's own order (it is not the CSV's).
    let wanted: std::collections::HashSet<&str> =
        items.iter().map(|i| i.question.as_str()).collect();
    let text = std::fs::read_to_string(data.join("truthfulqa/mc_task.json")).unwrap();
    let rows: Vec<minijinja::Value> = serde_json::from_str(&text).unwrap();
    let keep: Vec<&minijinja::Value> = rows
        .iter()
        .filter(|r| {
            let q = r.get_attr("question").unwrap();
            wanted.contains(q.as_str().unwrap().trim())
        })
        .collect();
    assert_eq!(keep.len(), items.len());
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("truthfulqa")).unwrap();
    std::fs::write(
        tmp.path().join("truthfulqa/mc_task.json"),
        serde_json::to_string(&keep).unwrap(),
    )
    .unwrap();

    let mut lm = ModelLm::new(&model, None);
    let builtin = McSuite {
        items: items.clone(),
        format: McFormat::Harness,
    }
    .records(&mut lm, &mut || {})
    .unwrap();
    let by_question: HashMap<&str, &truthfulqa::McResult> = items
        .iter()
        .zip(&builtin)
        .map(|(i, r)| (i.question.as_str(), r))
        .collect();
    let tasks = repo().join("experiments/tasks");
    let mut worst_mc2 = 0f64;
    for (file, mc1) in [
        ("truthfulqa_mc1.toml", true),
        ("truthfulqa_mc2.toml", false),
    ] {
        let task = Task::load(&tasks.join(file), tmp.path(), None).unwrap();
        assert_eq!(task.docs.len(), items.len());
        let records = McTaskSuite { task: &task }
            .records(&mut lm, &mut || {})
            .unwrap();
        for r in &records {
            let b = by_question[r.id.trim()];
            if mc1 {
                assert_eq!(r.acc, b.mc1, "MC1 of `{}`", r.id);
            } else {
                worst_mc2 = worst_mc2.max((r.mass - b.mc2).abs());
            }
        }
    }
    // The same log-likelihoods (each answer scored after the same cached preamble), summed in
    // another order for MC2's mass.
    assert!(worst_mc2 < 1e-9, "MC2 differs by up to {worst_mc2:e}");
    let mc1: f64 = builtin.iter().map(|r| r.mc1).sum();
    assert!(mc1 > 0.0 && mc1 < builtin.len() as f64, "MC1 varies: {mc1}");
}
