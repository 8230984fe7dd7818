//! The LLM training loop end to end on the default models (needs `just models` and
//! `FPO_DATA_DIR`): a smoke run, and a run killed mid-way then resumed, which must end with the
//! same adapters, RM head and log as the uninterrupted one.

mod common;

use common::root;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn command(out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fpo"));
    c.current_dir(root())
        .args([
            "run",
            "experiments/truthfulqa.toml",
            "--profile",
            "smoke",
            "--variant",
            "relaxed",
            "--no-report",
            "--out",
        ])
        .arg(out)
        .args(extra);
    c
}

fn run_to_end(out: &Path) {
    let o = command(out, &[]).output().unwrap();
    assert!(
        o.status.success(),
        "fpo run failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The log without its wall-clock field.
fn log_without_seconds(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v
        })
        .collect()
}

#[test]
fn a_killed_run_resumes_to_the_same_adapters() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    run_to_end(&whole);

    // Kill the second run once its first checkpoint exists, then run the same command again.
    let cut = tmp.path().join("cut");
    let partial = tmp.path().join("cut.partial/relaxed-seed0");
    let mut child = command(&cut, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !partial.join("checkpoint/state.json").exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first checkpoint"
        );
        assert!(t.elapsed() < Duration::from_secs(300), "no checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!cut.exists(), "a killed run must not look finished");
    assert!(!partial.join("outcome.json").exists());
    run_to_end(&cut);

    let (a, b) = (whole.join("relaxed-seed0"), cut.join("relaxed-seed0"));
    let same =
        |name: &str| std::fs::read(a.join(name)).unwrap() == std::fs::read(b.join(name)).unwrap();
    assert!(
        same("adapters.safetensors"),
        "adapters differ after resuming"
    );
    assert!(same("head.json"), "RM heads differ after resuming");
    let (la, lb) = (log_without_seconds(&a), log_without_seconds(&b));
    assert_eq!(la.len(), 3);
    assert_eq!(la, lb);
    assert!(
        !b.join("checkpoint").exists(),
        "checkpoints are removed at the end"
    );

    // What the run wrote: the RM warm start, the loop's log and a summary.
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(whole.join("summary.json")).unwrap())
            .unwrap();
    let fit = &summary["rm_head_fit"];
    assert_eq!(fit["train_pairs"], 32);
    assert_eq!(fit["heldout_pairs"], 8);
    assert!(fit["heldout_accuracy"].as_f64().unwrap() >= 0.0);
    let outcome = &summary["outcomes"][0];
    assert_eq!(outcome["variant"], "relaxed");
    assert_eq!(outcome["iterations"], 3);
    for l in &la {
        let u = l["winner_utility"].as_f64().unwrap();
        assert!((-15.0..=5.0).contains(&u), "U out of its clip range: {u}");
        assert!(l["policy_loss"].as_f64().unwrap() > 0.0);
        let w = l["winner"].as_u64().unwrap();
        assert_eq!(l["winners"]["relaxed"].as_u64().unwrap(), w);
        assert!(l["tokens_generated"].as_u64().unwrap() >= 3 * 2);
    }
    let eval = &summary["evaluation"];
    assert_eq!(eval["questions"], 4, "smoke scores 4 questions");
    assert_eq!(eval["mc"]["relaxed-seed0"]["n"], 4);
    let mc2 = eval["mc"]["base"]["mc2"]["mean"].as_f64().unwrap();
    assert!(
        (0.0..=1.0).contains(&mc2),
        "MC2 is a probability mass: {mc2}"
    );
    assert!(eval["mc2_vs_base"]["relaxed-seed0"][0]["mean"].is_number());
    assert!(
        eval["generation"]["base"]["words"]["mean"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(whole.join("eval/base/mc.jsonl").is_file());
    let answers = std::fs::read_to_string(whole.join("eval/relaxed-seed0/answers.jsonl")).unwrap();
    assert_eq!(answers.lines().count(), 4);
    assert_eq!(eval["sycophancy_items"], 4);
    assert_eq!(eval["sycophancy"]["relaxed-seed0"]["rate"]["n"], 4);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(whole.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["config"]["train"]["candidates"], 2,
        "resolved config"
    );
}

#[test]
fn a_checkpoint_of_other_settings_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cut = tmp.path().join("cut");
    let vdir = tmp.path().join("cut.partial/relaxed-seed0/checkpoint");
    std::fs::create_dir_all(&vdir).unwrap();
    std::fs::write(
        vdir.join("state.json"),
        r#"{"iteration": 1, "variant": "relaxed", "seed": 0, "fingerprint": "other",
            "head": {"w": [], "b": 0.0},
            "head_optimizer": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "t": 0, "m": [], "v": []}}"#,
    )
    .unwrap();
    let o = command(&cut, &[]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("state.json") && err.contains("other settings"),
        "{err}"
    );
}

