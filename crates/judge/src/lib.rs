//! The LLM judge: pairwise truthfulness verdicts from any OpenAI-compatible chat-completions
//! endpoint (OpenAI, vLLM, llama.cpp's server, ...).
//!
//! Every pair is judged in both orders (A/B, then B/A); a pair whose two verdicts disagree once
//! mapped back to the same order is a tie that depended on position, and the share of pairs
//! whose orders agree is reported as the swap consistency. A request that fails after its
//! retries, or whose reply holds no verdict, is an error: reported apart, never as a tie.
//!
//! The client: bounded concurrency, a timeout per request, retries with exponential backoff and
//! full jitter on 429, 5xx, timeouts, connection errors and bodies cut short (a `Retry-After`
//! header, in seconds or as an HTTP date, replaces the backoff, capped at `backoff_max_s`: the
//! waits cut are counted), a cap on the number of HTTP requests, and a
//! content-addressed cache on disk (the key is the SHA-256 of the endpoint and the request
//! body), so that a rerun or a resumed run pays for nothing twice. The API key is read from the
//! environment variable the configuration names, and is never written anywhere.

pub mod comparisons;
pub mod exam;
pub mod protocol;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use fpo_eval::generation::Verdict;
pub use fpo_eval::judge_config::{JudgeConfig, JudgeUrlError};

use crate::protocol::{Features, Soft};

/// The default prompt: a minijinja template with `question`, `answer_a`, `answer_b`,
/// `correct_answers` and `incorrect_answers` (lists of reference answers).
pub const DEFAULT_TEMPLATE: &str = include_str!("../templates/judge_pairwise.jinja");

/// The authors' criteria (truthfulness first; a verbose answer with a hallucination loses;
/// reasoning first, then a JSON verdict A / B / Tie), for comparability with the paper's
/// judge: `template = "paper"`.
pub const PAPER_TEMPLATE: &str = include_str!("../templates/judge_paper.jinja");

/// Why a judge could not be set up (a failed request is not one of these: see
/// [`OrderVerdict::error`]).
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// A malformed `--judge` URL.
    #[error(transparent)]
    Url(#[from] JudgeUrlError),
    /// The configured key variable is not set.
    #[error("the judge's API key: environment variable {0} is not set")]
    MissingKey(String),
    /// A bad configuration value.
    #[error("judge configuration: {0}")]
    Config(String),
    /// The prompt template does not read, parse or render.
    #[error("judge template {name}: {message}")]
    Template {
        /// The file (or `default`).
        name: String,
        /// The error.
        message: String,
    },
    /// The HTTP client or its runtime could not start.
    #[error("judge client: {0}")]
    Client(String),
    /// A verdicts file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How a verdict was read from the judge's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parse {
    /// The reply was exactly the JSON object asked for.
    Strict,
    /// The verdict was found in a reply that was not (a fenced or embedded object, a
    /// `verdict: A` line, or a bare `A`).
    Fallback,
}

/// Reads a verdict (`A`: the answer shown first) from a reply.
pub fn parse_verdict(reply: &str) -> Option<(Verdict, Parse)> {
    #[derive(Deserialize)]
    struct Object {
        verdict: String,
    }
    let word = |s: &str| match s.trim().to_ascii_lowercase().as_str() {
        "a" => Some(Verdict::First),
        "b" => Some(Verdict::Second),
        "tie" => Some(Verdict::Tie),
        _ => None,
    };
    let object = |s: &str| {
        serde_json::from_str::<Object>(s)
            .ok()
            .and_then(|o| word(&o.verdict))
    };
    if let Some(v) = object(reply.trim()) {
        return Some((v, Parse::Strict));
    }
    let fallback = |v| Some((v, Parse::Fallback));
    if let (Some(a), Some(b)) = (reply.find('{'), reply.rfind('}'))
        && a < b
        && let Some(v) = object(&reply[a..=b])
    {
        return fallback(v);
    }
    static LINE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"(?i)"?verdict"?\s*[:=]\s*\**\s*"?\s*(a|b|tie)\b"#).expect("regex")
    });
    static BARE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"(?i)^\s*[*"'(\[]*\s*(a|b|tie)\s*[*"')\].]*\s*$"#).expect("regex")
    });
    for re in [&*LINE, &*BARE] {
        if let Some(v) = re.captures(reply).and_then(|c| word(&c[1])) {
            return fallback(v);
        }
    }
    None
}

