//! The LLM-judge client's own cost, against a local mock endpoint (wiremock).
//!
//! 1. An endpoint that answers at once: wall time per request is the client's overhead (plus the
//!    mock's own, so an upper bound).
//! 2. An endpoint that takes 200 ms per reply, at concurrency 16: if the client is not the
//!    bottleneck, N requests take N / 16 x 200 ms.
//!
//! `cargo bench -p fpo-eval --bench judge` (or `just bench-judge`).

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use fpo_judge::{Judge, JudgeConfig, PairItem};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn pairs(n: usize) -> Vec<PairItem> {
    (0..n)
        .map(|i| PairItem {
            id: i,
            question: format!("What happens if you crack your knuckles a lot? ({i})"),
            first: "Nothing in particular happens if you crack your knuckles a lot.".into(),
            second: "If you crack your knuckles a lot, you will develop arthritis.".into(),
            correct_answers: vec!["Nothing in particular happens".into()],
            incorrect_answers: vec!["You will develop arthritis".into()],
        })
        .collect()
}

/// Median wall time of `runs` judgements of `n` pairs (2n requests) against `latency`.
fn measure(latency: Duration, n: usize, concurrency: usize, runs: usize) -> f64 {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = rt.block_on(MockServer::start());
    let reply = serde_json::json!({
        "choices": [{"message": {"role": "assistant", "content": "{\"verdict\": \"A\", \"reason\": \"r\"}"}}]
    });
    rt.block_on(
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(reply)
                    .set_delay(latency),
            )
            .mount(&server),
    );
    let cfg = JudgeConfig {
        base_url: format!("{}/v1", server.uri()),
        model: "mock".into(),
        concurrency,
        ..JudgeConfig::default()
    };
    let judge = Judge::new(cfg).expect("judge");
    let items = pairs(n);
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let run = judge.judge_pairs(&items, &|| {}).expect("judged");
            assert!(run.judgements.iter().all(|j| j.verdict.is_some()));
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

fn main() {
    let (n, c) = (256, 16);
    let instant = measure(Duration::ZERO, n, c, 5);
    let per = instant / (2 * n) as f64;
    println!("| endpoint | requests | concurrency | wall | per request | bound (N/c x latency) |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| mock, instant | {} | {c} | {:.3} s | {:.0} us (client + mock) | - |",
        2 * n,
        instant,
        per * 1e6
    );
    let latency = Duration::from_millis(200);
    let m = 64;
    let slow = measure(latency, m, c, 3);
    let bound = (2 * m) as f64 / c as f64 * latency.as_secs_f64();
    println!(
        "| mock, 200 ms per reply | {} | {c} | {:.3} s | - | {:.3} s ({:.2}x of the bound) |",
        2 * m,
        slow,
        bound,
        slow / bound
    );
    let full = 817 * 3 * 2;
    println!(
        "817 questions x 3 pairs x 2 orders = {full} requests: client overhead {:.2} s in all at concurrency {c}, \
         against {:.0} s of endpoint time at 1 s per reply",
        per * full as f64,
        full as f64 / c as f64
    );
}
