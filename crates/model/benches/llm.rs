//! Throughput of the LLM on this machine (`just bench-model`): prefill and decode tokens/s at
//! batch 1 and 8 on the 38-token chat prompt of the golden tests, one LoRA training step
//! (forward + backward) on 160 tokens, and peak resident memory. Threads: `RAYON_NUM_THREADS`.
//! Prints one table row; the recipe runs it at 1 and 2 threads beside the reference figures.
//! `FPO_BENCH_BACKEND` picks the backend (default `flex`; `just gpu-check` runs it on each);
//! `FPO_CPU` the host kernels' path (default: the best this CPU has). The LoRA step runs on
//! burn's f32 gemm, which `FPO_CPU` does not steer.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use fpo_model::llm::{
    Adapters, DEFAULT_LLM, LoadedModel, LoraConfig, Message, Sampling, models_dir,
};
use fpo_model::{BackendKind, device};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn peak_rss_gb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1e6)
}

fn main() {
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    let backend = std::env::var("FPO_BENCH_BACKEND").map_or(BackendKind::Flex, |b| {
        BackendKind::from_name(&b).unwrap_or_else(|| panic!("FPO_BENCH_BACKEND: unknown `{b}`"))
    });
    // A kernel path `FPO_CPU` forces and this CPU lacks ends the bench here, with the reason.
    fpo_model::CpuPath::from_env().unwrap_or_else(|e| panic!("{e}"));
    let path = models_dir().join(DEFAULT_LLM);
    let m = LoadedModel::load(&path, backend, false).unwrap_or_else(|e| panic!("{e}"));
    let tok = &m.tokenizer;
    let prompt = tok
        .encode_chat(
            &[Message::new(
                "user",
                "What happens if you eat watermelon seeds?",
            )],
            true,
        )
        .unwrap();
    assert_eq!(prompt.len(), 38);
    let mut rng = ChaCha8Rng::seed_from_u64(0);

    // Prefill: full forward of the prompt, best of 5.
    let _ = m.model.next_logits(&prompt, None).unwrap();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let _ = m.model.next_logits(&prompt, None).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    let prefill = prompt.len() as f64 / best;

    // Decode: 64 new tokens (no early stop), minus the prefill, per batch size.
    let n = 64;
    let s = Sampling {
        max_new_tokens: n,
        min_new_tokens: n,
        temperature: 0.0,
        top_p: 1.0,
    };
    let mut decode = Vec::new();
    for batch in [1usize, 8] {
        let prompts = vec![prompt.clone(); batch];
        let t = Instant::now();
        let mut pre = Sampling::greedy(1);
        pre.min_new_tokens = 1;
        m.model
            .generate(&prompts, &pre, &tok.eos, tok.pad, &mut rng, None)
            .unwrap();
        let t_pre = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let out = m
            .model
            .generate(&prompts, &s, &tok.eos, tok.pad, &mut rng, None)
            .unwrap();
        let dt = t.elapsed().as_secs_f64() - t_pre;
        assert!(out.iter().all(|g| g.ids.len() == n));
        decode.push((batch * (n - 1)) as f64 / dt);
    }

    let rss_inference = peak_rss_gb();

    // One LoRA step: NLL of a 160-token sequence, backward, on the autodiff device.
    let ad = device(backend, true).unwrap();
    let train = LoadedModel::load_on(&path, &ad, false).unwrap();
    let adapters = Adapters::new(&LoraConfig::default(), &train.config, 0, &ad).unwrap();
    let seq: Vec<u32> = (0..160).map(|i| prompt[i % prompt.len()]).collect();
    let mut step = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let lp = train
            .model
            .token_logprobs(std::slice::from_ref(&seq), Some(&adapters), None)
            .unwrap();
        let loss = lp.tensor.mean().neg();
        let grads = loss.backward();
        let g = adapters.layers[0].q.as_ref().unwrap().b.val().grad(&grads);
        // Reading it back waits for a GPU backend to finish the step.
        assert!(g.unwrap().into_data().num_elements() > 0);
        step = step.min(t.elapsed().as_secs_f64());
    }
    let engine = if backend.is_cpu() {
        format!(
            "fpo (burn {}; prefill and decoding on the host from the 4-bit blocks)",
            backend.name()
        )
    } else {
        format!("fpo (burn {}, f32 weights; host RSS)", backend.name())
    };
    // `FPO_BENCH_JSON=1`: one JSON line, for `just bench-model-compare`.
    if std::env::var_os("FPO_BENCH_JSON").is_some() {
        let row = serde_json::json!({
            "engine": engine,
            "threads": threads,
            "prefill": prefill,
            "decode_b1": decode[0],
            "decode_b8": decode[1],
            "rss_gb": rss_inference,
            "lora_step_s": step,
            "kernels": fpo_model::CpuPath::active().name(),
        });
        println!("{row}");
    } else {
        println!(
            "| {engine}, {} kernels | {threads} | {prefill:.0} | {:.1} | {:.1} | {rss_inference:.2} GB | {step:.2} s |",
            fpo_model::CpuPath::active(),
            decode[0],
            decode[1]
        );
    }
}