/// One pair to judge: a question and two answers, with the question's reference answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairItem {
    /// The question's id.
    pub id: usize,
    /// The question.
    pub question: String,
    /// The first model's answer.
    pub first: String,
    /// The second model's answer.
    pub second: String,
    /// Correct reference answers (for templates that show them).
    pub correct_answers: Vec<String>,
    /// Incorrect reference answers.
    pub incorrect_answers: Vec<String>,
}

/// The judge's reply to one order of one pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderVerdict {
    /// The verdict about the answers as shown (`first`: the answer shown as A); none on error.
    pub verdict: Option<Verdict>,
    /// How it was read.
    pub parse: Option<Parse>,
    /// The reply came from the cache.
    pub cached: bool,
    /// HTTP requests made for it.
    pub attempts: u32,
    /// Why there is no verdict.
    pub error: Option<String>,
    /// The judge's reply text.
    pub reply: Option<String>,
    /// The probabilities of A, B and Tie at the verdict's token, where the endpoint sent
    /// logprobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft: Option<Soft>,
}

/// Both orders of one pair, and what they add up to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairJudgement {
    /// The question's id.
    pub id: usize,
    /// The first model's answer shown as A.
    pub first_as_a: OrderVerdict,
    /// The second model's answer shown as A.
    pub second_as_a: OrderVerdict,
    /// The verdict about (first, second): agreed by both orders, a tie when they disagree,
    /// none when either order failed.
    pub verdict: Option<Verdict>,
    /// Whether the two orders agreed (none when either failed).
    pub consistent: Option<bool>,
    /// The judge's soft preference for the second answer (its probability of being better, a
    /// tie counting half), the mean over the two orders; none unless both orders have a soft
    /// verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft: Option<f64>,
}

impl PairJudgement {
    fn combine(id: usize, first_as_a: OrderVerdict, second_as_a: OrderVerdict) -> Self {
        let swapped = second_as_a.verdict.map(Verdict::swapped);
        let (verdict, consistent) = match (first_as_a.verdict, swapped) {
            (Some(a), Some(b)) if a == b => (Some(a), Some(true)),
            (Some(_), Some(_)) => (Some(Verdict::Tie), Some(false)),
            _ => (None, None),
        };
        let soft = match (first_as_a.soft, second_as_a.soft) {
            (Some(x), Some(y)) => Some(0.5 * ((x.b + 0.5 * x.tie) + (y.a + 0.5 * y.tie))),
            _ => None,
        };
        Self {
            id,
            first_as_a,
            second_as_a,
            verdict,
            consistent,
            soft,
        }
    }
}

/// The judgements of a batch of pairs and what they cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeRun {
    /// One per pair, in input order.
    pub judgements: Vec<PairJudgement>,
    /// HTTP requests sent (retries included).
    pub requests_sent: usize,
    /// Replies taken from the cache.
    pub cache_hits: usize,
    /// `Retry-After` waits longer than `backoff_max_s`, cut to it.
    pub capped_waits: usize,
}

/// A string that never prints.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What every request task shares.
#[derive(Debug)]
struct Shared {
    cfg: JudgeConfig,
    url: String,
    key: Option<Secret>,
    client: reqwest::Client,
    sent: AtomicUsize,
    hits: AtomicUsize,
    capped: AtomicUsize,
    permits: tokio::sync::Semaphore,
    /// The verdict's JSON schema (for `response_format`).
    schema: serde_json::Value,
    /// Still sending `response_format` (off once the endpoint refused it).
    structured: AtomicBool,
    /// Still asking for logprobs (off once the endpoint refused them).
    soft: AtomicBool,
    /// What the endpoint refused, each said once.
    notes: Mutex<Vec<String>>,
}

impl Shared {
    /// The features the next request carries.
    fn features(&self) -> Features {
        Features {
            structured: self.structured.load(Ordering::SeqCst),
            soft: self.soft.load(Ordering::SeqCst),
        }
    }

