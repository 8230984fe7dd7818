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

/// A mock chat-completions endpoint on localhost (`POST /v1/chat/completions`), on its own
/// runtime, answering as the mock `mock` makes of that request matcher.
pub struct Endpoint {
    rt: tokio::runtime::Runtime,
    server: wiremock::MockServer,
}

impl Endpoint {
    /// Starts the server and mounts `mock(matcher)`, e.g. `|m| m.respond_with(PrefersShorter)`.
    pub fn start(mock: impl FnOnce(wiremock::MockBuilder) -> wiremock::Mock) -> Self {
        use wiremock::matchers::{method, path};
        let rt = tokio::runtime::Runtime::new().unwrap();
        let server = rt.block_on(wiremock::MockServer::start());
        let matcher = wiremock::Mock::given(method("POST")).and(path("/v1/chat/completions"));
        rt.block_on(mock(matcher).mount(&server));
        Self { rt, server }
    }

    /// The `--judge` URL of this endpoint, with `query` (`model=NAME[&...]`).
    pub fn url(&self, query: &str) -> String {
        format!("openai+http://{}/v1?{query}", self.server.address())
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.rt
            .block_on(self.server.received_requests())
            .unwrap()
            .len()
    }
}
