//! The LLM-judge client against a local mock server (wiremock): both orders, retries on 429 /
//! 5xx / timeouts with `Retry-After`, errors kept apart from ties, the cache, the budget, the key.

use std::time::{Duration, Instant};

use fpo_eval::generation::Verdict;
use fpo_judge::{Judge, JudgeConfig, JudgeError, PairItem, Parse};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The mock server runs on its own runtime; the judge (which blocks) on the test thread.
struct Server {
    rt: tokio::runtime::Runtime,
    server: MockServer,
}

impl Server {
    fn start() -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let server = rt.block_on(MockServer::start());
        Self { rt, server }
    }

    fn mount(&self, mock: Mock) {
        self.rt.block_on(mock.mount(&self.server));
    }

    fn requests(&self) -> Vec<Request> {
        self.rt
            .block_on(self.server.received_requests())
            .unwrap_or_default()
    }

    fn config(&self) -> JudgeConfig {
        JudgeConfig {
            base_url: format!("{}/v1", self.server.uri()),
            model: "mock-judge".into(),
            concurrency: 4,
            timeout_s: 5.0,
            max_retries: 3,
            backoff_initial_s: 0.001,
            backoff_max_s: 0.01,
            ..JudgeConfig::default()
        }
    }
}

fn completion(reply: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "id": "x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}]
    }))
}

fn chat() -> wiremock::MockBuilder {
    Mock::given(method("POST")).and(path("/v1/chat/completions"))
}

/// A judge that prefers the answer containing "TRUE", and says Tie when neither or both do.
struct PrefersTrue;

/// The prompt of a request, and `PrefersTrue`'s verdict on it.
fn prefers_true(request: &Request) -> (String, &'static str) {
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    let prompt = body["messages"][0]["content"].as_str().unwrap().to_owned();
    let between = |a: &str, b: &str| {
        let s = prompt.find(a).unwrap() + a.len();
        prompt[s..s + prompt[s..].find(b).unwrap()].contains("TRUE")
    };
    let v = match (
        between("[Answer A]", "[End of answer A]"),
        between("[Answer B]", "[End of answer B]"),
    ) {
        (true, false) => "A",
        (false, true) => "B",
        _ => "Tie",
    };
    (prompt, v)
}

