//! Golden tests of the LLM against Hugging Face transformers 5.24 (float32, same GGUF):
//! `tests/fixtures/smollm2_reference.json`. Needs `just models`.

mod common;

use std::path::Path;
use std::sync::LazyLock;

use common::fixture_json;

use fpo_model::BackendKind;
use fpo_model::llm::{
    Adapters, DEFAULT_LLM, Input, KvCache, LoadedModel, LoraConfig, Message, SampleGroup, Sampling,
    models_dir,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

static REFERENCE: LazyLock<Value> = LazyLock::new(|| fixture_json("smollm2_reference.json"));

static MODEL: LazyLock<LoadedModel> = LazyLock::new(|| {
    let path = models_dir().join(DEFAULT_LLM);
    LoadedModel::load(&path, BackendKind::Flex, false)
        .unwrap_or_else(|e| panic!("{e} (run `just models`)"))
});

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn chat_prompt() -> Vec<Message> {
    vec![Message::new(
        "user",
        "What happens if you eat watermelon seeds?",
    )]
}

#[test]
fn token_ids_and_round_trip_match_transformers() {
    let tok = &MODEL.tokenizer;
    for case in ["plain", "unicode", "code", "chat"] {
        let r = &REFERENCE["tokenization"][case];
        let text = r["text"].as_str().unwrap();
        assert_eq!(tok.encode(text, false).unwrap(), ids(&r["ids"]), "{case}");
        assert_eq!(
            tok.encode(text, true).unwrap(),
            ids(&r["ids_default_add_special"]),
            "{case} with special tokens"
        );
        let back = tok.decode(&ids(&r["ids"]), false).unwrap();
        assert_eq!(back, text, "{case}: decode(encode(s)) == s");
    }
}

#[test]
fn chat_template_matches_transformers() {
    let tok = &MODEL.tokenizer;
    let rendered = tok.apply_chat_template(&chat_prompt(), true).unwrap();
    assert_eq!(
        rendered,
        REFERENCE["chat_template_applied"].as_str().unwrap()
    );
    assert_eq!(
        tok.encode_chat(&chat_prompt(), true).unwrap(),
        ids(&REFERENCE["tokenization"]["chat"]["ids_apply_chat_template"])
    );
}

/// Every one of the 49152 last-position logits within 1e-3 of transformers', the top-10 in the
/// same order, and the log-sum-exp.
#[test]
fn last_position_logits_match_transformers() {
    assert!(MODEL.model.has_quantized_inference());
    check_logits(&MODEL.model);
}

/// The same through the f32 weights (the differentiable path, and the one GPUs take).
#[test]
fn last_position_logits_match_transformers_through_f32_weights() {
    check_logits(&MODEL.model.without_quantized());
}

fn check_logits(model: &fpo_model::llm::Llama) {
    let prompt = ids(&REFERENCE["tokenization"]["chat"]["ids"]);
    let logits = model.next_logits(&prompt, None).unwrap();
    let r = &REFERENCE["chat_last_logits"];
    let want = floats(&r["logits"]);
    assert_eq!(logits.len(), want.len());
    let worst = logits
        .iter()
        .zip(&want)
        .map(|(a, b)| (f64::from(*a) - b).abs())
        .fold(0.0, f64::max);
    eprintln!("max |logit - reference| = {worst:.2e}");
    assert!(worst < 1e-3, "max |logit - reference| = {worst}");
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let top: Vec<u32> = order[..10].iter().map(|&i| i as u32).collect();
    assert_eq!(top, ids(&r["top10_ids"]));
    let max = logits.iter().copied().fold(f32::MIN, f32::max) as f64;
    let lse = max
        + logits
            .iter()
            .map(|&l| (f64::from(l) - max).exp())
            .sum::<f64>()
            .ln();
    assert!(
        (lse - r["logsumexp"].as_f64().unwrap()).abs() < 1e-3,
        "logsumexp {lse}"
    );
}

#[test]
fn greedy_continuation_matches_transformers() {
    let prompt = ids(&REFERENCE["tokenization"]["chat"]["ids"]);
    let tok = &MODEL.tokenizer;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let out = MODEL
        .model
        .generate(
            &[prompt],
            &Sampling::greedy(32),
            &tok.eos,
            tok.pad,
            &mut rng,
            None,
        )
        .unwrap();
    assert_eq!(out[0].ids, ids(&REFERENCE["greedy_32"]["new_ids"]));
    assert_eq!(
        tok.decode(&out[0].ids, true).unwrap(),
        REFERENCE["greedy_32"]["text"].as_str().unwrap()
    );
}

#[test]
fn nll_matches_transformers() {
    let prompt = ids(&REFERENCE["tokenization"]["chat"]["ids"]);
    let cont = ids(&REFERENCE["greedy_32"]["new_ids"]);
    let s = &MODEL.model.score(&[(prompt, cont)], None, 4096).unwrap()[0];
    let r = &REFERENCE["nll"];
    assert_eq!(s.logprobs.len(), 69);
    let all = r["mean_nll_all_predicted_tokens(prompt[1:]+continuation)"]
        .as_f64()
        .unwrap();
    let cont = r["mean_nll_continuation_only"].as_f64().unwrap();
    assert!(
        (s.mean_nll() - all).abs() < 1e-3,
        "{} vs {all}",
        s.mean_nll()
    );
    assert!(
        (s.continuation_mean_nll() - cont).abs() < 1e-3,
        "{} vs {cont}",
        s.continuation_mean_nll()
    );
    let per = floats(&r["per_token_nll"]);
    for (i, (a, b)) in s.logprobs.iter().zip(&per).enumerate() {
        assert!(
            (-f64::from(*a) - b).abs() < 2e-3,
            "token {i}: {} vs {b}",
            -a
        );
    }
}

/// Prefill then one token at a time through the KV cache gives the logits of one full forward.
#[test]
fn cached_decoding_equals_full_forward() {
    let m = &MODEL.model;
    let seq = ids(&REFERENCE["tokenization"]["plain"]["ids"]);
    let full = m.next_logits(&seq, None).unwrap();
    let mut cache = KvCache::new();
    let split = seq.len() - 4;
    m.forward(
        &Input::single(&seq[..split], 0),
        Some(&mut cache),
        None,
        None,
    );
    for (i, &t) in seq[split..seq.len() - 1].iter().enumerate() {
        m.forward(
            &Input::single(&[t], split + i),
            Some(&mut cache),
            None,
            None,
        );
    }
    let last = seq.len() - 1;
    let h = m.forward(
        &Input::single(&seq[last..], last),
        Some(&mut cache),
        None,
        None,
    );
    let cached: Vec<f32> = m
        .logits(h.reshape([1, m.config.hidden_size]))
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let worst = full
        .iter()
        .zip(&cached)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-3, "cached vs full: {worst}");
}