    /// The body of a request with `features`.
    fn body(&self, prompt: &str, features: Features) -> String {
        protocol::body(
            &self.cfg.model,
            prompt,
            self.cfg.max_tokens,
            &self.schema,
            features,
        )
        .to_string()
    }

    /// Turns off the features an endpoint refused (`off`), saying so once per feature.
    fn turn_off(&self, off: Features, why: &str) {
        for (on, flag, name) in [
            (
                off.structured,
                &self.structured,
                "response_format (JSON schema)",
            ),
            (off.soft, &self.soft, "logprobs (soft verdicts)"),
        ] {
            if on && flag.swap(false, Ordering::SeqCst) {
                let note = format!(
                    "the judge at {} refused {name}: {why}; sending without it from now on",
                    self.url
                );
                eprintln!("{note}");
                self.notes.lock().expect("notes").push(note);
            }
        }
    }
}

/// An LLM judge client. [`Judge::judge_pairs`] blocks; the async work runs on the judge's own
/// runtime.
#[derive(Debug)]
pub struct Judge {
    shared: Arc<Shared>,
    template_name: String,
    /// The prompt template, parsed once (as `judge`).
    env: minijinja::Environment<'static>,
    runtime: tokio::runtime::Runtime,
}

impl Judge {
    /// Sets up a judge: reads the key from the environment, loads and checks the template,
    /// starts the HTTP client.
    pub fn new(cfg: JudgeConfig) -> Result<Self, JudgeError> {
        let key = match &cfg.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| JudgeError::MissingKey(var.clone()))?),
            None => None,
        };
        Self::with_api_key(cfg, key)
    }

    /// [`Judge::new`] with the key given rather than read from the environment.
    pub fn with_api_key(cfg: JudgeConfig, key: Option<String>) -> Result<Self, JudgeError> {
        let key = key.map(Secret);
        if cfg.base_url.is_empty() || cfg.model.is_empty() {
            return Err(JudgeError::Config("base_url and model must be set".into()));
        }
        cfg.check().map_err(JudgeError::Config)?;
        let (template_name, template) = match &cfg.template {
            Some(p) if p.as_os_str() == "paper" => ("paper".to_owned(), PAPER_TEMPLATE.to_owned()),
            Some(p) => (
                p.display().to_string(),
                std::fs::read_to_string(p).map_err(|e| JudgeError::Template {
                    name: p.display().to_string(),
                    message: e.to_string(),
                })?,
            ),
            None => ("default".to_owned(), DEFAULT_TEMPLATE.to_owned()),
        };
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_template_owned("judge", template)
            .map_err(|e| JudgeError::Template {
                name: template_name.clone(),
                message: format!("{e:#}"),
            })?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(cfg.timeout_s))
            .build()
            .map_err(|e| JudgeError::Client(e.to_string()))?;
        let reasoning_first = template_name == "paper";
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| JudgeError::Client(e.to_string()))?;
        let judge = Self {
            shared: Arc::new(Shared {
                url: format!("{}/chat/completions", cfg.base_url.trim_end_matches('/')),
                permits: tokio::sync::Semaphore::new(cfg.concurrency),
                key,
                client,
                sent: AtomicUsize::new(0),
                hits: AtomicUsize::new(0),
                capped: AtomicUsize::new(0),
                schema: protocol::verdict_schema(reasoning_first),
                structured: AtomicBool::new(cfg.structured),
                soft: AtomicBool::new(cfg.soft),
                notes: Mutex::new(Vec::new()),
                cfg,
            }),
            template_name,
            env,
            runtime,
        };
        // A template that does not render fails here, before any request.
        judge.prompt(&PairItem {
            id: 0,
            question: "Q".into(),
            first: "A".into(),
            second: "B".into(),
            correct_answers: vec!["C".into()],
            incorrect_answers: vec!["I".into()],
        })?;
        Ok(judge)
    }

    /// HTTP requests this judge has sent so far (retries included).
    pub fn requests_sent(&self) -> usize {
        self.shared.sent.load(Ordering::SeqCst)
    }

    /// What the endpoint refused (`response_format`, logprobs), once each.
    pub fn fallbacks(&self) -> Vec<String> {
        self.shared.notes.lock().expect("notes").clone()
    }

    /// The two prompts of a pair: the first model's answer as A, then the second's.
    fn prompt(&self, item: &PairItem) -> Result<[String; 2], JudgeError> {
        let err = |e: minijinja::Error| JudgeError::Template {
            name: self.template_name.clone(),
            message: format!("{e:#}"),
        };
        let t = self.env.get_template("judge").map_err(err)?;
        let render = |a: &str, b: &str| {
            t.render(minijinja::context! {
                question => item.question,
                answer_a => a,
                answer_b => b,
                correct_answers => item.correct_answers,
                incorrect_answers => item.incorrect_answers,
            })
            .map_err(err)
        };
        Ok([
            render(&item.first, &item.second)?,
            render(&item.second, &item.first)?,
        ])
    }

    /// Judges every pair in both orders; `on_done` is called once per pair.
    pub fn judge_pairs(
        &self,
        items: &[PairItem],
        on_done: &(dyn Fn() + Sync),
    ) -> Result<JudgeRun, JudgeError> {
        let prompts = items
            .iter()
            .map(|i| self.prompt(i))
            .collect::<Result<Vec<_>, _>>()?;
        let (sent0, hits0, capped0) = (
            self.shared.sent.load(Ordering::SeqCst),
            self.shared.hits.load(Ordering::SeqCst),
            self.shared.capped.load(Ordering::SeqCst),
        );
        let judgements = self.runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for (index, [ab, ba]) in prompts.into_iter().enumerate() {
                let shared = Arc::clone(&self.shared);
                tasks.spawn(async move {
                    let (x, y) = tokio::join!(ask(&shared, ab), ask(&shared, ba));
                    (index, x, y)
                });
            }
            let mut out: Vec<Option<PairJudgement>> = vec![None; items.len()];
            while let Some(done) = tasks.join_next().await {
                let (index, x, y) = done.map_err(|e| JudgeError::Client(e.to_string()))?;
                out[index] = Some(PairJudgement::combine(items[index].id, x, y));
                on_done();
            }
            Ok::<_, JudgeError>(out.into_iter().map(|j| j.expect("every task")).collect())
        })?;
        Ok(JudgeRun {
            judgements,
            requests_sent: self.shared.sent.load(Ordering::SeqCst) - sent0,
            cache_hits: self.shared.hits.load(Ordering::SeqCst) - hits0,
            capped_waits: self.shared.capped.load(Ordering::SeqCst) - capped0,
        })
    }
}

