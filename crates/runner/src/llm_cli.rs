//! `fpo generate` and `fpo score`: one prompt through one model, for people debugging a model.

use anyhow::Context;
use fpo_model::llm::{DEFAULT_LLM, LoadedModel, Message, Sampling, models_dir};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::cli::{GenerateArgs, ModelArgs, ScoreArgs};

#[derive(Debug, Serialize)]
struct TopLogit {
    id: u32,
    token: String,
    logit: f32,
}

#[derive(Debug, Serialize)]
struct NextToken {
    prompt_ids: Vec<u32>,
    top20: Vec<TopLogit>,
    logsumexp: f64,
}

struct Loaded {
    model: LoadedModel,
    prompt_ids: Vec<u32>,
}

fn load(args: &ModelArgs) -> anyhow::Result<Loaded> {
    let path = args
        .model
        .clone()
        .unwrap_or_else(|| models_dir().join(DEFAULT_LLM));
    let model = LoadedModel::load(&path, args.backend, false)?;
    let prompt_ids = if args.chat {
        model
            .tokenizer
            .encode_chat(&[Message::new("user", &args.prompt)], true)?
    } else {
        model.tokenizer.encode(&args.prompt, true)?
    };
    anyhow::ensure!(!prompt_ids.is_empty(), "the prompt encodes to no token");
    Ok(Loaded { model, prompt_ids })
}

fn next_token(l: &Loaded) -> anyhow::Result<NextToken> {
    let logits = l.model.model.next_logits(&l.prompt_ids, None)?;
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let max = f64::from(logits[order[0]]);
    let lse = max
        + logits
            .iter()
            .map(|&x| (f64::from(x) - max).exp())
            .sum::<f64>()
            .ln();
    Ok(NextToken {
        prompt_ids: l.prompt_ids.clone(),
        top20: order[..20.min(order.len())]
            .iter()
            .map(|&i| TopLogit {
                id: i as u32,
                token: l.model.tokenizer.id_to_token(i as u32).unwrap_or_default(),
                logit: logits[i],
            })
            .collect(),
        logsumexp: lse,
    })
}

fn print_next(n: &NextToken) {
    println!(
        "prompt: {} tokens; next-token log-sum-exp {:.4}",
        n.prompt_ids.len(),
        n.logsumexp
    );
    for t in &n.top20 {
        println!("  {:>6} {:>10.4}  {:?}", t.id, t.logit, t.token);
    }
}

/// `fpo generate`.
pub fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let l = load(&args.model)?;
    let sampling = Sampling {
        max_new_tokens: args.max_new_tokens,
        min_new_tokens: 0,
        temperature: args.temperature,
        top_p: args.top_p,
    };
    let tok = &l.model.tokenizer;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let out = l
        .model
        .model
        .generate(
            std::slice::from_ref(&l.prompt_ids),
            &sampling,
            &tok.eos,
            tok.pad,
            &mut rng,
            None,
        )?
        .remove(0);
    let text = tok.decode(&out.ids, true)?;
    let next = next_token(&l)?;
    if args.model.json {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            next: &'a NextToken,
            generated_ids: &'a [u32],
            text: &'a str,
            stopped: bool,
        }
        let o = Out {
            next: &next,
            generated_ids: &out.ids,
            text: &text,
            stopped: out.stopped,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&o).context("serialising")?
        );
    } else {
        print_next(&next);
        println!("generated {} tokens: {:?}", out.ids.len(), out.ids);
        println!("{text}");
    }
    Ok(())
}

/// `fpo score`.
pub fn score(args: ScoreArgs) -> anyhow::Result<()> {
    let l = load(&args.model)?;
    let tok = &l.model.tokenizer;
    let cont = tok.encode(&args.continuation, false)?;
    let next = next_token(&l)?;
    let s = l
        .model
        .model
        .score(&[(l.prompt_ids.clone(), cont.clone())], None, 1 << 16)?
        .remove(0);
    #[derive(Serialize)]
    struct Out<'a> {
        #[serde(flatten)]
        next: &'a NextToken,
        continuation_ids: &'a [u32],
        token_logprobs: &'a [f32],
        mean_nll: f64,
        continuation_mean_nll: Option<f64>,
    }
    let o = Out {
        next: &next,
        continuation_ids: &cont,
        token_logprobs: &s.logprobs,
        mean_nll: s.mean_nll(),
        continuation_mean_nll: (!cont.is_empty()).then(|| s.continuation_mean_nll()),
    };
    if args.model.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&o).context("serialising")?
        );
    } else {
        print_next(&next);
        println!(
            "mean NLL of prompt+continuation ({} predicted tokens): {:.5}",
            s.logprobs.len(),
            o.mean_nll
        );
        if let Some(c) = o.continuation_mean_nll {
            println!(
                "mean NLL of the continuation ({} tokens): {c:.5}",
                cont.len()
            );
        }
    }
    Ok(())
}
