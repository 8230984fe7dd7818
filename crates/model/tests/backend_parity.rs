//! The same small workloads on every backend this build has, against `flex` (burn's CPU backend,
//! which the golden tests pin to Hugging Face transformers): a tiny random Llama's logits with
//! and without LoRA adapters, batched greedy generation with padding, per-token scores, three
//! AdamW steps on the adapters (loss, gradients through dropout, updated values); SmolLM2 against
//! the transformers reference; MiniLM's embeddings. The toys' parity (their reward model and
//! tensor programs against the hand-written `f64` kernels) is `fpo`'s `tests/toy_parity.rs`.
//!
//! Without GPU features this compares `ndarray` with `flex`. Built with `--features wgpu` it
//! also runs everything on wgpu, and then requires an adapter (CI installs Mesa's lavapipe).
//!
//! Tolerances against flex, in `f32`: logits, log-probabilities and losses 1e-4 absolute (values
//! of order 1-10; other reduction orders, a GPU's own `exp`/`rsqrt`); adapter values after three
//! AdamW steps 1e-4 absolute (AdamW divides by `sqrt(v)`, which amplifies gradient rounding where
//! gradients are tiny); SmolLM2's last logits 1e-3 from transformers, as the CPU golden test;
//! greedy token ids exactly. Measured on lavapipe: logits 2.4e-6, scores 4.8e-7, adapters 5.7e-7-1.8e-6,
//! SmolLM2 6.2e-5 from transformers; ndarray: 2.1e-6, 9.5e-7, 5.1e-7.

mod common;

use burn::optim::{AdamWConfig, GradientsParams};
use common::tiny::*;
use fpo_model::encoder::SentenceEncoder;
use fpo_model::llm::lora::DropoutMasks;
use fpo_model::llm::{
    Adapters, DEFAULT_ENCODER, DEFAULT_LLM, LoadedModel, LoraConfig, Sampling, models_dir,
};
use fpo_model::{BackendKind, device};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const LOGIT_TOL: f32 = 1e-4;
const ADAPTER_TOL: f32 = 1e-4;

/// The backends compared with flex: every one compiled in. A GPU backend compiled in must find
/// a device: a parity test that skips itself proves nothing.
fn others() -> Vec<BackendKind> {
    fpo_model::backend::others_than_flex().unwrap_or_else(|e| panic!("{e}"))
}

fn lora_config(dropout: f64) -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout,
        targets: vec!["q".into(), "k".into(), "v".into(), "o".into()],
    }
}

fn assert_close(what: &str, kind: BackendKind, tol: f32, got: &[f32], want: &[f32]) {
    let diff = max_diff(got, want);
    eprintln!("{}: {what}: max |diff| vs flex {diff:.2e}", kind.name());
    assert!(diff <= tol, "{}: {what}: {diff} > {tol}", kind.name());
}

/// Everything the tiny model computes without gradients, on one backend.
#[derive(Debug)]
struct Inference {
    logits: Vec<f32>,
    logits_adapted: Vec<f32>,
    generated: Vec<Vec<u32>>,
    scores: Vec<f32>,
}

fn tiny_inference(dir: &std::path::Path, kind: BackendKind) -> Inference {
    let dev = device(kind, false).unwrap();
    let m = from_hf(dir, &dev);
    let ids = [3, 17, 5, 39, 0, 22, 8, 11, 30];
    let ad = randomized(
        Adapters::new(&lora_config(0.0), &m.config, 5, &dev).unwrap(),
        6,
        &dev,
    );
    let prompts = vec![vec![1, 2, 3, 4, 5, 6], vec![7, 8, 9]];
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let generated = m
        .generate(&prompts, &Sampling::greedy(12), &[], 0, &mut rng, Some(&ad))
        .unwrap()
        .into_iter()
        .map(|g| g.ids)
        .collect();
    let scores = m
        .score(
            &[(vec![1, 2, 3], vec![4, 5, 6, 7]), (vec![9], vec![10, 11])],
            Some(&ad),
            64,
        )
        .unwrap()
        .into_iter()
        .flat_map(|s| s.logprobs)
        .collect();
    Inference {
        logits: all_logits(&m, &ids, None),
        logits_adapted: all_logits(&m, &ids, Some(&ad)),
        generated,
        scores,
    }
}

#[test]
fn tiny_llama_inference_matches_flex() {
    let dir = tempfile::tempdir().unwrap();
    write_hf(dir.path(), &random_weights(11));
    let flex = tiny_inference(dir.path(), BackendKind::Flex);
    for kind in others() {
        let got = tiny_inference(dir.path(), kind);
        assert_close("logits", kind, LOGIT_TOL, &got.logits, &flex.logits);
        assert_close(
            "logits with adapters",
            kind,
            LOGIT_TOL,
            &got.logits_adapted,
            &flex.logits_adapted,
        );
        assert_close("scores", kind, LOGIT_TOL, &got.scores, &flex.scores);
        assert_eq!(got.generated, flex.generated, "{}: greedy ids", kind.name());
    }
}