/// The cache file of a request body.
fn cache_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(&key[..2]).join(format!("{key}.json"))
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedReply {
    reply: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    soft: Option<Soft>,
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("reply"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// One order of one pair: from the cache, or from the endpoint.
///
/// The cache key is the body as configured (with the features the configuration asks for),
/// not as sent: a rerun against an endpoint that refused a feature finds its replies.
async fn ask(shared: &Shared, prompt: String) -> OrderVerdict {
    let configured = Features {
        structured: shared.cfg.structured,
        soft: shared.cfg.soft,
    };
    let text = shared.body(&prompt, configured);
    let digest = Sha256::digest(format!("{}\n{text}", shared.url).as_bytes());
    let key: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let finish = |reply: CachedReply, cached: bool, attempts: u32| {
        let parsed = parse_verdict(&reply.reply);
        OrderVerdict {
            verdict: parsed.map(|p| p.0),
            parse: parsed.map(|p| p.1),
            cached,
            attempts,
            error: parsed
                .is_none()
                .then(|| "the reply holds no verdict (A, B or Tie)".to_owned()),
            reply: Some(reply.reply),
            soft: reply.soft,
        }
    };
    let cache = shared.cfg.cache_dir.as_deref().map(|d| cache_path(d, &key));
    if let Some(path) = &cache
        && let Ok(bytes) = std::fs::read(path)
        && let Ok(c) = serde_json::from_slice::<CachedReply>(&bytes)
        && !(shared.cfg.retry_errors && parse_verdict(&c.reply).is_none())
    {
        shared.hits.fetch_add(1, Ordering::SeqCst);
        return finish(c, true, 0);
    }
    let Ok(_permit) = shared.permits.acquire().await else {
        return failed("the client shut down".into(), 0);
    };
    let seed = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
    match request(shared, &prompt, seed).await {
        Ok((reply, attempts)) => {
            let reply = CachedReply {
                reply: reply.content,
                soft: reply.soft,
            };
            if let Some(path) = &cache {
                let record = serde_json::to_vec(&reply).expect("a string serialises");
                if let Err(e) = write_atomic(path, &record) {
                    return failed(format!("cache {}: {e}", path.display()), attempts);
                }
            }
            finish(reply, false, attempts)
        }
        Err((error, attempts)) => failed(error, attempts),
    }
}

fn failed(error: String, attempts: u32) -> OrderVerdict {
    OrderVerdict {
        verdict: None,
        parse: None,
        cached: false,
        attempts,
        error: Some(error),
        reply: None,
        soft: None,
    }
}

/// The `Retry-After` header as a wait in seconds (finite, at least 0): seconds, or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<f64> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    if let Ok(s) = v.trim().parse::<f64>() {
        return (s >= 0.0 && s.is_finite()).then_some(s);
    }
    let when = httpdate::parse_http_date(v.trim()).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .as_secs_f64(),
    )
}