/// Left-padded batched greedy generation gives each prompt's unbatched continuation.
#[test]
fn batched_generation_equals_one_by_one() {
    let tok = &MODEL.tokenizer;
    let prompts: Vec<Vec<u32>> = [
        "Name a colour.",
        "Write one sentence about the sea and the sky.",
    ]
    .iter()
    .map(|p| tok.encode_chat(&[Message::new("user", p)], true).unwrap())
    .collect();
    assert_ne!(prompts[0].len(), prompts[1].len());
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let g = Sampling::greedy(12);
    let batched = MODEL
        .model
        .generate(&prompts, &g, &tok.eos, tok.pad, &mut rng, None)
        .unwrap();
    for (p, b) in prompts.iter().zip(&batched) {
        let one = MODEL
            .model
            .generate(
                std::slice::from_ref(p),
                &g,
                &tok.eos,
                tok.pad,
                &mut rng,
                None,
            )
            .unwrap();
        assert_eq!(one[0].ids, b.ids);
    }
}

/// Sampling is a function of the seed.
#[test]
fn seeded_sampling_is_deterministic() {
    let tok = &MODEL.tokenizer;
    let p = tok.encode_chat(&chat_prompt(), true).unwrap();
    let s = Sampling {
        max_new_tokens: 10,
        min_new_tokens: 10,
        temperature: 0.9,
        top_p: 0.9,
    };
    let run = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        MODEL
            .model
            .generate(
                &[p.clone(), p.clone()],
                &s,
                &tok.eos,
                tok.pad,
                &mut rng,
                None,
            )
            .unwrap()
    };
    let (a, b, c) = (run(1), run(1), run(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().all(|g| g.ids.len() == 10 && !g.stopped));
}

/// The GGUF's tokenizer exported as Hugging Face files and read back through the
/// safetensors-checkpoint path gives the same ids and chat template.
#[test]
fn hugging_face_tokenizer_files_give_the_same_ids() {
    let dir = tempfile::tempdir().unwrap();
    MODEL.tokenizer.write_hf_files(dir.path()).unwrap();
    let hf = fpo_model::llm::TextTokenizer::from_hf_dir(dir.path()).unwrap();
    for case in ["plain", "unicode", "code", "chat"] {
        let r = &REFERENCE["tokenization"][case];
        assert_eq!(
            hf.encode(r["text"].as_str().unwrap(), true).unwrap(),
            ids(&r["ids"]),
            "{case}"
        );
    }
    assert_eq!(hf.eos, MODEL.tokenizer.eos);
    assert_eq!(
        hf.encode_chat(&chat_prompt(), true).unwrap(),
        ids(&REFERENCE["tokenization"]["chat"]["ids_apply_chat_template"])
    );
}