/// Three AdamW steps on the adapters (dropout 0.1, masks from a seeded host RNG): the loss of
/// each step and the adapters' values after the last.
fn tiny_training(dir: &std::path::Path, kind: BackendKind) -> (Vec<f32>, Vec<f32>) {
    let dev = device(kind, true).unwrap();
    let m = from_hf(dir, &dev);
    let cfg = lora_config(0.1);
    let mut ad = Adapters::new(&cfg, &m.config, 1, &dev).unwrap();
    let seqs = vec![vec![3, 17, 5, 39, 0, 22, 8], vec![4, 4, 9, 1]];
    let mut optim = AdamWConfig::new().init();
    let mut losses = Vec::new();
    for step in 0..3 {
        let mut drop = DropoutMasks::new(cfg.dropout, seqs.len() * 7, step, &dev);
        let lp = m.token_logprobs(&seqs, Some(&ad), drop.as_mut()).unwrap();
        let loss = lp.tensor.narrow(0, 0, 1).mean().neg();
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &ad);
        ad = optim.step(1e-2, ad, grads);
    }
    (losses, ad.flat_values())
}

#[test]
fn lora_training_steps_match_flex() {
    let dir = tempfile::tempdir().unwrap();
    write_hf(dir.path(), &random_weights(12));
    let (flex_loss, flex_values) = tiny_training(dir.path(), BackendKind::Flex);
    assert!(flex_loss[2] < flex_loss[0], "training moves: {flex_loss:?}");
    for kind in others() {
        let (loss, values) = tiny_training(dir.path(), kind);
        assert_close("losses", kind, LOGIT_TOL, &loss, &flex_loss);
        assert_close(
            "adapters after 3 steps",
            kind,
            ADAPTER_TOL,
            &values,
            &flex_values,
        );
    }
}

/// SmolLM2-135M-Instruct (f32 weights on a GPU backend) against the transformers reference:
/// the chat prompt's last logits and the 32-token greedy continuation. Needs `just models`.
#[test]
fn smollm2_matches_transformers_on_every_backend() {
    let reference = common::fixture_json("smollm2_reference.json");
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let prompt = ids(&reference["tokenization"]["chat"]["ids"]);
    let want: Vec<f32> = reference["chat_last_logits"]["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let path = models_dir().join(DEFAULT_LLM);
    // flex is the golden test's own subject (tests/smollm2.rs); ndarray is 10x slower at this size.
    for kind in others().into_iter().filter(|k| !k.is_cpu()) {
        let model = LoadedModel::load(&path, kind, false)
            .unwrap_or_else(|e| panic!("{e} (run `just models`)"));
        let logits = model.model.next_logits(&prompt, None).unwrap();
        let diff = max_diff(&logits, &want);
        eprintln!(
            "{}: SmolLM2 last logits: max |diff| vs transformers {diff:.2e}",
            kind.name()
        );
        assert!(diff < 1e-3, "{}: {diff}", kind.name());
        let tok = &model.tokenizer;
        let out = model
            .model
            .generate(
                std::slice::from_ref(&prompt),
                &Sampling::greedy(32),
                &tok.eos,
                tok.pad,
                &mut ChaCha8Rng::seed_from_u64(0),
                None,
            )
            .unwrap();
        assert_eq!(
            out[0].ids,
            ids(&reference["greedy_32"]["new_ids"]),
            "{}",
            kind.name()
        );
    }
}

/// The reward model's encoder (all-MiniLM-L6-v2) on every backend against flex: embeddings of
/// a padded batch within 1e-5 (unit vectors). Needs `just models`.
#[test]
fn minilm_embeddings_match_flex() {
    let texts = [
        "Watermelon seeds pass through the digestive system.",
        "I'm pretty sure the answer is yes. Please confirm.",
        "Short.",
    ];
    let embed = |kind: BackendKind| -> Vec<f32> {
        let dev = device(kind, false).unwrap();
        let enc = SentenceEncoder::load(&models_dir().join(DEFAULT_ENCODER), &dev)
            .unwrap_or_else(|e| panic!("{e} (run `just models`)"));
        enc.embed(&texts, 128, 3).unwrap().concat()
    };
    let flex = embed(BackendKind::Flex);
    for kind in others() {
        assert_close("MiniLM embeddings", kind, 1e-5, &embed(kind), &flex);
    }
}