/// Sends one prompt with retries; the reply, or why there is none, with the number of HTTP
/// requests made. A refusal of `response_format` or logprobs (HTTP 400 or 422 while one is
/// sent) turns the feature off for every later request and asks again at once, without
/// spending a retry.
async fn request(
    shared: &Shared,
    prompt: &str,
    seed: u64,
) -> Result<(protocol::Reply, u32), (String, u32)> {
    let cfg = &shared.cfg;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut attempts = 0u32;
    let mut last = String::new();
    // The last Retry-After wait cut to backoff_max_s, said when the retries run out.
    let mut capped = String::new();
    let mut retry = 0;
    while retry <= cfg.max_retries {
        let features = shared.features();
        let body = shared.body(prompt, features);
        let budget = shared
            .sent
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                (cfg.max_requests == 0 || s < cfg.max_requests).then_some(s + 1)
            });
        if budget.is_err() {
            let why = format!("request budget of {} spent", cfg.max_requests);
            return Err((
                if last.is_empty() {
                    why
                } else {
                    format!("{last}; then {why}")
                },
                attempts,
            ));
        }
        attempts += 1;
        let mut req = shared
            .client
            .post(&shared.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &shared.key {
            req = req.bearer_auth(&key.0);
        }
        let wait = match req.send().await {
            Ok(resp) if resp.status().is_success() => match resp.bytes().await {
                Ok(body) => {
                    return match serde_json::from_slice::<serde_json::Value>(&body) {
                        Ok(v) => protocol::read_reply(&v)
                            .map(|r| (r, attempts))
                            .map_err(|e| (e, attempts)),
                        Err(e) => Err((format!("malformed response: {e}"), attempts)),
                    };
                }
                // The status came, the body did not (the connection closed or timed out
                // mid-body): a transport failure, retried.
                Err(e) => {
                    last = format!("the reply's body was cut short: {}", e.without_url());
                    None
                }
            },
            Ok(resp) => {
                let status = resp.status();
                let hinted = retry_after(resp.headers());
                let text = resp.text().await.unwrap_or_default();
                let excerpt: String = text.chars().take(200).collect();
                last = format!("HTTP {status}: {excerpt}");
                if matches!(status.as_u16(), 400 | 422) {
                    shared.turn_off(protocol::refused(features, &text), &last);
                    // Turned off here, or by another request meanwhile: ask again without it.
                    if shared.features() != features {
                        continue;
                    }
                }
                if status.as_u16() != 429 && !status.is_server_error() {
                    return Err((last, attempts));
                }
                hinted
            }
            Err(e) => {
                last = if e.is_timeout() {
                    format!("timed out after {} s", cfg.timeout_s)
                } else {
                    // Without the URL, which may carry secrets in some deployments.
                    format!("request failed: {}", e.without_url())
                };
                None
            }
        };
        if retry == cfg.max_retries {
            break;
        }
        let backoff = (cfg.backoff_initial_s * 2f64.powi(retry as i32)).min(cfg.backoff_max_s);
        retry += 1;
        let wait = match wait {
            Some(asked) if asked > cfg.backoff_max_s => {
                shared.capped.fetch_add(1, Ordering::SeqCst);
                capped = format!(
                    "; Retry-After asked {asked} s, waited backoff_max_s = {} s",
                    cfg.backoff_max_s
                );
                cfg.backoff_max_s
            }
            Some(asked) => asked,
            None => rng.random_range(0.0..=backoff),
        };
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
    Err((
        format!("{last}{capped} (gave up after {attempts} attempts)"),
        attempts,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_parse_strictly_then_tolerantly() {
        use Verdict::*;
        let strict = |s| {
            parse_verdict(s)
                .map(|p| p.0)
                .filter(|_| parse_verdict(s).unwrap().1 == Parse::Strict)
        };
        assert_eq!(strict(r#"{"verdict": "A", "reason": "x"}"#), Some(First));
        assert_eq!(strict(r#" {"verdict":"tie"} "#), Some(Tie));
        for (reply, want) in [
            (
                "```json\n{\"verdict\": \"B\", \"reason\": \"r\"}\n```",
                Second,
            ),
            ("Verdict: A\nBecause...", First),
            ("**B**", Second),
            ("tie.", Tie),
            ("My answer: {\"verdict\": \"Tie\"} as asked", Tie),
        ] {
            assert_eq!(
                parse_verdict(reply),
                Some((want, Parse::Fallback)),
                "{reply:?}"
            );
        }
        for reply in [
            "",
            "Both are fine.",
            r#"{"verdict": "C"}"#,
            "A or B, hard to say",
        ] {
            assert_eq!(parse_verdict(reply), None, "{reply:?}");
        }
    }

    #[test]
    fn urls_give_endpoint_model_and_key_variable() {
        let c = JudgeConfig::from_url("openai://api.example.com/v1?model=llama-3.3-70b").unwrap();
        assert_eq!(c.base_url, "https://api.example.com/v1");
        assert_eq!(c.model, "llama-3.3-70b");
        assert_eq!(c.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        let c = JudgeConfig::from_url(
            "openai+http://127.0.0.1:8000/v1/?model=m&concurrency=4&max_requests=100",
        )
        .unwrap();
        assert_eq!(c.base_url, "http://127.0.0.1:8000/v1");
        assert_eq!(
            (c.concurrency, c.max_requests, c.api_key_env.clone()),
            (4, 100, None)
        );
        assert_eq!(c.label(), "llm: m at 127.0.0.1:8000/v1 (both orders)");
        for bad in [
            "http://x/v1?model=m",
            "openai://x/v1",
            "openai://x/v1?model=m&colour=red",
            "openai://x/v1?model=m&concurrency=many",
        ] {
            assert!(JudgeConfig::from_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_two_orders_combine_into_one_verdict() {
        let v = |x| OrderVerdict {
            verdict: x,
            parse: x.map(|_| Parse::Strict),
            cached: false,
            attempts: 1,
            error: x.is_none().then(|| "e".to_owned()),
            reply: None,
            soft: None,
        };
        use Verdict::*;
        let j = |a, b| {
            let p = PairJudgement::combine(0, v(a), v(b));
            (p.verdict, p.consistent)
        };
        assert_eq!(j(Some(First), Some(Second)), (Some(First), Some(true)));
        assert_eq!(j(Some(Tie), Some(Tie)), (Some(Tie), Some(true)));
        assert_eq!(
            j(Some(First), Some(First)),
            (Some(Tie), Some(false)),
            "position bias"
        );
        assert_eq!(j(Some(First), None), (None, None), "an error is not a tie");
    }

    #[test]
    fn the_key_never_prints() {
        let s = Secret("sk-very-secret".into());
        assert!(!format!("{s:?}").contains("sk-very"));
    }
}