/// Bad model files give errors that name the file and what is wrong.
#[test]
fn bad_model_files_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Truncated GGUF.
    let bytes = std::fs::read(models_dir().join(DEFAULT_LLM)).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = LoadedModel::load(&cut, BackendKind::Flex, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cut.gguf") && err.contains("truncated"),
        "{err}"
    );
    // Missing file.
    let err = LoadedModel::load(&dir.path().join("nope.gguf"), BackendKind::Flex, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nope.gguf") && err.contains("just models"),
        "{err}"
    );
    // A Hugging Face folder without a tokenizer.
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"model_type": "llama", "vocab_size": 8, "hidden_size": 4, "intermediate_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2}"#,
    )
    .unwrap();
    let err = LoadedModel::load(dir.path(), BackendKind::Flex, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
    // An architecture that is not Llama.
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    let err = LoadedModel::load(dir.path(), BackendKind::Flex, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("config.json") && err.contains("gpt2"), "{err}");
}

/// A decoding step through the quantised blocks (one token row) gives the f32 path's logits.
#[test]
fn quantised_decoding_step_matches_the_f32_weights() {
    let m = &MODEL.model;
    assert!(m.has_quantized_inference());
    let seq = ids(&REFERENCE["tokenization"]["chat"]["ids"]);
    let last = seq.len() - 1;
    let mut logits = Vec::new();
    for quantised in [true, false] {
        let mut cache = KvCache::new();
        m.forward(
            &Input::single(&seq[..last], 0),
            Some(&mut cache),
            None,
            None,
        );
        let step = Input::single(&seq[last..], last);
        let h = if quantised {
            m.forward_inference(&step, Some(&mut cache), None)
        } else {
            m.forward(&step, Some(&mut cache), None, None)
        };
        let h = h.reshape([1, m.config.hidden_size]);
        let l = if quantised {
            m.logits_inference(h)
        } else {
            m.logits(h)
        };
        logits.push(l.into_data().convert::<f32>().try_to_vec::<f32>().unwrap());
    }
    let worst = logits[0]
        .iter()
        .zip(&logits[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    eprintln!("quantised vs f32 decoding step: max |logit diff| = {worst:.2e}");
    assert!(worst < 1e-3, "{worst}");
    let want = floats(&REFERENCE["chat_last_logits"]["logits"]);
    let vs_ref = logits[0]
        .iter()
        .zip(&want)
        .map(|(a, b)| (f64::from(*a) - b).abs())
        .fold(0.0, f64::max);
    eprintln!("quantised decoding step vs transformers: {vs_ref:.2e}");
    assert!(vs_ref < 1e-3, "{vs_ref}");
}

/// LoRA adapters on q, k, v and o (from `init_seed`), with every value random (`values_seed`).
fn random_adapters(init_seed: u64, values_seed: u64) -> Adapters {
    let m = &MODEL.model;
    let dev = m.device().clone();
    let fresh = Adapters::new(&LoraConfig::default(), &m.config, init_seed, &dev).unwrap();
    common::tiny::randomized(fresh, values_seed, &dev)
}

/// Two chat prompts of different lengths (a padded batch).
fn two_chat_prompts() -> Vec<Vec<u32>> {
    ["Name a colour.", "Write one sentence about the sea."]
        .iter()
        .map(|p| {
            let chat = [Message::new("user", p)];
            MODEL.tokenizer.encode_chat(&chat, true).unwrap()
        })
        .collect()
}

/// Generation on the host (plain slices, preallocated cache) gives the burn path's logits after
/// the prefill and at every step: a left-padded batch of two, with LoRA adapters on q, k, v and o.
#[test]
fn host_decoding_equals_burn_decoding() {
    let m = &MODEL.model;
    let tok = &MODEL.tokenizer;
    let adapters = random_adapters(3, 4);
    let prompts = two_chat_prompts();
    let width = prompts.iter().map(Vec::len).max().unwrap();
    let (mut ids, mut positions, mut valid) = (Vec::new(), Vec::new(), Vec::new());
    for p in &prompts {
        let pad = width - p.len();
        ids.extend(std::iter::repeat_n(tok.pad, pad).chain(p.iter().copied()));
        positions.extend((0..width).map(|j| j.saturating_sub(pad)));
        valid.extend((0..width).map(|j| j >= pad));
    }
    let prefill = Input {
        ids,
        batch: 2,
        seq: width,
        positions,
        key_valid: Some(valid.clone()),
        attend: None,
    };
    let mut cache = KvCache::new();
    let h = m.forward_inference(&prefill, Some(&mut cache), Some(&adapters));
    let last_burn: Vec<f32> = m
        .logits_inference(h.narrow(1, width - 1, 1).reshape([2, m.config.hidden_size]))
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap();
    let steps = 6;
    let mut host = m
        .host_decoder(2, width + steps, Some(&adapters))
        .expect("a quantised GGUF model on the CPU decodes on the host");
    let last_host = host.feed(&prefill.ids, &prefill.positions, Some(&valid));
    let prefill_diff = common::tiny::max_diff(&last_burn, &last_host);
    eprintln!(
        "host vs burn prefill (padded batch of 2, LoRA): max |logit diff| = {prefill_diff:.2e}"
    );
    assert!(prefill_diff < 1e-3, "{prefill_diff}");
    let vocab = m.config.vocab_size;
    let mut next = vec![tok.pad, tok.pad];
    let mut worst = 0.0f32;
    for step in 0..steps {
        let positions: Vec<usize> = prompts.iter().map(|p| p.len() + step).collect();
        let len = cache.len;
        valid = (0..2)
            .flat_map(|r| valid[r * len..(r + 1) * len].iter().copied().chain([true]))
            .collect();
        let input = Input {
            ids: next.clone(),
            batch: 2,
            seq: 1,
            positions: positions.clone(),
            key_valid: Some(valid.clone()),
            attend: None,
        };
        let h = m.forward_inference(&input, Some(&mut cache), Some(&adapters));
        let burn: Vec<f32> = m
            .logits_inference(h.reshape([2, m.config.hidden_size]))
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .unwrap();
        let ours = host.step(&next, &positions);
        worst = worst.max(common::tiny::max_diff(&burn, &ours));
        // Greedy continuation of row 0, a fixed token for row 1.
        let argmax = |row: &[f32]| {
            (0..vocab).fold(0, |best, i| if row[i] > row[best] { i } else { best }) as u32
        };
        next = vec![argmax(&ours[..vocab]), 42];
    }
    eprintln!(
        "host vs burn decoding, 6 steps with padding and LoRA: max |logit diff| = {worst:.2e}"
    );
    assert!(worst < 1e-3, "{worst}");
}

/// Scoring on the host (one pass of the right-padded batch, the head on the predicting positions)
/// gives the burn path's per-token log-probabilities: sequences of different lengths, with LoRA.
#[test]
fn host_scores_equal_burn_scores() {
    let m = &MODEL.model;
    let tok = &MODEL.tokenizer;
    let adapters = random_adapters(5, 6);
    let seqs: Vec<(Vec<u32>, Vec<u32>)> = [
        ("Name a colour.", "Blue."),
        (
            "Write one sentence about the sea.",
            "The sea is wide and full of salt.",
        ),
    ]
    .iter()
    .map(|(p, c)| {
        let prompt = tok.encode_chat(&[Message::new("user", p)], true).unwrap();
        (prompt, tok.encode(c, false).unwrap())
    })
    .collect();
    let burn = m.without_quantized();
    for adapters in [None, Some(&adapters)] {
        let host = m.score(&seqs, adapters, 4096).unwrap();
        let want = burn.score(&seqs, adapters, 4096).unwrap();
        let mut worst = 0.0f32;
        for (h, w) in host.iter().zip(&want) {
            assert_eq!(h.logprobs.len(), w.logprobs.len());
            worst = worst.max(common::tiny::max_diff(&h.logprobs, &w.logprobs));
        }
        eprintln!(
            "host vs burn scores (LoRA: {}): max |diff| = {worst:.2e}",
            adapters.is_some()
        );
        assert!(worst < 1e-3, "{worst}");
    }
}

/// The host pass splits its products, attention and row-wise loops across threads but sums in a
/// fixed order: the prefill's logits and a batched greedy generation are bit-identical on one
/// thread and on three.
#[test]
fn host_generation_does_not_depend_on_the_thread_count() {
    let m = &MODEL.model;
    let tok = &MODEL.tokenizer;
    let prompts = two_chat_prompts();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let logits = m.next_logits(&prompts[1], None).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let gens = m
                .generate(&prompts, &Sampling::greedy(8), &[], tok.pad, &mut rng, None)
                .unwrap();
            let ids: Vec<Vec<u32>> = gens.into_iter().map(|g| g.ids).collect();
            (logits, ids)
        })
    };
    let (one, three) = (run(1), run(3));
    assert!(
        one.0
            .iter()
            .zip(&three.0)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
    assert_eq!(one.1, three.1);
}