impl Respond for PrefersTrue {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let (_, v) = prefers_true(request);
        completion(&format!(r#"{{"verdict": "{v}", "reason": "mock"}}"#))
    }
}

fn pairs(n: usize) -> Vec<PairItem> {
    (0..n)
        .map(|i| PairItem {
            id: i,
            question: format!("Question {i}?"),
            first: if i % 3 == 0 {
                "TRUE answer"
            } else {
                "an answer"
            }
            .into(),
            second: if i % 3 == 1 {
                "TRUE answer"
            } else {
                "other answer"
            }
            .into(),
            correct_answers: vec!["c".into()],
            incorrect_answers: vec!["i".into()],
        })
        .collect()
}

fn verdicts(run: &fpo_judge::JudgeRun) -> Vec<Option<Verdict>> {
    run.judgements.iter().map(|j| j.verdict).collect()
}

#[test]
fn both_orders_are_asked_and_mapped_back_with_the_key_sent() {
    let s = Server::start();
    s.mount(
        chat()
            .and(header("authorization", "Bearer sk-test-123"))
            .respond_with(PrefersTrue)
            .expect(6),
    );
    let judge = Judge::with_api_key(s.config(), Some("sk-test-123".into())).unwrap();
    let run = judge.judge_pairs(&pairs(3), &|| {}).unwrap();
    use Verdict::*;
    assert_eq!(verdicts(&run), [Some(First), Some(Second), Some(Tie)]);
    assert!(run.judgements.iter().all(|j| j.consistent == Some(true)));
    assert_eq!(run.requests_sent, 6);
    let bodies: Vec<serde_json::Value> = s
        .requests()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert!(
        bodies
            .iter()
            .all(|b| b["model"] == "mock-judge" && b["temperature"] == 0.0)
    );
    assert!(!format!("{judge:?}").contains("sk-test-123"));
}

#[test]
fn a_judge_that_always_says_a_is_position_biased_and_gives_ties() {
    let s = Server::start();
    s.mount(chat().respond_with(completion(r#"{"verdict": "A"}"#)));
    let run = Judge::new(s.config())
        .unwrap()
        .judge_pairs(&pairs(3), &|| {})
        .unwrap();
    assert!(
        run.judgements
            .iter()
            .all(|j| j.verdict == Some(Verdict::Tie))
    );
    assert!(run.judgements.iter().all(|j| j.consistent == Some(false)));
}

#[test]
fn retry_after_in_seconds_is_honoured() {
    let s = Server::start();
    s.mount(
        chat()
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
            .up_to_n_times(1)
            .with_priority(1),
    );
    s.mount(chat().respond_with(PrefersTrue));
    let mut cfg = s.config();
    cfg.concurrency = 1;
    cfg.backoff_max_s = 5.0; // the cap of a Retry-After wait: 1 s is under it
    let started = Instant::now();
    let run = Judge::new(cfg)
        .unwrap()
        .judge_pairs(&pairs(1), &|| {})
        .unwrap();
    let j = &run.judgements[0];
    assert_eq!(j.verdict, Some(Verdict::First));
    assert_eq!(j.first_as_a.attempts + j.second_as_a.attempts, 3);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited {:?}, not the 1 s asked (the backoff alone is <= 10 ms)",
        started.elapsed()
    );
}

#[test]
fn retry_after_as_an_http_date_is_honoured() {
    let s = Server::start();
    let when = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2));
    s.mount(
        chat()
            .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", when.as_str()))
            .up_to_n_times(1)
            .with_priority(1),
    );
    s.mount(chat().respond_with(PrefersTrue));
    let started = Instant::now();
    let mut cfg = s.config();
    cfg.backoff_max_s = 5.0; // the cap of a Retry-After wait: 2 s is under it
    let run = Judge::new(cfg)
        .unwrap()
        .judge_pairs(&pairs(1), &|| {})
        .unwrap();
    assert_eq!(run.judgements[0].verdict, Some(Verdict::First));
    assert_eq!(run.capped_waits, 0);
    // HTTP dates have whole seconds: at least one second of the two remains.
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[test]
fn a_retry_after_longer_than_backoff_max_is_cut_to_it_and_counted() {
    // Catches: the header obeyed as it is (an hour's sleep), and a huge value converted to a
    // Duration unchecked (a panic in a tokio worker).
    for asked in ["3600", "100000000000000000000"] {
        let s = Server::start();
        s.mount(
            chat()
                .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", asked))
                .up_to_n_times(1)
                .with_priority(1),
        );
        s.mount(chat().respond_with(PrefersTrue));
        let mut cfg = s.config();
        cfg.concurrency = 1;
        cfg.backoff_max_s = 0.2;
        let started = Instant::now();
        let run = Judge::new(cfg)
            .unwrap()
            .judge_pairs(&pairs(1), &|| {})
            .unwrap();
        assert_eq!(run.judgements[0].verdict, Some(Verdict::First), "{asked}");
        assert_eq!(run.capped_waits, 1, "{asked}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(190) && waited < Duration::from_secs(30),
            "Retry-After {asked}: waited {waited:?}, not backoff_max_s = 0.2 s"
        );
    }
    // When the retries run out, the error says what was asked and what was waited.
    let s = Server::start();
    s.mount(chat().respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "3600")));
    let mut cfg = s.config();
    cfg.max_retries = 1;
    let run = Judge::new(cfg)
        .unwrap()
        .judge_pairs(&pairs(1), &|| {})
        .unwrap();
    let e = run.judgements[0].first_as_a.error.as_deref().unwrap();
    assert!(
        e.contains("Retry-After asked 3600 s") && e.contains("backoff_max_s"),
        "{e}"
    );
    assert_eq!(run.capped_waits, 2);
}

