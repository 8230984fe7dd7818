//! `fpo sweep` and `fpo merge` on an LLM suite (needs `just models` and `FPO_DATA_DIR`): the
//! base model is evaluated once, in a cell of its own; the merge judges the comparisons (a mock
//! LLM judge, wiremock) and writes what one `fpo run` of the grid writes, byte for byte but for
//! `run.json`; a rerun of the merge asks the judge nothing; a missing cell is named.

mod common;

use std::path::Path;
use std::process::Command;

use common::judge::{Endpoint, PrefersShorter};
use common::{files_under, root};
use serde_json::Value;

fn fpo(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fpo"));
    c.current_dir(root()).args(args);
    c
}

fn ok(mut c: Command) -> String {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "fpo failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The cells of a sweep directory: (name, job).
fn cells(sweep: &Path) -> Vec<(String, Value)> {
    json(&sweep.join("sweep.json"))["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c["job"].clone()))
        .collect()
}

const GRID: [&str; 6] = [
    "experiments/truthfulqa.toml",
    "--profile",
    "smoke",
    "--seeds",
    "0..2",
    "--no-report",
];

#[test]
fn an_llm_sweep_merges_to_the_run_of_its_grid_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let endpoint = Endpoint::start(|m| m.respond_with(PrefersShorter));
    let judge = endpoint.url("model=mock-judge");
    let cache = tmp.path().join("cache");

    // One `fpo run` of 2 seeds x 3 variants, judged.
    let single = tmp.path().join("single");
    let mut run = fpo(&["run"]);
    run.args(GRID)
        .args(["--judge", &judge, "--out", s(&single)])
        .env("FPO_CACHE_DIR", &cache);
    ok(run);
    // The cache's folder is part of the judge's settings (config.json); its replies are not.
    std::fs::remove_dir_all(&cache).unwrap();
    let sent_by_run = endpoint.requests();
    assert!(sent_by_run > 0);

    // The same grid as a sweep: the base model's cell, then the 6 (variant, seed) cells.
    let sw = tmp.path().join("sweep");
    let mut sweep = fpo(&["sweep"]);
    sweep
        .args(&GRID[..5])
        .args(["--jobs", "2", "--out", s(&sw)]);
    ok(sweep);
    let cells = cells(&sw);
    assert_eq!(cells.len(), 7, "{cells:?}");
    assert_eq!(cells[0], ("base".to_owned(), Value::from("base")));
    assert_eq!(
        cells[1].1,
        serde_json::json!({"train": {"variant": "standard", "seed": 0}})
    );
    // The base model is evaluated in its cell alone; a trained cell scores its own model.
    for (name, _) in &cells {
        let eval = sw.join("cells").join(name).join("eval");
        assert_eq!(eval.join("base").is_dir(), name == "base", "{name}");
        if name != "base" {
            assert!(eval.join(name).join("mc.jsonl").is_file(), "{name}");
            let trained = sw.join("cells").join(name).join(name);
            assert!(trained.join("adapters.safetensors").is_file(), "{name}");
        }
    }
    // No cell asked the judge: the comparisons need models of several cells.
    assert_eq!(endpoint.requests(), sent_by_run);

    // A missing cell is named, and nothing is written.
    let cell = sw.join("cells/relaxed-seed1");
    let hidden = sw.join("cells/relaxed-seed1.partial");
    std::fs::rename(&cell, &hidden).unwrap();
    let merged = tmp.path().join("merged");
    let o = fpo(&["merge", s(&sw), "--no-report", "--out", s(&merged)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("relaxed-seed1 (cell 4, failed or interrupted)"),
        "{err}"
    );
    assert!(!merged.exists() && !tmp.path().join("merged.partial").exists());
    let msg = ok(fpo(&["sweep", "--resubmit-missing", s(&sw)]));
    assert!(msg.contains("1 missing cells: relaxed-seed1"), "{msg}");
    std::fs::rename(&hidden, &cell).unwrap();

    // The merge judges with an empty cache: the same requests as the single run.
    let mut merge = fpo(&["merge", s(&sw), "--no-report", "--judge", &judge]);
    merge
        .args(["--out", s(&merged)])
        .env("FPO_CACHE_DIR", &cache);
    ok(merge);
    let sent_by_merge = endpoint.requests() - sent_by_run;
    assert_eq!(sent_by_merge, sent_by_run);
    let (ours, theirs) = (files_under(&merged), files_under(&single));
    assert_eq!(ours, theirs, "the same files");
    let mut compared = 0;
    for f in &ours {
        if f.file_name().unwrap() == "run.json" {
            continue;
        }
        assert!(
            std::fs::read(merged.join(f)).unwrap() == std::fs::read(single.join(f)).unwrap(),
            "{} differs from the single run's",
            f.display()
        );
        compared += 1;
    }
    // config, fit, summary; per model the eval records; per trained model its folder (adapters,
    // log, probe, outcome); the judges' verdicts.
    assert!(compared > 40, "{compared} files: {ours:?}");
    let info = json(&merged.join("run.json"));
    assert_eq!(info["merged"]["runs"], 6);
    assert_eq!(info["llm"]["variants"].as_object().unwrap().len(), 6);
    let summary = json(&merged.join("summary.json"));
    assert!(!summary["claims"].as_array().unwrap().is_empty());
    assert!(
        summary["evaluation"]["judge"]["requests_sent"]
            .as_u64()
            .unwrap()
            > 0
    );

    // A rerun of the merge (another output, the same cache) asks the judge nothing, and writes
    // its report.
    let again = tmp.path().join("again");
    let reports = tmp.path().join("reports");
    let mut merge = fpo(&["merge", s(&sw), "--judge", &judge]);
    merge
        .args(["--out", s(&again), "--reports", s(&reports)])
        .env("FPO_CACHE_DIR", &cache);
    let out = ok(merge);
    assert_eq!(endpoint.requests(), 2 * sent_by_run);
    let ev = json(&again.join("summary.json"))["evaluation"].clone();
    assert_eq!(ev["judge"]["requests_sent"], 0);
    assert_eq!(ev["comparisons"], summary["evaluation"]["comparisons"]);
    let index = out.lines().last().unwrap();
    let html = std::fs::read_to_string(index).unwrap();
    assert!(
        html.contains("standard-seed1"),
        "the report shows the merged run"
    );
    assert!(
        html.contains("summed over the cells of the sweep") && html.contains("6 runs merged"),
        "the report says where the run came from"
    );
    // Beside each comparison, each model's KL from the base model at its last probe.
    let g3 = |v: f64| {
        if v != 0.0 && v.abs() < 1e-2 {
            format!("{v:.2e}")
        } else {
            format!("{v:.3}")
        }
    };
    let last_kl = |model: &str| {
        let probe = std::fs::read_to_string(again.join(model).join("probe.jsonl")).unwrap();
        let last: Value = serde_json::from_str(probe.lines().last().unwrap()).unwrap();
        g3(last["kl"].as_f64().unwrap())
    };
    for c in ev["comparisons"].as_array().unwrap() {
        let (a, b) = (c["first"].as_str().unwrap(), c["second"].as_str().unwrap());
        let cell = format!(
            "{a} vs {b}</td><td class=\"num\">{} / {}</td>",
            last_kl(a),
            last_kl(b)
        );
        assert!(html.contains(&cell), "no {cell} in the report");
    }
}

#[test]
fn the_base_model_is_evaluated_once_per_evaluation_of_the_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let emit = |name: &str, set: &str| {
        let sw = tmp.path().join(name);
        let mut c = fpo(&["sweep"]);
        c.args(&GRID[..5])
            .args(["--variant", "standard", "--set", set, "--emit", "slurm"])
            .args(["--out", s(&sw)]);
        ok(c);
        (
            cells(&sw),
            std::fs::read_to_string(sw.join("slurm.sh")).unwrap(),
        )
    };
    // The penalty's weight does not change the base model: one base cell for both values.
    let (by_gamma, script) = emit("gamma", "fpo.gamma=1,10");
    let names: Vec<&str> = by_gamma.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "base",
            "standard-seed0-fpo.gamma=1",
            "standard-seed1-fpo.gamma=1",
            "standard-seed0-fpo.gamma=10",
            "standard-seed1-fpo.gamma=10"
        ]
    );
    assert!(script.contains("#SBATCH --array=0,1,2,3,4"), "{script}");
    // The questions do: one base cell per value.
    let (by_limit, _) = emit("limit", "eval.limit=2,3");
    let names: Vec<&str> = by_limit.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "base-eval.limit=2",
            "standard-seed0-eval.limit=2",
            "standard-seed1-eval.limit=2",
            "base-eval.limit=3",
            "standard-seed0-eval.limit=3",
            "standard-seed1-eval.limit=3"
        ]
    );
}