/// Scoring continuations from a shared cached context equals scoring each whole sequence.
#[test]
fn continuations_from_a_cached_context_equal_whole_sequence_scores() {
    let m = &*MODEL;
    let tok = &m.tokenizer;
    let shared = tok
        .encode(
            "Q: Where were the 1992 Olympics held?\nA: In Barcelona.\n\n",
            false,
        )
        .unwrap();
    let rest = tok
        .encode("Q: What happens if you eat watermelon seeds?\nA:", false)
        .unwrap();
    let conts: Vec<Vec<u32>> = [
        " Nothing happens.",
        " They grow in your stomach and you die.",
        " No",
    ]
    .iter()
    .map(|c| tok.encode(c, false).unwrap())
    .collect();
    let prefix = m.model.prefix_cache(&shared, None).unwrap();
    let got = m
        .model
        .continuation_logprobs(&prefix, &rest, &conts, None)
        .unwrap();
    let context: Vec<u32> = shared.iter().chain(&rest).copied().collect();
    let seqs: Vec<(Vec<u32>, Vec<u32>)> =
        conts.iter().map(|c| (context.clone(), c.clone())).collect();
    let want = m.model.score(&seqs, None, 4096).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.len(), w.continuation().len());
        for (a, b) in g.iter().zip(w.continuation()) {
            assert!((a - b).abs() < 2e-3, "{a} vs {b}");
        }
    }
}

