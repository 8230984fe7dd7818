//! `fpo judge-check` (needs `just models`): the judges' exam by itself, the offline judge's card
//! and an LLM judge's (a mock that always answers A, wiremock), its replies cached.

mod common;

use std::process::Command;

use common::judge::Endpoint;
use common::root;
use serde_json::Value;
use wiremock::ResponseTemplate;

/// Catches a judge-check that scores a judge that always answers A as accurate, prints no card
/// for the offline judge, or asks the judge again for what its cache holds.
#[test]
fn judge_check_gives_each_judge_its_card() {
    let tmp = tempfile::tempdir().unwrap();
    let endpoint = Endpoint::start(|m| {
        m.respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "choices": [{"message": {"role": "assistant", "content": "{\"verdict\": \"A\", \"reason\": \"first\"}"}}]
        })))
    });
    let judge = endpoint.url("model=always-a");
    let check = || {
        let out = Command::new(env!("CARGO_BIN_EXE_fpo"))
            .current_dir(root())
            .args(["judge-check", "--limit", "12", "--json", "--judge", &judge])
            .env("FPO_CACHE_DIR", tmp.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        let cards: Value = serde_json::from_slice(&out.stdout).unwrap();
        (cards, stderr)
    };
    let (cards, stderr) = check();
    let cards = cards.as_array().unwrap();
    assert_eq!(cards.len(), 2, "{cards:?}");
    assert!(cards[0]["judge"].as_str().unwrap().starts_with("offline"));
    let questions = cards[0]["overall"]["questions"].as_u64().unwrap();
    assert!((10..=12).contains(&questions), "{questions}");
    let llm = &cards[1]["overall"];
    assert_eq!(llm["questions"].as_u64(), Some(questions));
    assert_eq!(llm["position_bias"]["share"], 1.0);
    assert_eq!(llm["accuracy"]["share"], 0.5);
    assert_eq!(llm["combined_accuracy"]["share"], 0.0);
    assert_eq!(cards[1]["passed"], false);
    assert!(
        stderr.contains(&format!("{} requests sent", 2 * questions)),
        "{stderr}"
    );
    let sent = endpoint.requests();
    let (again, stderr) = check();
    assert_eq!(
        again.as_array().unwrap()[1]["overall"]["accuracy"],
        *llm.get("accuracy").unwrap()
    );
    assert!(stderr.contains("0 requests sent"), "{stderr}");
    assert_eq!(endpoint.requests(), sent);
}
