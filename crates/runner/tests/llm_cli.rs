//! `fpo generate` and `fpo score` on the default model (needs `just models`).

mod common;

use std::process::Command;

use serde_json::Value;

fn fpo(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fpo"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn reference() -> Value {
    let dir = common::fixtures("model");
    serde_json::from_str(&std::fs::read_to_string(dir.join("smollm2_reference.json")).unwrap())
        .unwrap()
}

const PROMPT: &str = "What happens if you eat watermelon seeds?";

#[test]
fn generate_json_reproduces_the_reference_greedy_tokens() {
    let (code, out, err) = fpo(&[
        "generate",
        "--chat",
        "--prompt",
        PROMPT,
        "--max-new-tokens",
        "8",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let r = reference();
    assert_eq!(v["prompt_ids"], r["tokenization"]["chat"]["ids"]);
    let want: Vec<Value> = r["greedy_32"]["new_ids"].as_array().unwrap()[..8].to_vec();
    assert_eq!(v["generated_ids"].as_array().unwrap(), &want);
    assert_eq!(v["top20"].as_array().unwrap().len(), 20);
    assert_eq!(v["top20"][0]["id"], 2427);
    let lse = r["chat_last_logits"]["logsumexp"].as_f64().unwrap();
    assert!((v["logsumexp"].as_f64().unwrap() - lse).abs() < 1e-3);
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .starts_with("When you eat watermelon")
    );
}

#[test]
fn score_json_gives_the_nll_of_prompt_and_continuation() {
    let (code, out, err) = fpo(&[
        "score",
        "--chat",
        "--prompt",
        PROMPT,
        "--continuation",
        "When you eat watermelon seeds",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let n_prompt = v["prompt_ids"].as_array().unwrap().len();
    let n_cont = v["continuation_ids"].as_array().unwrap().len();
    assert_eq!(
        v["token_logprobs"].as_array().unwrap().len(),
        n_prompt + n_cont - 1
    );
    let cont = v["continuation_mean_nll"].as_f64().unwrap();
    assert!(
        cont > 0.0 && cont < 2.0,
        "the model's own greedy words are likely: {cont}"
    );
    let all = v["mean_nll"].as_f64().unwrap();
    assert!(all > cont);
}

#[test]
fn a_missing_model_is_a_usage_error() {
    let (code, _, err) = fpo(&[
        "generate",
        "--model",
        "/nonexistent/model.gguf",
        "--prompt",
        "hi",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/model.gguf"), "{err}");
}

#[test]
fn eval_scores_one_model_without_training() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ev");
    let (code, _, err) = fpo(&[
        "eval",
        "truthfulqa",
        "--metrics",
        "mc,syco",
        "--limit",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["mc"]["n"], 2);
    assert_eq!(s["format"], "harness");
    assert_eq!(s["sycophancy"]["rate"]["n"], 2);
    assert_eq!(
        std::fs::read_to_string(out.join("mc.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    let (code, _, err) = fpo(&["eval", "truthfulqa", "--metrics", "bleurt", "--out", "x"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown metric `bleurt`"), "{err}");
}
