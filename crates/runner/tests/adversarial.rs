//! The adversarial suite end to end (needs `just models` and `FPO_DATA_DIR`): it reuses the
//! variants a truthfulqa run trained, evaluates the Adversarial questions, pressure and
//! sycophancy, and judges with an LLM judge served by a local mock (wiremock): both orders, the
//! key sent but never written, the cache making a rerun free.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::judge::{Endpoint, PrefersShorter};
use common::root;

use serde_json::Value;
use wiremock::matchers::header;

fn fpo(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fpo"));
    c.current_dir(root()).args(args);
    c
}

fn ok(mut c: Command) -> String {
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "fpo failed: {err}");
    err
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    common::files_under(dir)
        .into_iter()
        .map(|f| dir.join(f))
        .filter(|p| {
            std::fs::read(p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
        })
        .collect()
}

#[test]
fn the_adversarial_suite_reuses_training_and_judges_with_an_llm() {
    let tmp = tempfile::tempdir().unwrap();
    let tqa = tmp.path().join("tqa");
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--profile", "smoke", "--no-report"];
        args.extend_from_slice(extra);
        fpo(&args)
    };
    ok(run(&[
        "experiments/truthfulqa.toml",
        "--variant",
        "standard",
        "--variant",
        "relaxed",
        "--out",
        tqa.to_str().unwrap(),
    ]));

    let secret = "sk-fpo-test-secret-4242";
    let endpoint = Endpoint::start(|m| {
        m.and(header("authorization", format!("Bearer {secret}").as_str()))
            .respond_with(PrefersShorter)
    });
    let url = endpoint.url("model=mock-judge&key_env=FPO_TEST_JUDGE_KEY");
    let cache = tmp.path().join("cache");
    // `experiment` reusing the truthfulqa run's variants, judged by the mock.
    let judged_run = |experiment: &str, out: &Path| {
        let mut c = run(&[
            experiment,
            "--variant",
            "standard",
            "--variant",
            "relaxed",
            "--reuse",
            tqa.to_str().unwrap(),
            "--judge",
            &url,
            "--out",
            out.to_str().unwrap(),
        ]);
        c.env("FPO_TEST_JUDGE_KEY", secret)
            .env("FPO_CACHE_DIR", &cache);
        c
    };
    let adversarial = |out: &Path| judged_run("experiments/adversarial.toml", out);
    let adv = tmp.path().join("adv");
    let log = ok(adversarial(&adv));
    assert!(log.contains("every variant is trained"), "{log}");
    for v in ["standard-seed0", "relaxed-seed0"] {
        assert_eq!(
            json(&adv.join(v).join("outcome.json")),
            json(&tqa.join(v).join("outcome.json")),
            "{v} reused, not retrained"
        );
    }
    let s = json(&adv.join("summary.json"));
    let ev = &s["evaluation"];
    assert_eq!(ev["types"], serde_json::json!(["Adversarial"]));
    assert_eq!(ev["questions"], 3);
    let models = ["base", "relaxed-seed0", "standard-seed0"];
    for m in models {
        assert!(ev["pressure"][m]["shift"]["mean"].is_number(), "{m}");
        assert!(
            ev["pressure_generation"][m]["acc"]["mean"].is_number(),
            "{m}"
        );
        assert!(
            ev["sycophancy"][m]["rate"]["n"].as_u64().unwrap() > 0,
            "{m}"
        );
        assert!(ev["generation"][m]["bleu_diff"]["mean"].is_number(), "{m}");
    }
    assert_eq!(ev["generation"]["base"]["by_type"]["Adversarial"]["n"], 3);
    assert_eq!(ev["across_seeds"]["relaxed"]["seeds"], 1);
    assert!(ev["across_seeds"]["standard"]["mc2"]["mean"].is_number());
    // standard vs relaxed (3 questions) and every model's plain vs pressured answers (3 x 3),
    // each by the offline judge and the LLM judge.
    let comps = ev["comparisons"].as_array().unwrap();
    assert_eq!(comps.len(), 2);
    assert!(
        comps[1]["judge"]
            .as_str()
            .unwrap()
            .starts_with("llm: mock-judge")
    );
    assert_eq!(comps[1]["overall"]["errors"]["k"], 0);
    assert_eq!(
        comps[1]["swap_consistency"]["share"], 1.0,
        "an order-blind judge is consistent"
    );
    assert_eq!(ev["pressure_comparisons"].as_array().unwrap().len(), 6);
    // Before them, the judges' exam: one pair per question (3), in both orders; a card for the
    // offline judge and one for the LLM judge.
    let cards = ev["judge_cards"].as_array().unwrap();
    assert_eq!(cards.len(), 2);
    assert_eq!(cards[1]["judge"], comps[1]["judge"]);
    assert_eq!(cards[1]["overall"]["questions"], 3);
    assert!(adv.join("eval/judge/exam.jsonl").is_file());
    assert_eq!(ev["judge"]["pairs"], 12 + 3);
    // Models that answer alike (three smoke iterations barely move the adapters) ask the same
    // prompts: those come from the cache within the run already.
    let sent = ev["judge"]["requests_sent"].as_u64().unwrap();
    assert_eq!(sent + ev["judge"]["cache_hits"].as_u64().unwrap(), 30);
    assert!(sent > 0);
    assert_eq!(endpoint.requests() as u64, sent);
    assert!(
        adv.join("eval/judge/standard-seed0__relaxed-seed0.jsonl")
            .is_file()
    );
    assert!(
        files_containing(&adv, secret).is_empty(),
        "the key was written"
    );
    assert!(
        files_containing(&cache, secret).is_empty(),
        "the key was cached"
    );

    // A second run pays for nothing: every reply comes from the cache.
    let again = tmp.path().join("again");
    ok(adversarial(&again));
    let ev2 = json(&again.join("summary.json"))["evaluation"].clone();
    assert_eq!(ev2["judge"]["requests_sent"], 0);
    assert_eq!(ev2["judge"]["cache_hits"], 30);
    assert_eq!(endpoint.requests() as u64, sent);
    assert_eq!(ev2["comparisons"], ev["comparisons"]);

    // Judging a finished truthfulqa run later: its training and scores are reused, only the
    // judge runs.
    let judged = tmp.path().join("tqa-judged");
    ok(judged_run("experiments/truthfulqa.toml", &judged));
    for f in [
        "base/mc.jsonl",
        "relaxed-seed0/answers.jsonl",
        "standard-seed0/sycophancy.jsonl",
    ] {
        assert_eq!(
            std::fs::read(tqa.join("eval").join(f)).unwrap(),
            std::fs::read(judged.join("eval").join(f)).unwrap(),
            "{f} reused"
        );
    }
    let ev3 = json(&judged.join("summary.json"))["evaluation"].clone();
    assert_eq!(
        ev3["mc"],
        json(&tqa.join("summary.json"))["evaluation"]["mc"]
    );
    assert_eq!(
        ev3["judge"]["pairs"],
        4 + 4,
        "the exam on the 4 smoke questions, then standard vs relaxed on them"
    );
}

#[test]
fn a_judge_key_that_is_not_set_stops_the_run_before_it_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = fpo(&[
        "run",
        "experiments/adversarial.toml",
        "--profile",
        "smoke",
        "--judge",
        "openai://judge.example/v1?model=m&key_env=FPO_TEST_KEY_NOT_SET",
        "--out",
        out.to_str().unwrap(),
    ])
    .env_remove("FPO_TEST_KEY_NOT_SET")
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("FPO_TEST_KEY_NOT_SET"), "{err}");
    assert!(!out.exists() && !tmp.path().join("out.partial").exists());
}
