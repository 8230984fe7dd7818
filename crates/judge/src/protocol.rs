//! The chat-completions protocol as the judge speaks it: the request body (with the verdict's
//! JSON schema as `response_format`, and `logprobs` for soft verdicts), and the reply read back
//! (its text, and the probabilities of A, B and Tie at the verdict's token).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Alternatives asked for at each token (`top_logprobs`).
pub const TOP_LOGPROBS: u32 = 5;

/// The optional parts of a request, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// `response_format` with the verdict's JSON schema.
    pub structured: bool,
    /// `logprobs` and `top_logprobs`.
    pub soft: bool,
}

/// The JSON schema of a verdict object. `reasoning_first` puts a `reasoning` string before
/// the verdict (the paper's template asks for reasoning, then the verdict); otherwise the
/// verdict comes first, then a one-sentence `reason` (the default template's order).
pub fn verdict_schema(reasoning_first: bool) -> Value {
    let verdict = json!({"type": "string", "enum": ["A", "B", "Tie"]});
    let text = json!({"type": "string"});
    let (properties, required) = if reasoning_first {
        (
            json!({"reasoning": text, "verdict": verdict}),
            json!(["reasoning", "verdict"]),
        )
    } else {
        (
            json!({"verdict": verdict, "reason": text}),
            json!(["verdict", "reason"]),
        )
    };
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// The body of one request: greedy, `max_tokens` long, with the features asked for.
pub fn body(model: &str, prompt: &str, max_tokens: u32, schema: &Value, f: Features) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0.0,
        "max_tokens": max_tokens,
    });
    if f.structured {
        body["response_format"] = json!({
            "type": "json_schema",
            "json_schema": {"name": "verdict", "strict": true, "schema": schema},
        });
    }
    if f.soft {
        body["logprobs"] = json!(true);
        body["top_logprobs"] = json!(TOP_LOGPROBS);
    }
    body
}

/// The judge's probabilities of A, B and Tie at the verdict's token, renormalised over the
/// three (the mass on other tokens is dropped), as AlpacaEval's weighted annotators read them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Soft {
    /// The answer shown first is better.
    pub a: f64,
    /// The answer shown second is better.
    pub b: f64,
    /// Neither.
    pub tie: f64,
}

/// A reply's text and, where the endpoint sent logprobs, its soft verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// `choices[0].message.content`.
    pub content: String,
    /// From `choices[0].logprobs.content`.
    pub soft: Option<Soft>,
}

/// Reads a chat-completions response.
pub fn read_reply(response: &Value) -> Result<Reply, String> {
    let choice = &response["choices"][0];
    let content = choice["message"]["content"]
        .as_str()
        .ok_or("malformed response: no choices[0].message.content")?
        .to_owned();
    Ok(Reply {
        soft: soft_verdict(&choice["logprobs"]["content"]),
        content,
    })
}

/// Which verdict a token spells: `A`, `B`, or the start of `Tie`, in any case, quotes and
/// spaces aside.
fn class(token: &str) -> Option<usize> {
    let t = token
        .trim()
        .trim_matches(|c| c == '"' || c == '*')
        .to_ascii_lowercase();
    match t.as_str() {
        "a" => Some(0),
        "b" => Some(1),
        "" => None,
        t if "tie".starts_with(t) => Some(2),
        _ => None,
    }
}

