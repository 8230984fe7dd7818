//! How to reach the LLM judge: its endpoint, model, limits and cache, as an experiment file's
//! `[eval.judge]` section or a `--judge` URL. Plain settings: the client that uses them is the
//! `fpo-judge` crate (the workspace's only HTTP code).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How to reach the judge, and how hard to try.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeConfig {
    /// The API's base URL, e.g. `https://api.openai.com/v1` (requests go to
    /// `<base_url>/chat/completions`).
    pub base_url: String,
    /// The judge model's name.
    pub model: String,
    /// Name of the environment variable holding the API key (none: no `Authorization` header).
    pub api_key_env: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Seconds before a request is abandoned (and retried).
    pub timeout_s: f64,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff (seconds); doubles with each retry, with full jitter.
    pub backoff_initial_s: f64,
    /// Longest backoff (seconds).
    pub backoff_max_s: f64,
    /// Most HTTP requests this judge may send, retries included (0: no cap).
    pub max_requests: usize,
    /// `max_tokens` of each request.
    pub max_tokens: u32,
    /// A minijinja template file for the prompt; `paper`: the authors' criteria (reasoning, then
    /// a JSON verdict); none: the judge crate's default template (a JSON verdict alone).
    pub template: Option<PathBuf>,
    /// Folder of the reply cache (none: no cache).
    pub cache_dir: Option<PathBuf>,
    /// Ask again for cached replies that hold no verdict (`--retry-errors`); otherwise the cache
    /// serves them as they are, errors included.
    pub retry_errors: bool,
    /// Send `response_format`: a JSON schema of the verdict, so that a server with grammar
    /// support (vLLM, llama.cpp's server, OpenAI) returns a parseable object. An endpoint that
    /// refuses it gets requests without it from then on (said once).
    pub structured: bool,
    /// Ask for `logprobs` and `top_logprobs` and record soft verdicts: the probabilities of A, B
    /// and Tie at the verdict's token. Off, or refused by the endpoint: hard verdicts only.
    pub soft: bool,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            model: String::new(),
            api_key_env: None,
            concurrency: 16,
            timeout_s: 60.0,
            max_retries: 6,
            backoff_initial_s: 1.0,
            backoff_max_s: 60.0,
            max_requests: 0,
            max_tokens: 256,
            template: None,
            cache_dir: None,
            retry_errors: false,
            structured: true,
            soft: true,
        }
    }
}

/// The longest wait a judge setting may ask for, in seconds (a day): past it, a timeout or
/// backoff is a typo, not a plan.
pub const MAX_WAIT_S: f64 = 86_400.0;

impl JudgeConfig {
    /// Checks the limits: concurrency at least 1, `timeout_s` in (0, [`MAX_WAIT_S`]], backoffs
    /// in [0, [`MAX_WAIT_S`]]; the message names the key.
    pub fn check(&self) -> Result<(), String> {
        if self.concurrency == 0 {
            return Err("concurrency must be at least 1".into());
        }
        let within = |x: f64| x.is_finite() && (0.0..=MAX_WAIT_S).contains(&x);
        if !(within(self.timeout_s) && self.timeout_s > 0.0) {
            return Err(format!(
                "timeout_s must be a number of seconds in (0, {MAX_WAIT_S}], not {}",
                self.timeout_s
            ));
        }
        for (key, x) in [
            ("backoff_initial_s", self.backoff_initial_s),
            ("backoff_max_s", self.backoff_max_s),
        ] {
            if !within(x) {
                return Err(format!(
                    "{key} must be a number of seconds in [0, {MAX_WAIT_S}], not {x}"
                ));
            }
        }
        Ok(())
    }

    /// Parses `openai://HOST[:PORT]/PATH?model=NAME[&key_env=VAR][&concurrency=N][&max_requests=N]
    /// [&structured=0|1][&soft=0|1]` (HTTPS) or the same with `openai+http://` (plain HTTP, for
    /// a server on the local network). `key_env` defaults to `OPENAI_API_KEY` for HTTPS and to
    /// none for HTTP.
    pub fn from_url(url: &str) -> Result<Self, JudgeUrlError> {
        let err = |message: String| JudgeUrlError {
            url: url.to_owned(),
            message,
        };
        let parsed = url::Url::parse(url).map_err(|e| err(e.to_string()))?;
        let scheme = match parsed.scheme() {
            "openai" => "https",
            "openai+http" => "http",
            other => {
                return Err(err(format!(
                    "scheme `{other}`: expected `openai://` (HTTPS) or `openai+http://`"
                )));
            }
        };
        let host = parsed
            .host_str()
            .ok_or_else(|| err("no host".into()))?
            .to_owned();
        let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
        let path = parsed.path().trim_end_matches('/');
        let mut cfg = Self {
            base_url: format!("{scheme}://{host}{port}{path}"),
            api_key_env: (scheme == "https").then(|| "OPENAI_API_KEY".to_owned()),
            ..Self::default()
        };
        for (k, v) in parsed.query_pairs() {
            let number = |v: &str| {
                v.parse::<usize>()
                    .map_err(|_| err(format!("`{k}` must be a whole number, not `{v}`")))
            };
            let switch = |v: &str| match v {
                "1" | "true" | "on" => Ok(true),
                "0" | "false" | "off" => Ok(false),
                _ => Err(err(format!("`{k}` must be 0 or 1, not `{v}`"))),
            };
            match k.as_ref() {
                "model" => cfg.model = v.into_owned(),
                "structured" => cfg.structured = switch(&v)?,
                "soft" => cfg.soft = switch(&v)?,
                "key_env" => cfg.api_key_env = (!v.is_empty()).then(|| v.into_owned()),
                "concurrency" => cfg.concurrency = number(&v)?,
                "max_requests" => cfg.max_requests = number(&v)?,
                other => {
                    return Err(err(format!(
                        "unknown parameter `{other}` (known: model, key_env, concurrency, max_requests, structured, soft)"
                    )));
                }
            }
        }
        if cfg.model.is_empty() {
            return Err(err("no `?model=NAME`".into()));
        }
        Ok(cfg)
    }

    /// How verdicts of this judge are labelled in results and reports.
    pub fn label(&self) -> String {
        format!(
            "llm: {} at {} (both orders)",
            self.model,
            self.base_url.split("://").nth(1).unwrap_or(&self.base_url)
        )
    }
}

/// A malformed `--judge` URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("judge URL `{url}`: {message}")]
pub struct JudgeUrlError {
    /// The URL.
    pub url: String,
    /// What is wrong.
    pub message: String,
}