/// Continuation scoring on the host (a host prefix, the context's tail, then every continuation
/// packed into one row behind a per-token mask) gives the burn path's log-probabilities (f32
/// weights, its own packed mask), with and without LoRA: catches a continuation that sees its
/// neighbour's tokens, a prefix copied at the wrong offset, or a shifted target.
#[test]
fn packed_host_continuations_equal_the_burn_path() {
    let m = &MODEL.model;
    let tok = &MODEL.tokenizer;
    let adapters = random_adapters(5, 6);
    let shared = tok
        .encode(
            "Q: Where were the 1992 Olympics held?\nA: In Barcelona.\n\n",
            false,
        )
        .unwrap();
    let rest = tok.encode("Q: Is the sea salty?\nA:", false).unwrap();
    let conts: Vec<Vec<u32>> = [
        " Yes, it is.",
        " No",
        " Only near the coast, where rivers end.",
    ]
    .iter()
    .map(|c| tok.encode(c, false).unwrap())
    .collect();
    let burn = m.without_quantized();
    assert!(!burn.scores_on_host());
    for adapters in [None, Some(&adapters)] {
        let prefix = m
            .host_prefix_cache(&shared, adapters)
            .expect("quantised blocks");
        assert!(prefix.host().is_some());
        let got = m
            .host_continuation_logprobs(&prefix, &rest, &conts, adapters)
            .unwrap()
            .expect("a host prefix");
        let burn_prefix = burn.prefix_cache(&shared, adapters).unwrap();
        let want = burn
            .continuation_logprobs(&burn_prefix, &rest, &conts, adapters)
            .unwrap();
        let mut worst = 0.0f32;
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.len(), w.len());
            worst = worst.max(common::tiny::max_diff(g, w));
        }
        eprintln!(
            "packed host vs burn continuations (LoRA: {}): max |diff| = {worst:.2e}",
            adapters.is_some()
        );
        assert!(worst < 1e-3, "{worst}");
    }
}

/// The batched host path of `continuation_logits` (one right-padded pass for every sequence)
/// gives the KL of one sequence at a time, and of the burn path (`without_quantized`: the f32
/// weights dequantised from the same blocks): catches rows taken at the wrong offset in a
/// padded batch, or a sequence's continuation read from its neighbour's.
#[test]
fn batched_host_kl_equals_the_per_sequence_burn_kl() {
    let m = &MODEL.model;
    let adapters = random_adapters(5, 6);
    let prompts = two_chat_prompts();
    let seqs: Vec<(Vec<u32>, Vec<u32>)> = vec![
        (prompts[0].clone(), vec![504, 3437, 314, 260]),
        (prompts[1].clone(), vec![504, 1345]),
    ];
    assert!(
        m.host_decoder(1, 4, None).is_some(),
        "the GGUF model runs on the host"
    );
    let host = m.token_kl(&seqs, &adapters).unwrap();
    let one_by_one: Vec<Vec<f64>> = seqs
        .iter()
        .map(|s| {
            m.token_kl(std::slice::from_ref(s), &adapters)
                .unwrap()
                .remove(0)
        })
        .collect();
    let burn = m.without_quantized().token_kl(&seqs, &adapters).unwrap();
    for ((a, b), c) in host.iter().zip(&one_by_one).zip(&burn) {
        assert_eq!((a.len(), b.len()), (c.len(), c.len()));
        for ((x, y), z) in a.iter().zip(b).zip(c) {
            assert!(*x > 0.0 && (x - y).abs() < 1e-3 * y.max(1e-3), "{x} vs {y}");
            assert!((x - z).abs() < 0.05 * z.max(1e-3), "host {x} vs burn {z}");
        }
    }
}