#[test]
fn a_missing_model_is_named_before_any_run_directory_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = command(&out, &[])
        .env("FPO_MODELS_DIR", tmp.path().join("no-models"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("train.model") && err.contains("just models"),
        "{err}"
    );
    assert!(!tmp.path().join("run.partial").exists() && !out.exists());
}

/// Two clean runs of one seed write the same bytes in every file but `run.json` (timings live
/// there only): the config, the summary, the RM warm start, each variant's log and outcome, the
/// evaluation's records.
#[test]
fn two_clean_runs_write_the_same_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run_to_end(&a);
    run_to_end(&b);
    let files = common::files_under(&a);
    for must in [
        "config.json",
        "summary.json",
        "rm_head_fit.json",
        "run.json",
        "relaxed-seed0/log.jsonl",
        "relaxed-seed0/outcome.json",
        "relaxed-seed0/probe.jsonl",
    ] {
        assert!(files.contains(&must.into()), "{must} missing: {files:?}");
    }
    for f in &files {
        if f == Path::new("run.json") {
            continue;
        }
        assert!(
            std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
            "{} differs between two runs of one seed",
            f.display()
        );
    }
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("run.json")).unwrap()).unwrap();
    assert!(info["llm"]["seconds_per_iteration"].as_f64().unwrap() > 0.0);
    assert_eq!(info["llm"]["variants"]["relaxed-seed0"]["iterations"], 3);
    // The stages account for the iterations' seconds: each one named, none negative, and their
    // sum the iterations' wall time but for the log line's assembly (catches a stage timed
    // twice, a lap that restarts the clock, or an iteration's part left out).
    let timing = &info["llm"]["variants"]["relaxed-seed0"];
    let stages = timing["stages"].as_object().unwrap();
    for s in [
        "prompt passes",
        "sampling (reference and candidates)",
        "oracle scoring",
        "RM features",
        "selection and RM update",
        "policy step",
    ] {
        assert!(stages[s].as_f64().unwrap() >= 0.0, "{s}");
    }
    let sum: f64 = stages.values().map(|x| x.as_f64().unwrap()).sum();
    let seconds = timing["seconds"].as_f64().unwrap();
    assert!(
        sum <= seconds && sum > 0.9 * seconds,
        "stages {sum} s of {seconds} s"
    );
    // The probe: at 0, every 2 and after the last; the untrained policy sampled with the base
    // model's random numbers gives the base model's samples, so its gains and KL are exactly 0
    // (catches separate streams for the policy and the base, and a KL of the wrong models).
    let probe: Vec<Value> = std::fs::read_to_string(a.join("relaxed-seed0/probe.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let at: Vec<u64> = probe
        .iter()
        .map(|r| r["iteration"].as_u64().unwrap())
        .collect();
    assert_eq!(at, [0, 2, 3]);
    let first = &probe[0];
    for (a, b) in [
        ("reward", "base_reward"),
        ("utility", "base_utility"),
        ("response_utility", "base_response_utility"),
        ("length", "base_length"),
    ] {
        assert_eq!(first[a], first[b], "{a} at iteration 0");
    }
    assert_eq!(first["kl"].as_f64(), Some(0.0));
    assert!(probe[2]["kl"].as_f64().unwrap() > 0.0, "{probe:?}");
}

/// The three variants trained together (one decoding batch, the shared work done once) write
/// the logs, adapters, heads, probes and outcomes that each variant trained alone writes.
#[test]
fn variants_trained_together_equal_each_trained_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |out: &Path, variants: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fpo"));
        c.current_dir(root()).args([
            "run",
            "experiments/truthfulqa.toml",
            "--profile",
            "smoke",
            "--set",
            "eval.metrics=[]",
            "--no-report",
            "--out",
        ]);
        c.arg(out);
        for v in variants {
            c.args(["--variant", v]);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let together = tmp.path().join("together");
    run(&together, &[]);
    let summary = |dir: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
    };
    let all = summary(&together);
    for (k, v) in ["standard", "relaxed", "practical"].into_iter().enumerate() {
        let alone = tmp.path().join(v);
        run(&alone, &[v]);
        let name = format!("{v}-seed0");
        for f in [
            "log.jsonl",
            "adapters.safetensors",
            "head.json",
            "probe.jsonl",
            "outcome.json",
        ] {
            assert!(
                std::fs::read(together.join(&name).join(f)).unwrap()
                    == std::fs::read(alone.join(&name).join(f)).unwrap(),
                "{name}/{f}: together and alone differ"
            );
        }
        assert_eq!(all["outcomes"][k], summary(&alone)["outcomes"][0], "{v}");
    }
}

