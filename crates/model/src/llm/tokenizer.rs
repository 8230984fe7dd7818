//! Tokenizer and chat template of an instruct LLM.
//!
//! From a GGUF file: a byte-level BPE built with the `tokenizers` crate from the file's own
//! vocabulary (`tokenizer.ggml.tokens`), merges (`tokenizer.ggml.merges`) and pre-tokenizer name
//! (`tokenizer.ggml.pre`); control tokens become special added tokens. From a Hugging Face
//! folder: `tokenizer.json` and `tokenizer_config.json` as shipped. The chat template (Jinja) is
//! rendered with minijinja, with Python string methods (`.strip()`, ...) from minijinja-contrib.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::LlmError;
use crate::gguf::{Gguf, Value};

/// Llama 3's pre-tokenizer pattern (`tokenizer.ggml.pre = llama-bpe`).
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message from `role`.
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.to_owned(),
            content: content.to_owned(),
        }
    }
}

/// A tokenizer with its special tokens and chat template.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    source: PathBuf,
    /// Beginning-of-sequence token, if the model has one.
    pub bos: Option<u32>,
    /// Tokens that end generation.
    pub eos: Vec<u32>,
    /// Whether `encode(.., true)` prepends `bos`.
    pub add_bos: bool,
    /// Padding token for batches.
    pub pad: u32,
    chat_template: Option<String>,
}

fn tok_err(path: &Path, what: &str, e: impl std::fmt::Display) -> LlmError {
    LlmError::Tokenizer {
        path: path.to_owned(),
        message: format!("{what}: {e}"),
    }
}

impl TextTokenizer {
    /// The tokenizer stored in a GGUF file's metadata.
    pub fn from_gguf(file: &Gguf) -> Result<Self, LlmError> {
        let path = file.path();
        let model = file.str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(LlmError::Unsupported {
                path: path.to_owned(),
                what: format!(
                    "tokenizer model `{model}` (key tokenizer.ggml.model; byte-level BPE `gpt2` is supported)"
                ),
            });
        }
        let tokens = file.str_array("tokenizer.ggml.tokens")?;
        let merges = file
            .str_array("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| {
                        tok_err(path, "tokenizer.ggml.merges", format!("bad merge `{m}`"))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| ((*t).to_owned(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| tok_err(path, "building BPE", e))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);

        let byte_level = ByteLevel::new(false, true, true);
        let pre = file.str("tokenizer.ggml.pre").unwrap_or("gpt2");
        match pre {
            "gpt2" | "default" => {
                inner.with_pre_tokenizer(Some(byte_level));
            }
            "smollm" | "starcoder" | "refact" | "codeshell" => {
                let seq = Sequence::new(vec![Digits::new(true).into(), byte_level.into()]);
                inner.with_pre_tokenizer(Some(seq));
            }
            "llama-bpe" | "llama3" => {
                let split = Split::new(
                    SplitPattern::Regex(LLAMA3_PATTERN.to_owned()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| tok_err(path, "llama3 pattern", e))?;
                let seq = Sequence::new(vec![
                    split.into(),
                    ByteLevel::new(false, true, false).into(),
                ]);
                inner.with_pre_tokenizer(Some(seq));
            }
            other => {
                return Err(LlmError::Unsupported {
                    path: path.to_owned(),
                    what: format!("pre-tokenizer `{other}` (key tokenizer.ggml.pre)"),
                });
            }
        }
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        // Control (3) and user-defined (4) tokens are matched whole, before BPE.
        let types: Vec<i64> = match file.metadata.get("tokenizer.ggml.token_type") {
            Some(Value::Array(v)) => v
                .iter()
                .map(|x| match x {
                    Value::I64(i) => *i,
                    Value::U64(u) => *u as i64,
                    _ => 1,
                })
                .collect(),
            _ => vec![1; tokens.len()],
        };
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, ty)| matches!(**ty, 3 | 4))
            .map(|(t, ty)| AddedToken::from((*t).to_owned(), *ty == 3))
            .collect();
        inner.add_special_tokens(&specials);