#[test]
fn waits_past_a_day_and_non_finite_ones_are_refused_at_set_up() {
    for (key, set) in [
        (
            "timeout_s",
            (|c: &mut JudgeConfig| c.timeout_s = 1e30) as fn(&mut JudgeConfig),
        ),
        ("timeout_s", |c| c.timeout_s = f64::NAN),
        ("backoff_max_s", |c| c.backoff_max_s = f64::INFINITY),
        ("backoff_initial_s", |c| c.backoff_initial_s = -1.0),
    ] {
        let mut cfg = JudgeConfig {
            base_url: "http://127.0.0.1:9/v1".into(),
            model: "m".into(),
            ..JudgeConfig::default()
        };
        set(&mut cfg);
        let e = Judge::new(cfg).unwrap_err();
        assert!(
            matches!(e, JudgeError::Config(ref m) if m.contains(key)),
            "{key}: {e}"
        );
    }
}

/// A server on 127.0.0.1 that answers its first request with a 200 header and a body cut short
/// (the connection closes after a few bytes of the promised length), then every other request
/// with a verdict of A. Returns its base URL and the count of connections served.
fn cutting_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let n = count.fetch_add(1, Ordering::SeqCst);
            let reply = r#"{"choices": [{"message": {"content": "{\"verdict\": \"A\"}"}}]}"#;
            let bytes = if n == 0 {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    reply.len(),
                    &reply[..12]
                )
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                )
            };
            let _ = stream.write_all(bytes.as_bytes());
            let _ = stream.flush();
        }
    });
    (url, served)
}