/// Catches reward-model scale settings that do not reach what they claim to: `feature_scale`
/// multiplies every feature, so the gradient term `∇r(y)·(∇r(y) - ∇r(ref))` of the first
/// iteration with a winner other than the reference (a zero head: every reward 0, the same
/// winner) is exactly 4 times larger at scale 2 (a power of two scales f32 and f64 exactly); `head_steps` moves the head further on the same
/// pairs; raw features are not the normalised ones; the base model's hidden states are; the MLP
/// head is the one that runs.
#[test]
fn the_reward_models_scale_settings_reach_its_features_and_head() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| -> Vec<Value> {
        let out = tmp.path().join(name);
        let mut args = vec![
            "--set",
            "train.iterations=3",
            "--set",
            "train.rm.init=untrained",
            "--set",
            "eval.metrics=[]",
            "--set",
            "eval.tasks=[]",
        ];
        args.extend_from_slice(extra);
        let o = command(&out, &args).output().unwrap();
        assert!(
            o.status.success(),
            "fpo run {extra:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        log_without_seconds(&out.join("relaxed-seed0"))
    };
    let base = run("base", &[]);
    // The first iteration whose winner is not the reference itself (then every term is 0). The
    // head is still zero there (a zero gradient moved nothing), so every reward is 0 and the
    // winner is the same at any scale: every penalty scales by s².
    let i = base
        .iter()
        .position(|l| l["grad_term"].as_f64().unwrap() != 0.0)
        .expect("a winner other than the reference");
    let term = |log: &[Value]| log[i]["grad_term"].as_f64().unwrap();
    let scaled = run("scaled", &["--set", "train.rm.feature_scale=2"]);
    assert_eq!(scaled[i]["winner"], base[i]["winner"]);
    assert!(
        (term(&scaled) - 4.0 * term(&base)).abs() <= 1e-12 * term(&base).abs(),
        "{} vs 4 x {}",
        term(&scaled),
        term(&base)
    );
    let follower = |log: &[Value]| log[i]["follower"]["delta_margin"].as_f64().unwrap();
    let stepped = run("stepped", &["--set", "train.rm.head_steps=3"]);
    assert_eq!(term(&stepped), term(&base), "the same features");
    assert!(
        follower(&stepped).abs() > follower(&base).abs(),
        "three steps move the head further: {} vs {}",
        follower(&stepped),
        follower(&base)
    );
    let raw = run("raw", &["--set", "train.rm.features=raw"]);
    assert!(
        (term(&raw) - term(&base)).abs() > 1e-6 * term(&base).abs(),
        "raw features are not the normalised ones"
    );
    // Features from the policy's base model: its hidden size (SmolLM2-135M: 576, MiniLM: 384).
    let width = |name: &str| {
        let head =
            std::fs::read_to_string(tmp.path().join(name).join("relaxed-seed0/head.json")).unwrap();
        serde_json::from_str::<Value>(&head).unwrap()["w"]
            .as_array()
            .unwrap()
            .len()
    };
    run("base-mean", &["--set", "train.rm.backbone=base-mean"]);
    assert_eq!((width("base"), width("base-mean")), (384, 576));
    // The MLP head: 8 tanh units over the 384 features in head.json, and a gradient term that
    // is its own (`(v(1 - h²)φ, v(1 - h²), h, 1)`, not `(φ, 1)`).
    let mlp = run("mlp", &["--set", "train.rm.head_hidden=8"]);
    assert_eq!(width("mlp"), 8);
    let head: Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("mlp/relaxed-seed0/head.json")).unwrap(),
    )
    .unwrap();
    let rows = head["hidden"]["w"].as_array().unwrap();
    assert_eq!((rows.len(), rows[0].as_array().unwrap().len()), (8, 384));
    assert!(
        mlp.iter().any(|l| l["grad_term"].as_f64().unwrap() != 0.0)
            && mlp
                .iter()
                .zip(&base)
                .any(|(m, b)| m["grad_term"] != b["grad_term"]),
        "the MLP's gradient term is its own"
    );
}