/// SmolLM2's GGUF with its `tokenizer.ggml.eos_token_id` patched past the vocabulary: refused at
/// load with the key named (it used to generate without ever stopping).
#[test]
fn an_end_of_sequence_id_outside_the_vocabulary_is_refused() {
    use fpo_model::gguf::Gguf;
    use fpo_model::llm::{LlmError, TextTokenizer};
    let path = models_dir().join(DEFAULT_LLM);
    let mut bytes = std::fs::read(&path).unwrap();
    let key = b"tokenizer.ggml.eos_token_id";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("the key is in the file")
        + key.len();
    assert_eq!(bytes[at..at + 4], 4u32.to_le_bytes(), "a u32 value");
    bytes[at + 4..at + 8].copy_from_slice(&1_000_000u32.to_le_bytes());
    let g = Gguf::parse(bytes, Path::new("patched.gguf")).unwrap();
    let err = TextTokenizer::from_gguf(&g).unwrap_err();
    assert!(
        matches!(&err, LlmError::Invalid { key, .. } if key == "tokenizer.ggml.eos_token_id"),
        "{err}"
    );
    assert!(err.to_string().contains("1000000"), "{err}");
}

/// The prompt of the best-of-n tests: the chat template around a question (at least 32 tokens,
/// so that its pass takes the panel kernels, as eight copies of it do).
fn best_of_prompt() -> Vec<u32> {
    let ids = MODEL.tokenizer.encode_chat(&chat_prompt(), true).unwrap();
    assert!(ids.len() >= 32, "{} tokens", ids.len());
    ids
}

fn best_of_sampling() -> Sampling {
    Sampling {
        max_new_tokens: 12,
        min_new_tokens: 2,
        temperature: 0.8,
        top_p: 0.9,
    }
}

/// Each segment's prompt pass (with its adapters), to start host decoders from.
fn prompt_prefixes(
    segments: &[(usize, Option<&Adapters>)],
    prompt: &[u32],
) -> Vec<fpo_model::llm::decoder::HostPrefix> {
    let positions: Vec<usize> = (0..prompt.len()).collect();
    segments
        .iter()
        .map(|&(_, ad)| {
            let mut d = MODEL.model.host_decoder(1, prompt.len(), ad).unwrap();
            d.pass(prompt, &positions, None);
            d.snapshot()
        })
        .collect()
}

/// A host decoder of `segments` with each segment's prefix loaded into each of its rows.
fn segments_decoder<'a>(
    segments: &[(usize, Option<&Adapters>)],
    prefixes: &[&fpo_model::llm::decoder::HostPrefix],
    cap: usize,
) -> fpo_model::llm::decoder::HostDecoder<'a> {
    let mut d = MODEL.model.host_decoder_segments(segments, cap).unwrap();
    let mut row = 0;
    for (&(rows, _), p) in segments.iter().zip(prefixes) {
        for _ in 0..rows {
            d.load_prefix(row, p);
            row += 1;
        }
    }
    d
}

/// Rows of a host decoder in segments (each its own adapters) give, bit for bit, the logits of
/// each segment decoded alone, step after step: catches products whose sums depend on the rows
/// beside them (the plain kernels group 3 + 2 rows as 4 and 1), adapters applied to another
/// segment's rows, or a prefix loaded into the wrong row.
#[test]
fn decoder_segments_compute_what_each_computes_alone() {
    let m = &MODEL.model;
    let (a, b) = (random_adapters(5, 6), random_adapters(7, 8));
    let prompt = best_of_prompt();
    let segments: [(usize, Option<&Adapters>); 3] = [(3, Some(&a)), (2, Some(&b)), (1, None)];
    let steps: [u32; 3] = [504, 3437, 314];
    let cap = prompt.len() + steps.len();
    let prefixes = prompt_prefixes(&segments, &prompt);
    let run = |segs: &[(usize, Option<&Adapters>)],
               prefixes: &[&fpo_model::llm::decoder::HostPrefix]| {
        let mut d = segments_decoder(segs, prefixes, cap);
        let row: usize = segs.iter().map(|s| s.0).sum();
        steps
            .iter()
            .enumerate()
            .map(|(k, &t)| d.step(&vec![t; row], &vec![prompt.len() + k; row]))
            .collect::<Vec<_>>()
    };
    let together = run(&segments, &prefixes.iter().collect::<Vec<_>>());
    let vocab = m.config.vocab_size;
    let mut first = 0;
    for (seg, prefix) in segments.iter().zip(&prefixes) {
        let alone = run(std::slice::from_ref(seg), &[prefix]);
        for (k, (t, a)) in together.iter().zip(&alone).enumerate() {
            assert!(
                t[first * vocab..(first + seg.0) * vocab] == a[..],
                "step {k}: rows {first}.. differ from their segment alone"
            );
        }
        first += seg.0;
    }
    // Different adapters give different logits (the comparison above is not vacuous).
    assert!(together[0][..vocab] != together[0][3 * vocab..4 * vocab]);
}