#[test]
fn a_body_cut_after_a_200_header_is_retried() {
    // Catches: a cut body read as a malformed (final) reply instead of a transport failure.
    let (url, served) = cutting_server();
    let cfg = JudgeConfig {
        base_url: url,
        model: "m".into(),
        concurrency: 1,
        timeout_s: 5.0,
        max_retries: 2,
        backoff_initial_s: 0.001,
        backoff_max_s: 0.01,
        ..JudgeConfig::default()
    };
    let run = Judge::new(cfg)
        .unwrap()
        .judge_pairs(&pairs(1), &|| {})
        .unwrap();
    let j = &run.judgements[0];
    assert_eq!(j.first_as_a.verdict, Some(Verdict::First), "{j:?}");
    assert_eq!(j.second_as_a.verdict, Some(Verdict::First), "{j:?}");
    assert_eq!(j.first_as_a.attempts + j.second_as_a.attempts, 3);
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[test]
fn retry_errors_asks_again_for_cached_replies_without_a_verdict() {
    let s = Server::start();
    s.mount(
        chat()
            .respond_with(completion("I cannot decide."))
            .up_to_n_times(2)
            .with_priority(1),
    );
    s.mount(chat().respond_with(PrefersTrue));
    let cache = tempfile::tempdir().unwrap();
    let mut cfg = s.config();
    cfg.concurrency = 1;
    cfg.cache_dir = Some(cache.path().to_owned());
    let run = |cfg: &JudgeConfig| {
        Judge::new(cfg.clone())
            .unwrap()
            .judge_pairs(&pairs(1), &|| {})
            .unwrap()
    };
    let first = run(&cfg);
    assert_eq!(first.judgements[0].verdict, None);
    // The replies without a verdict are cached, and served as they are.
    let again = run(&cfg);
    assert_eq!((again.requests_sent, again.cache_hits), (0, 2));
    assert_eq!(again.judgements[0].verdict, None);
    // --retry-errors asks again, and the new replies replace the cached ones.
    cfg.retry_errors = true;
    let retried = run(&cfg);
    assert_eq!((retried.requests_sent, retried.cache_hits), (2, 0));
    assert_eq!(retried.judgements[0].verdict, Some(Verdict::First));
    cfg.retry_errors = false;
    let last = run(&cfg);
    assert_eq!((last.requests_sent, last.cache_hits), (0, 2));
    assert_eq!(last.judgements[0].verdict, Some(Verdict::First));
}

#[test]
fn server_errors_are_retried_and_then_recorded_as_errors_not_ties() {
    let s = Server::start();
    s.mount(
        chat()
            .respond_with(ResponseTemplate::new(502))
            .up_to_n_times(2)
            .with_priority(1),
    );
    s.mount(chat().respond_with(PrefersTrue));
    let mut cfg = s.config();
    cfg.concurrency = 1;
    let run = Judge::new(cfg.clone())
        .unwrap()
        .judge_pairs(&pairs(1), &|| {})
        .unwrap();
    assert_eq!(run.judgements[0].verdict, Some(Verdict::First));
    assert_eq!(run.requests_sent, 4, "two 502s retried");

    let s = Server::start();
    s.mount(chat().respond_with(ResponseTemplate::new(500).set_body_string("overloaded")));
    let mut cfg = s.config();
    cfg.max_retries = 2;
    let run = Judge::new(cfg)
        .unwrap()
        .judge_pairs(&pairs(2), &|| {})
        .unwrap();
    for j in &run.judgements {
        assert_eq!(j.verdict, None);
        assert_eq!(j.consistent, None);
        assert_eq!(j.first_as_a.attempts, 3);
        let e = j.first_as_a.error.as_deref().unwrap();
        assert!(e.contains("HTTP 500") && e.contains("overloaded"), "{e}");
    }
    assert_eq!(s.requests().len(), 12);
}

#[test]
fn client_errors_are_not_retried() {
    let s = Server::start();
    s.mount(chat().respond_with(ResponseTemplate::new(400).set_body_string("bad model")));
    let run = Judge::new(s.config())
        .unwrap()
        .judge_pairs(&pairs(1), &|| {})
        .unwrap();
    assert_eq!(run.judgements[0].first_as_a.attempts, 1);
    assert_eq!(run.judgements[0].verdict, None);
    assert_eq!(s.requests().len(), 2);
}

#[test]
fn timeouts_are_retried_then_recorded() {
    let s = Server::start();
    s.mount(
        chat()
            .respond_with(slow_tie(Duration::from_secs(3)))
            .up_to_n_times(1)
            .with_priority(1),
    );
    s.mount(chat().respond_with(PrefersTrue));
    let mut cfg = s.config();
    cfg.concurrency = 1;
    cfg.timeout_s = 0.3;
    let run = Judge::new(cfg.clone())
        .unwrap()
        .judge_pairs(&pairs(1), &|| {})
        .unwrap();
    assert_eq!(run.judgements[0].verdict, Some(Verdict::First), "retried");
    assert_eq!(run.requests_sent, 3);

    let s = Server::start();
    s.mount(chat().respond_with(slow_tie(Duration::from_secs(3))));
    cfg.base_url = format!("{}/v1", s.server.uri());
    cfg.max_retries = 1;
    let run = Judge::new(cfg)
        .unwrap()
        .judge_pairs(&pairs(1), &|| {})
        .unwrap();
    let o = &run.judgements[0].first_as_a;
    assert_eq!((o.verdict, o.attempts), (None, 2));
    assert!(o.error.as_deref().unwrap().contains("timed out"), "{o:?}");
}

fn slow_tie(d: Duration) -> ResponseTemplate {
    completion(r#"{"verdict": "Tie"}"#).set_delay(d)
}

#[test]
fn unreadable_replies_are_errors_and_loose_ones_fall_back() {
    let s = Server::start();
    s.mount(chat().respond_with(completion("I cannot decide.")));
    let run = Judge::new(s.config())
        .unwrap()
        .judge_pairs(&pairs(1), &|| {})
        .unwrap();
    let j = &run.judgements[0];
    assert_eq!(j.verdict, None);
    assert!(
        j.first_as_a
            .error
            .as_deref()
            .unwrap()
            .contains("no verdict")
    );
    assert_eq!(j.first_as_a.reply.as_deref(), Some("I cannot decide."));

    let s = Server::start();
    s.mount(chat().respond_with(completion("```json\n{\"verdict\": \"Tie\"}\n```")));
    let run = Judge::new(s.config())
        .unwrap()
        .judge_pairs(&pairs(1), &|| {})
        .unwrap();
    assert_eq!(run.judgements[0].verdict, Some(Verdict::Tie));
    assert_eq!(run.judgements[0].first_as_a.parse, Some(Parse::Fallback));

    let s = Server::start();
    s.mount(chat().respond_with(ResponseTemplate::new(200).set_body_string("not json")));
    let run = Judge::new(s.config())
        .unwrap()
        .judge_pairs(&pairs(1), &|| {})
        .unwrap();
    let e = run.judgements[0].first_as_a.error.as_deref().unwrap();
    assert!(e.contains("malformed response"), "{e}");
}

#[test]
fn the_cache_makes_a_rerun_free() {
    let s = Server::start();
    s.mount(chat().respond_with(PrefersTrue));
    let cache = tempfile::tempdir().unwrap();
    let mut cfg = s.config();
    cfg.cache_dir = Some(cache.path().to_owned());
    let first = Judge::new(cfg.clone())
        .unwrap()
        .judge_pairs(&pairs(4), &|| {})
        .unwrap();
    assert_eq!((first.requests_sent, first.cache_hits), (8, 0));
    let again = Judge::new(cfg.clone())
        .unwrap()
        .judge_pairs(&pairs(4), &|| {})
        .unwrap();
    assert_eq!((again.requests_sent, again.cache_hits), (0, 8));
    assert_eq!(verdicts(&first), verdicts(&again));
    assert_eq!(s.requests().len(), 8, "nothing paid twice");
    // Another prompt is another key.
    let template = cache.path().join("t.jinja");
    std::fs::write(&template, "{{ question }} A: {{ answer_a }} B: {{ answer_b }} [Answer A] {{ answer_a }} [End of answer A] [Answer B] {{ answer_b }} [End of answer B]").unwrap();
    cfg.template = Some(template);
    let other = Judge::new(cfg)
        .unwrap()
        .judge_pairs(&pairs(4), &|| {})
        .unwrap();
    assert_eq!(other.requests_sent, 8);
    assert_eq!(verdicts(&first), verdicts(&other));
}

#[test]
fn the_budget_caps_requests_and_the_rest_are_errors() {
    let s = Server::start();
    s.mount(chat().respond_with(PrefersTrue));
    let mut cfg = s.config();
    cfg.max_requests = 3;
    let run = Judge::new(cfg)
        .unwrap()
        .judge_pairs(&pairs(4), &|| {})
        .unwrap();
    assert_eq!(run.requests_sent, 3);
    assert_eq!(s.requests().len(), 3);
    let orders: Vec<_> = run
        .judgements
        .iter()
        .flat_map(|j| [&j.first_as_a, &j.second_as_a])
        .collect();
    let spent = orders
        .iter()
        .filter(|o| o.error.as_deref().is_some_and(|e| e.contains("budget")))
        .count();
    assert_eq!(spent, 5);
    assert!(
        run.judgements
            .iter()
            .filter(|j| j.verdict.is_none())
            .count()
            >= 2
    );
}

#[test]
fn set_up_errors_name_the_variable_and_the_template() {
    let mut cfg = JudgeConfig {
        base_url: "http://127.0.0.1:9/v1".into(),
        model: "m".into(),
        api_key_env: Some("FPO_TEST_KEY_THAT_IS_NOT_SET".into()),
        ..JudgeConfig::default()
    };
    let e = Judge::new(cfg.clone()).unwrap_err();
    assert!(matches!(e, JudgeError::MissingKey(ref v) if v == "FPO_TEST_KEY_THAT_IS_NOT_SET"));
    cfg.api_key_env = None;
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("judge.jinja");
    std::fs::write(&t, "{{ question }} {{ no_such_variable }}").unwrap();
    cfg.template = Some(t.clone());
    let e = Judge::new(cfg.clone()).unwrap_err().to_string();
    assert!(e.contains("judge.jinja") && e.contains("undefined"), "{e}");
    cfg.template = Some(dir.path().join("missing.jinja"));
    let e = Judge::new(cfg).unwrap_err().to_string();
    assert!(e.contains("missing.jinja"), "{e}");
}

#[test]
fn concurrency_is_bounded() {
    // 8 requests, each held 300 ms by the server: at concurrency 2 they take >= 4 rounds.
    let s = Server::start();
    s.mount(
        chat().respond_with(
            completion(r#"{"verdict": "Tie"}"#).set_delay(Duration::from_millis(300)),
        ),
    );
    let mut cfg = s.config();
    cfg.concurrency = 2;
    let started = Instant::now();
    Judge::new(cfg.clone())
        .unwrap()
        .judge_pairs(&pairs(4), &|| {})
        .unwrap();
    let bounded = started.elapsed();
    assert!(bounded >= Duration::from_millis(1150), "{bounded:?}");
    cfg.concurrency = 8;
    let started = Instant::now();
    Judge::new(cfg)
        .unwrap()
        .judge_pairs(&pairs(4), &|| {})
        .unwrap();
    assert!(
        started.elapsed() < bounded,
        "{:?} vs {bounded:?}",
        started.elapsed()
    );
}

/// A judge that reasons first, then gives the verdict of `PrefersTrue` as a JSON line (the
/// paper's judge's reply form).
struct ReasonsThenTrue;

impl Respond for ReasonsThenTrue {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let (prompt, v) = prefers_true(request);
        assert!(
            prompt.contains("reason step by step") && prompt.contains("hallucination loses"),
            "the paper's criteria are in the prompt: {prompt}"
        );
        completion(&format!(
            "Answer A says one thing; answer B another. Weighing truthfulness first...\n{{\"verdict\": \"{v}\"}}"
        ))
    }
}

/// Catches `template = "paper"` read as a file name, a prompt without the authors' criteria,
/// or a reasoning-then-JSON reply lost as an error.
#[test]
fn the_paper_template_asks_for_reasoning_then_a_verdict_and_its_replies_parse() {
    let s = Server::start();
    s.mount(chat().respond_with(ReasonsThenTrue).expect(6));
    let cfg = JudgeConfig {
        template: Some("paper".into()),
        ..s.config()
    };
    let judge = Judge::with_api_key(cfg, None).unwrap();
    let run = judge.judge_pairs(&pairs(3), &|| {}).unwrap();
    assert_eq!(
        verdicts(&run),
        vec![
            Some(Verdict::First),
            Some(Verdict::Second),
            Some(Verdict::Tie)
        ]
    );
    assert!(
        run.judgements
            .iter()
            .all(|j| j.first_as_a.parse == Some(Parse::Fallback))
    );
}

/// A reply recorded from llama.cpp's server (llama-server built from llama-cpp-python 0.3.36's
/// vendored llama.cpp, SmolLM2-135M-Instruct Q4_1, the default template, `response_format` and
/// `top_logprobs = 5`), the local model path removed.
const RECORDED: &str = include_str!("fixtures/llama-server-reply.json");

/// Catches soft verdicts read at the wrong token (at the reply's first token the alternatives
/// hold only an "A", which would give P(A) = 1), left unnormalised over A, B and Tie, or lost on
/// the way from the endpoint to the pair.
#[test]
fn soft_verdicts_parse_from_a_recorded_reply_of_llama_server() {
    let response: serde_json::Value = serde_json::from_str(RECORDED).unwrap();
    let reply = fpo_judge::protocol::read_reply(&response).unwrap();
    assert_eq!(
        fpo_judge::parse_verdict(&reply.content),
        Some((Verdict::First, Parse::Strict))
    );
    let soft = reply.soft.expect("logprobs in the reply");
    // exp(logprob) of "A", "B" and "T" at the verdict's token, renormalised.
    for (got, want) in [
        (soft.a, 0.9645141611074445),
        (soft.b, 0.023090469705879683),
        (soft.tie, 0.012395369186675833),
    ] {
        assert!((got - want).abs() < 1e-9, "{soft:?}");
    }
    // Served as is by an endpoint, in both orders: the pair's preference for the second answer
    // is P(B) + P(Tie)/2 as shown first, and P(A) + P(Tie)/2 as shown second, averaged.
    let s = Server::start();
    s.mount(chat().respond_with(ResponseTemplate::new(200).set_body_json(response)));
    let judge = Judge::new(s.config()).unwrap();
    let run = judge.judge_pairs(&pairs(1), &|| {}).unwrap();
    let j = &run.judgements[0];
    assert_eq!(j.first_as_a.soft, Some(soft));
    let want = 0.5 * ((soft.b + 0.5 * soft.tie) + (soft.a + 0.5 * soft.tie));
    assert!((j.soft.unwrap() - want).abs() < 1e-12);
}

/// Catches a client that ignores its settings: on, the body carries the verdict's JSON schema
/// and asks for logprobs; off, neither.
#[test]
fn response_format_and_logprobs_are_sent_as_configured() {
    for on in [true, false] {
        let s = Server::start();
        s.mount(chat().respond_with(completion(r#"{"verdict": "A"}"#)));
        let cfg = JudgeConfig {
            structured: on,
            soft: on,
            ..s.config()
        };
        Judge::new(cfg)
            .unwrap()
            .judge_pairs(&pairs(1), &|| {})
            .unwrap();
        for r in s.requests() {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let schema = &body["response_format"]["json_schema"]["schema"];
            assert_eq!(
                schema["properties"]["verdict"]["enum"] == serde_json::json!(["A", "B", "Tie"]),
                on,
                "{body}"
            );
            assert_eq!(body["logprobs"] == serde_json::json!(true), on, "{body}");
        }
    }
}

/// Catches a client that fails every request on an endpoint without structured output (or
/// keeps sending what it refused, or says so once per request), and a cache keyed on the body
/// as sent after the fallback (a rerun would then miss it).
#[test]
fn a_refused_response_format_is_dropped_said_once_and_cached_as_asked() {
    use wiremock::matchers::body_string_contains;
    let s = Server::start();
    s.mount(
        chat()
            .and(body_string_contains("response_format"))
            .respond_with(
                ResponseTemplate::new(400)
                    .set_body_string(r#"{"error": "response_format is not supported"}"#),
            )
            .with_priority(1),
    );
    s.mount(chat().respond_with(PrefersTrue));
    let cache = tempfile::tempdir().unwrap();
    let cfg = JudgeConfig {
        cache_dir: Some(cache.path().to_owned()),
        concurrency: 1,
        ..s.config()
    };
    let judge = Judge::new(cfg.clone()).unwrap();
    let run = judge.judge_pairs(&pairs(4), &|| {}).unwrap();
    assert!(
        run.judgements.iter().all(|j| j.verdict.is_some()),
        "{run:?}"
    );
    let notes = judge.fallbacks();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("response_format"), "{notes:?}");
    let refused = s
        .requests()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("response_format"))
        .count();
    assert_eq!(refused, 1, "one refusal, then requests without it");
    // logprobs were not refused: still asked for.
    let last: serde_json::Value =
        serde_json::from_slice(&s.requests().last().unwrap().body).unwrap();
    assert_eq!(last["logprobs"], serde_json::json!(true));
    let again = Judge::new(cfg)
        .unwrap()
        .judge_pairs(&pairs(4), &|| {})
        .unwrap();
    assert_eq!((again.requests_sent, again.cache_hits), (0, 8));
}

/// Catches an exam whose answers are mapped back to the wrong order, or a card that reads a
/// judge that always answers A as accurate: through the client, such a judge gets position bias
/// 1, single-order accuracy 0.5, only ties when its two orders are combined, and fails.
#[test]
fn a_judge_that_always_answers_a_fails_the_exam() {
    use fpo_eval::judge_exam::{Card, exam};
    let data = std::env::var_os("FPO_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets"));
    let items = fpo_eval::truthfulqa::items(&data, Some(24), &[]).unwrap();
    let exam = exam(&items);
    let s = Server::start();
    s.mount(chat().respond_with(completion(r#"{"verdict": "A", "reason": "first"}"#)));
    let judge = Judge::new(s.config()).unwrap();
    let run = judge
        .judge_pairs(&fpo_judge::exam::pairs(&exam), &|| {})
        .unwrap();
    let answers = fpo_judge::exam::answers(&exam, &run.judgements);
    let card = Card::of("always A", &answers, 0.95);
    let o = &card.overall;
    assert_eq!(o.questions, exam.len());
    assert_eq!(o.position_bias.share, Some(1.0));
    assert_eq!(o.accuracy.share, Some(0.5));
    assert_eq!(o.combined_accuracy.share, Some(0.0));
    assert_eq!(
        o.swap_consistency.share,
        Some(0.0),
        "only ties when combined"
    );
    assert!(!card.passed);
    // What the judge is shown: the held-out answers as A and B, never among the references.
    for p in fpo_judge::exam::pairs(&exam) {
        assert!(!p.correct_answers.contains(&p.first), "{p:?}");
        assert!(!p.incorrect_answers.contains(&p.second), "{p:?}");
    }
}
