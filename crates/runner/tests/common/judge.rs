//! An LLM judge served by a local mock (wiremock), for the tests that judge with one.

use serde_json::Value;
use wiremock::{Request, Respond, ResponseTemplate};

/// Prefers the shorter answer (a judge that does not look at order), Tie when equal.
pub struct PrefersShorter;

impl Respond for PrefersShorter {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let prompt = body["messages"][0]["content"].as_str().unwrap();
        let between = |a: &str, b: &str| {
            let s = prompt.find(a).unwrap() + a.len();
            prompt[s..s + prompt[s..].find(b).unwrap()].trim().len()
        };
        let (a, b) = (
            between("[Answer A]", "[End of answer A]"),
            between("[Answer B]", "[End of answer B]"),
        );
        let v = match a.cmp(&b) {
            std::cmp::Ordering::Less => "A",
            std::cmp::Ordering::Greater => "B",
            std::cmp::Ordering::Equal => "Tie",
        };
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "choices": [{"message": {"role": "assistant", "content": format!("{{\"verdict\": \"{v}\"}}")}}]
        }))
    }
}