        let eos = file.u32("tokenizer.ggml.eos_token_id")?;
        let mut eos_ids = vec![eos];
        if let Ok(eot) = file.u32("tokenizer.ggml.eot_token_id")
            && eot != eos
        {
            eos_ids.push(eot);
        }
        let add_bos = matches!(
            file.metadata.get("tokenizer.ggml.add_bos_token"),
            Some(Value::Bool(true))
        );
        let vocab = tokens.len();
        let bos = file.u32("tokenizer.ggml.bos_token_id").ok();
        let pad = file.u32("tokenizer.ggml.padding_token_id").unwrap_or(eos);
        let ids = [
            ("tokenizer.ggml.eos_token_id", Some(eos)),
            ("tokenizer.ggml.eot_token_id", eos_ids.get(1).copied()),
            ("tokenizer.ggml.bos_token_id", bos),
            ("tokenizer.ggml.padding_token_id", Some(pad)),
        ];
        for (key, id) in ids {
            if let Some(id) = id.filter(|&id| id as usize >= vocab) {
                return Err(LlmError::Invalid {
                    path: path.to_owned(),
                    key: key.to_owned(),
                    message: format!("token id {id} is outside the vocabulary of {vocab} tokens"),
                });
            }
        }
        Ok(Self {
            inner,
            source: path.to_owned(),
            bos,
            pad,
            eos: eos_ids,
            add_bos,
            chat_template: file.str("tokenizer.chat_template").ok().map(str::to_owned),
        })
    }

    /// The tokenizer of a Hugging Face model folder (`tokenizer.json`, `tokenizer_config.json`,
    /// and `config.json` / `generation_config.json` for the end-of-sequence ids).
    pub fn from_hf_dir(dir: &Path) -> Result<Self, LlmError> {
        let tj = dir.join("tokenizer.json");
        if !tj.is_file() {
            return Err(LlmError::Missing {
                path: tj,
                what: "tokenizer.json (the Hugging Face tokenizer)".into(),
            });
        }
        let inner =
            tokenizers::Tokenizer::from_file(&tj).map_err(|e| tok_err(&tj, "reading", e))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg = super::read_json(&cfg_path)?;
        let token_of = |key: &str| -> Option<String> {
            match cfg.get(key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_owned),
                _ => None,
            }
        };
        let id = |t: Option<String>| t.and_then(|t| inner.token_to_id(&t));
        let bos = id(token_of("bos_token"));
        let mut eos: Vec<u32> = id(token_of("eos_token")).into_iter().collect();
        for extra in ["generation_config.json", "config.json"] {
            let p = dir.join(extra);
            if !p.is_file() {
                continue;
            }
            let v = super::read_json(&p)?;
            match v.get("eos_token_id") {
                Some(serde_json::Value::Number(n)) => eos.extend(n.as_u64().map(|x| x as u32)),
                Some(serde_json::Value::Array(a)) => {
                    eos.extend(a.iter().filter_map(|x| x.as_u64().map(|x| x as u32)))
                }
                _ => {}
            }
        }
        eos.sort_unstable();
        eos.dedup();
        let Some(&first_eos) = eos.first() else {
            return Err(LlmError::Missing {
                path: cfg_path,
                what: "key `eos_token` (no end-of-sequence token)".into(),
            });
        };
        let vocab = inner.get_vocab_size(true);
        if let Some(&bad) = eos.iter().find(|&&e| e as usize >= vocab) {
            return Err(LlmError::Invalid {
                path: dir.to_owned(),
                key: "eos_token_id".into(),
                message: format!("token id {bad} is outside the vocabulary of {vocab} tokens"),
            });
        }
        let pad = id(token_of("pad_token")).unwrap_or(first_eos);
        // A post-processor in tokenizer.json adds BOS itself (Llama 3); so does `add_bos_token`.
        let add_bos = cfg
            .get("add_bos_token")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        Ok(Self {
            inner,
            source: tj,
            bos,
            eos,
            add_bos,
            pad,
            chat_template: cfg
                .get("chat_template")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
        })
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` (chat template, BOS/EOS/pad tokens)
    /// into `dir`, as a Hugging Face folder carries them: the GGUF's tokenizer, exported.
    pub fn write_hf_files(&self, dir: &Path) -> Result<(), LlmError> {
        let tj = dir.join("tokenizer.json");
        self.inner
            .save(&tj, false)
            .map_err(|e| tok_err(&tj, "writing", e))?;
        let name = |id: Option<u32>| id.and_then(|i| self.inner.id_to_token(i));
        let cfg = serde_json::json!({
            "bos_token": name(self.bos),
            "eos_token": name(self.eos.first().copied()),
            "pad_token": name(Some(self.pad)),
            "add_bos_token": self.add_bos,
            "chat_template": self.chat_template,
        });
        let path = dir.join("tokenizer_config.json");
        std::fs::write(&path, cfg.to_string()).map_err(super::io_err(&path))
    }

    /// Token ids of `text`; `add_special` prepends BOS where the model asks for it.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, LlmError> {
        let enc = self
            .inner
            .encode_fast(text, add_special)
            .map_err(|e| tok_err(&self.source, "encoding", e))?;
        let mut ids = enc.get_ids().to_vec();
        if add_special
            && self.add_bos
            && let Some(b) = self.bos
            && ids.first() != Some(&b)
        {
            ids.insert(0, b);
        }
        Ok(ids)
    }

    /// The text of `ids`; `skip_special` drops control tokens.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, LlmError> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| tok_err(&self.source, "decoding", e))
    }

    /// The token string of `id` (byte-level form, e.g. `Ġthe`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Whether the model file carries a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// Renders the model's chat template over `messages` (Hugging Face's
    /// `apply_chat_template(tokenize=False)`).
    pub fn apply_chat_template(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, LlmError> {
        let Some(template) = &self.chat_template else {
            return Err(LlmError::Missing {
                path: self.source.clone(),
                what: "chat template (key tokenizer.chat_template / chat_template)".into(),
            });
        };
        let err = |e: minijinja::Error| tok_err(&self.source, "chat template", e);
        let mut env = minijinja::Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template("chat", template).map_err(err)?;
        let name = |id: Option<u32>| {
            id.and_then(|i| self.inner.id_to_token(i))
                .unwrap_or_default()
        };
        env.get_template("chat")
            .and_then(|t| {
                t.render(minijinja::context! {
                    messages => messages,
                    add_generation_prompt => add_generation_prompt,
                    bos_token => name(self.bos),
                    eos_token => name(self.eos.first().copied()),
                })
            })
            .map_err(err)
    }

    /// Token ids of a chat rendered with the template (special tokens parsed, no BOS added:
    /// the template writes it where it wants one), as `apply_chat_template(tokenize=True)`.
    pub fn encode_chat(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>, LlmError> {
        self.encode(
            &self.apply_chat_template(messages, add_generation_prompt)?,
            false,
        )
    }
}
