//! Task files in an LLM run, end to end (needs `just models` and `just data-tasks`): a
//! generation task and a multiple-choice task scored on the base model and every trained
//! variant, their paired differences, the offline judge's comparisons of a generation task's
//! answers, the records cached per model, and the report.

mod common;

use common::root;
use serde_json::Value;

#[test]
fn task_files_are_scored_on_every_model_and_judged_in_pairs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("qa.jsonl");
    std::fs::write(
        &data,
        "{\"q\": \"What is the capital of France?\", \"a\": [\"Paris\", \"The capital of France is Paris.\"], \"w\": [\"Lyon\"], \"kind\": \"geo\"}\n\
         {\"q\": \"How many legs does a spider have?\", \"a\": \"Eight\", \"w\": [\"Six\"], \"kind\": \"bio\"}\n\
         {\"q\": \"What colour is the sky on a clear day?\", \"a\": [\"Blue\"], \"w\": [\"Green\"], \"kind\": \"geo\"}\n",
    )
    .unwrap();
    let task = tmp.path().join("qa.toml");
    std::fs::write(
        &task,
        format!(
            "name = \"qa\"\noutput_type = \"generate_until\"\ndata = \"{}\"\n\
             doc_to_text = \"{{{{ q }}}}\"\nchat = true\nreferences = \"a\"\n\
             incorrect_references = \"w\"\nmax_new_tokens = 12\nuntil = [\"\\n\"]\n\
             group_by = \"kind\"\nignore_case = true\nmetrics = [\"exact_match\", \"rouge_l\"]\n",
            data.display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("run");
    let set = format!(
        "eval.tasks=[\"{}\", \"tasks/arc_easy.toml\"]",
        task.display()
    );
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_fpo"))
        .current_dir(root())
        .args(["run", "experiments/truthfulqa.toml", "--profile", "smoke"])
        .args(["--set", &set, "--set", "eval.metrics=[]", "--reports"])
        .arg(tmp.path().join("reports"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let qa = &s["evaluation"]["tasks"]["qa"];
    let models = ["base", "standard-seed0", "relaxed-seed0", "practical-seed0"];
    for m in models {
        let g = &qa["generation"][m]["overall"];
        assert_eq!(g["n"], 3, "{m}");
        assert!(g["rouge_l"]["mean"].as_f64().is_some(), "{m}");
        assert_eq!(
            qa["generation"][m]["by_group"].as_object().unwrap().len(),
            2
        );
        let rows = std::fs::read_to_string(out.join(format!("eval/{m}/task-qa.jsonl"))).unwrap();
        assert_eq!(rows.lines().count(), 3);
        let first: Value = serde_json::from_str(rows.lines().next().unwrap()).unwrap();
        assert!(first["cos"].as_f64().unwrap() > 0.0 && first["cos_incorrect"].is_number());
        assert_eq!(
            s["evaluation"]["tasks"]["arc_easy"]["mc"][m]["overall"]["n"],
            8
        );
    }
    assert_eq!(qa["vs_base"].as_object().unwrap().len(), 3);
    assert!(qa["vs_base"]["standard-seed0"]["exact_match"]["mcnemar_p"].is_number());
    let comparisons = qa["comparisons"].as_array().unwrap();
    assert_eq!(
        comparisons.len(),
        3,
        "the paper's three pairs, offline judge"
    );
    for c in comparisons {
        assert_eq!(c["overall"]["n"], 3);
        assert_eq!(c["by_category"].as_object().unwrap().len(), 2);
    }
    let html = std::fs::read_to_string(tmp.path().join("reports/run/index.html")).unwrap();
    assert!(html.contains("Capability and task files") && html.contains("qa: the paper's pairs"));
}