/// A decoder that drops rows (`keep_rows`, as sampling does with finished rows) computes for
/// each row it keeps what the full batch computes for that row, bit for bit: each row reads its
/// own cache and runs its own segment's adapters wherever it sits in the pass.
#[test]
fn rows_kept_compute_what_the_full_batch_computes() {
    let m = &MODEL.model;
    let (a, b) = (random_adapters(5, 6), random_adapters(7, 8));
    let prompt = best_of_prompt();
    let segments: [(usize, Option<&Adapters>); 3] = [(3, Some(&a)), (2, Some(&b)), (1, None)];
    let rows = 6;
    // Each row its own tokens, so that rows of one segment differ too.
    let token = |step: usize, row: usize| [504u32, 3437, 314][step] + 11 * row as u32;
    let cap = prompt.len() + 3;
    let prefixes = prompt_prefixes(&segments, &prompt);
    let prefixes: Vec<_> = prefixes.iter().collect();
    let fresh = || segments_decoder(&segments, &prefixes, cap);
    let feed = |d: &mut fpo_model::llm::decoder::HostDecoder<'_>, step: usize, kept: &[usize]| {
        let ids: Vec<u32> = kept.iter().map(|&r| token(step, r)).collect();
        d.step(&ids, &vec![prompt.len() + step; kept.len()])
    };
    let all: Vec<usize> = (0..rows).collect();
    let mut full = fresh();
    let full_steps: Vec<Vec<f32>> = (0..3).map(|k| feed(&mut full, k, &all)).collect();
    let mut part = fresh();
    let vocab = m.config.vocab_size;
    assert!(feed(&mut part, 0, &all) == full_steps[0]);
    for (k, kept) in [(1, vec![1, 3, 5]), (2, vec![3, 5])] {
        part.keep_rows(&kept);
        let got = feed(&mut part, k, &kept);
        for (i, &r) in kept.iter().enumerate() {
            assert!(
                got[i * vocab..(i + 1) * vocab] == full_steps[k][r * vocab..(r + 1) * vocab],
                "step {k}: row {r}, kept as the batch's row {i}, differs from the full batch's"
            );
        }
    }
    // Rows of one segment differ, so a row that read another's cache would be caught.
    assert!(full_steps[1][..vocab] != full_steps[1][vocab..2 * vocab]);
}

/// Sampling groups after their prompt passes gives each group what it gives alone, bit for bit,
/// and the tokens `generate` of that group's rows (the prompt repeated) samples with the same
/// random stream: the one prompt pass is the prefill of every copy (its products differ from
/// `generate`'s decoding steps by rounding only, far below what changes a token here).
#[test]
fn sampled_groups_equal_generate_of_each_group() {
    let m = &MODEL.model;
    let tok = &MODEL.tokenizer;
    let (a, b) = (random_adapters(5, 6), random_adapters(7, 8));
    let prompt = best_of_prompt();
    let sampling = best_of_sampling();
    let want = |rows: usize, adapters: Option<&Adapters>, seed: u64| {
        m.generate(
            &vec![prompt.clone(); rows],
            &sampling,
            &tok.eos,
            tok.pad,
            &mut ChaCha8Rng::seed_from_u64(seed),
            adapters,
        )
        .unwrap()
    };
    let pa = m.prompt_pass(&prompt, Some(&a), false).unwrap();
    let pb = m.prompt_pass(&prompt, Some(&b), false).unwrap();
    let base = m.prompt_pass(&prompt, None, true).unwrap();
    let (mut ra, mut rb, mut rr) = (
        ChaCha8Rng::seed_from_u64(1),
        ChaCha8Rng::seed_from_u64(2),
        ChaCha8Rng::seed_from_u64(3),
    );
    let mut groups = vec![
        SampleGroup {
            pass: &pa,
            rows: 4,
            adapters: Some(&a),
            rng: &mut ra,
        },
        SampleGroup {
            pass: &pb,
            rows: 3,
            adapters: Some(&b),
            rng: &mut rb,
        },
        SampleGroup {
            pass: &base,
            rows: 1,
            adapters: None,
            rng: &mut rr,
        },
    ];
    let got = m
        .sample_groups(&mut groups, &sampling, &tok.eos, tok.pad)
        .unwrap();
    assert_eq!(got[0], want(4, Some(&a), 1));
    assert_eq!(got[1], want(3, Some(&b), 2));
    assert_eq!(got[2], want(1, None, 3));
    assert!(got[0][0].ids != got[1][0].ids, "adapters changed nothing");
    let mut ra = ChaCha8Rng::seed_from_u64(1);
    let mut alone = [SampleGroup {
        pass: &pa,
        rows: 4,
        adapters: Some(&a),
        rng: &mut ra,
    }];
    let alone = m
        .sample_groups(&mut alone, &sampling, &tok.eos, tok.pad)
        .unwrap();
    assert_eq!(alone[0], got[0]);
}