/// The soft verdict at the verdict's token of a `logprobs.content` array: the first token
/// after `"verdict": "` (or, for a bare reply, the first token that is not blank), read from
/// its `top_logprobs`. None when the array is missing, the token is not found, or no
/// alternative spells a verdict.
pub fn soft_verdict(tokens: &Value) -> Option<Soft> {
    let tokens = tokens.as_array()?;
    let texts: Vec<&str> = tokens
        .iter()
        .map(|t| t["token"].as_str().unwrap_or(""))
        .collect();
    let whole: String = texts.concat();
    static KEY: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r#""verdict"\s*:\s*""#).expect("regex"));
    // The character offset where the verdict's value starts.
    let start = match KEY.find(&whole) {
        Some(m) => m.end(),
        None => whole.len() - whole.trim_start().len(),
    };
    let mut offset = 0;
    let mut at = None;
    for (i, t) in texts.iter().enumerate() {
        let end = offset + t.len();
        // The token that holds the value's first character (a token may carry the quote too).
        if end > start && !whole[start.max(offset)..end].trim_matches('"').is_empty() {
            at = Some(i);
            break;
        }
        offset = end;
    }
    let token = &tokens[at?];
    let mut mass = [0.0f64; 3];
    let alternatives = token["top_logprobs"].as_array()?;
    for alt in alternatives {
        let (Some(text), Some(lp)) = (alt["token"].as_str(), alt["logprob"].as_f64()) else {
            continue;
        };
        if let Some(c) = class(text)
            && lp.is_finite()
        {
            mass[c] += lp.exp();
        }
    }
    let total: f64 = mass.iter().sum();
    (total > 0.0).then(|| Soft {
        a: mass[0] / total,
        b: mass[1] / total,
        tie: mass[2] / total,
    })
}

/// The features a refusal's message names, among those sent: the ones to turn off. A refusal
/// that names neither is a client error like any other (not retried).
pub fn refused(f: Features, message: &str) -> Features {
    let m = message.to_ascii_lowercase();
    Features {
        structured: f.structured
            && ["response_format", "json_schema", "schema", "grammar"]
                .iter()
                .any(|k| m.contains(k)),
        soft: f.soft && m.contains("logprob"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(seq: &[(&str, &[(&str, f64)])]) -> Value {
        Value::Array(
            seq.iter()
                .map(|(t, alts)| {
                    json!({
                        "token": t,
                        "logprob": -0.1,
                        "top_logprobs": alts.iter().map(|(a, p)| json!({"token": a, "logprob": p.ln()})).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    }

    /// Catches a soft verdict read at the wrong token (the key's first letter, or the opening
    /// brace), or left unnormalised.
    #[test]
    fn the_soft_verdict_is_read_at_the_verdicts_token() {
        let t = tokens(&[
            ("{\"", &[("{\"", 0.9)]),
            ("ver", &[("ver", 0.9)]),
            ("dict", &[("dict", 0.9)]),
            ("\":", &[("\":", 0.9)]),
            (" \"", &[(" \"", 0.9)]),
            ("B", &[("B", 0.5), ("A", 0.2), ("T", 0.1), ("C", 0.2)]),
            ("\"}", &[("\"}", 0.9)]),
        ]);
        let s = soft_verdict(&t).unwrap();
        assert!(
            (s.b - 0.625).abs() < 1e-12 && (s.a - 0.25).abs() < 1e-12,
            "{s:?}"
        );
        assert!((s.tie - 0.125).abs() < 1e-12);
        // A token that carries the quote and the letter together.
        let t = tokens(&[
            ("{\"verdict\":", &[("x", 0.9)]),
            (" \"Tie", &[(" \"Tie", 0.6), (" \"A", 0.4)]),
        ]);
        let s = soft_verdict(&t).unwrap();
        assert!(
            (s.tie - 0.6).abs() < 1e-12 && (s.a - 0.4).abs() < 1e-12,
            "{s:?}"
        );
        // A bare reply.
        let t = tokens(&[("A", &[("A", 0.7), ("B", 0.3)])]);
        assert!((soft_verdict(&t).unwrap().a - 0.7).abs() < 1e-12);
        assert_eq!(soft_verdict(&Value::Null), None);
    }

    #[test]
    fn refusals_turn_off_what_they_name() {
        let both = Features {
            structured: true,
            soft: true,
        };
        let off = |m| refused(both, m);
        assert_eq!(
            off("'logprobs' is not supported"),
            Features {
                structured: false,
                soft: true
            }
        );
        assert_eq!(
            off("unknown field response_format"),
            Features {
                structured: true,
                soft: false
            }
        );
        assert_eq!(
            off("bad model"),
            Features {
                structured: false,
                soft: false
            }
        );
    }
}