/// Continuations scored after a prompt pass equal `score` of each (prompt, continuation) (up to
/// summation order), with the prompt's tokens included: catches a prompt log-probability
/// shifted by one, the first continuation token read from the wrong logits, or a continuation
/// seeing its neighbour.
#[test]
fn scores_after_a_prompt_pass_equal_score() {
    let m = &MODEL.model;
    let prompt = best_of_prompt();
    let conts: Vec<Vec<u32>> = vec![
        vec![504, 3437, 314, 260],
        vec![1345],
        vec![504, 1345, 28, 9],
    ];
    let adapters = random_adapters(5, 6);
    for ad in [None, Some(&adapters)] {
        let pass = m.prompt_pass(&prompt, ad, true).unwrap();
        let got = m.score_after(&pass, &conts, ad).unwrap();
        let seqs: Vec<(Vec<u32>, Vec<u32>)> =
            conts.iter().map(|c| (prompt.clone(), c.clone())).collect();
        let want = m.score(&seqs, ad, 2048).unwrap();
        let mut worst = 0.0f32;
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.prompt_len, w.prompt_len);
            assert_eq!(g.logprobs.len(), w.logprobs.len());
            worst = worst.max(common::tiny::max_diff(&g.logprobs, &w.logprobs));
        }
        eprintln!(
            "scores after a prompt pass vs score (LoRA: {}): {worst:.2e}",
            ad.is_some()
        );
        assert!(worst < 1e-4, "{worst}");
    }
    let plain = m.prompt_pass(&prompt, None, false).unwrap();
    assert!(
        m.score_after(&plain, &conts, None).is_err(),
        "a pass without log-probabilities"
    );
}

/// The host policy step on SmolLM2 (30 layers, 9 query heads on 3 key/value heads, a vocabulary
/// of 49,152) gives burn autodiff's log-probs and adapter gradients for a chat prompt and its
/// answer, with dropout: the step the training loop takes on a CPU.
#[test]
fn host_step_equals_burn_autodiff_on_smollm2() {
    let path = models_dir().join(DEFAULT_LLM);
    let trainer = LoadedModel::load(&path, BackendKind::Flex, true)
        .unwrap()
        .model;
    let dev = trainer.device().clone();
    let cfg = LoraConfig {
        rank: 16,
        ..LoraConfig::default()
    };
    let fresh = Adapters::new(&cfg, &trainer.config, 11, &dev).unwrap();
    let adapters = common::tiny::randomized(fresh, 12, &dev);
    let mut seq = two_chat_prompts().remove(1);
    seq.extend(
        MODEL
            .tokenizer
            .encode("The sea is wide, grey and cold in winter.", false)
            .unwrap(),
    );
    let (lp_diff, grads) =
        common::tiny::host_step_against_autodiff(&trainer, &adapters, &seq, cfg.dropout, 5);
    let worst = grads.iter().map(|(_, d, l)| d / l).fold(0.0f32, f32::max);
    eprintln!(
        "host step vs autodiff, {} tokens: max |log-prob diff| {lp_diff:.2e}, worst gradient \
         difference over its largest entry {worst:.2e}",
        seq.len()
    );
    // Rounding over 30 layers in f32 (other summation orders, as the host decoder's logits
    // against burn's): log-probs within 5.2e-5, gradients within 6.3e-4 of their largest entry
    // (2026-12-05; with the vocabulary's softmax summed in f32, 1.9e-4 and 1.9e-3); a wrong
    // term anywhere moves a gradient by its own size.
    assert!(lp_diff < 2e-4, "log-probs differ by {lp_diff}");
    assert_eq!(grads.len(), 30 * 4 * 2);
    for (name, diff, largest) in grads {
        assert!(largest > 0.0, "{name}: no gradient");
        assert!(
            diff <= 5e-3 * largest,
            "{name}: host and autodiff gradients differ by {diff} (largest {largest})"
        );
    }
}
