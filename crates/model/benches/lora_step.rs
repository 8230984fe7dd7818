//! The LoRA policy step (mean NLL of one sequence, gradients of every adapter) on the host
//! (`Llama::host_step`, the training loop's step on a CPU) against burn's autodiff (the step
//! before it, and still the step on a GPU), on the same autodiff copy of SmolLM2, alternating
//! over 5 rounds: each round's times and ratio, and the two's largest gradient difference.
//! `just bench-lora-step`; threads: `RAYON_NUM_THREADS`. Sequence lengths: the loop's (a
//! ~48-token prompt and up to 32 new tokens) and the 160 tokens of `just bench-model`.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use burn::optim::GradientsParams;
use fpo_model::llm::lora::DropoutMasks;
use fpo_model::llm::{Adapters, DEFAULT_LLM, LoadedModel, LoraConfig, Message, models_dir};
use fpo_model::{BackendKind, device};

fn main() {
    fpo_model::CpuPath::from_env().unwrap_or_else(|e| panic!("{e}"));
    let path = models_dir().join(DEFAULT_LLM);
    let dev = device(BackendKind::Flex, true).unwrap();
    let loaded = LoadedModel::load_on(&path, &dev, false).unwrap_or_else(|e| panic!("{e}"));
    let m = &loaded.model;
    // The paper's adapters (r = 16 on q, k, v, o), fresh as the loop's first step takes them.
    let cfg = LoraConfig {
        rank: 16,
        alpha: 32.0,
        ..LoraConfig::default()
    };
    let adapters = Adapters::new(&cfg, &m.config, 0, &dev).unwrap();
    let prompt = loaded
        .tokenizer
        .encode_chat(
            &[Message::new(
                "user",
                "What happens if you eat watermelon seeds? Answer in one short paragraph.",
            )],
            true,
        )
        .unwrap();
    let host = m.host_step().expect("a CPU model");
    let threads = rayon::current_num_threads();
    println!(
        "LoRA step, SmolLM2-135M, r = 16 on q/k/v/o, dropout {}; {threads} threads; kernel \
         path of the host step's products: {} (autodiff multiplies through burn's gemm)",
        cfg.dropout,
        fpo_model::CpuPath::active()
    );
    println!("| tokens | round | autodiff: s | host: s | autodiff / host |");
    println!("|---|---|---|---|---|");
    for len in [prompt.len() + 32, 160] {
        let seq: Vec<u32> = (0..len)
            .map(|i| prompt[i % prompt.len()] + (i / prompt.len()) as u32)
            .collect();
        let masks = || DropoutMasks::new(cfg.dropout, seq.len(), 7, &dev);
        let autodiff = || {
            let mut d = masks();
            let lp = m
                .token_logprobs(std::slice::from_ref(&seq), Some(&adapters), d.as_mut())
                .unwrap();
            GradientsParams::from_grads(lp.tensor.mean().neg().backward(), &adapters)
        };
        let on_host = || {
            let mut d = masks();
            host.nll_gradients(&seq, &adapters, d.as_mut())
                .to_params(&adapters, 1.0)
        };
        // Warm-up, and the check that both computed the same gradients.
        let (a, b) = (autodiff(), on_host());
        let mut worst = 0.0f32;
        for l in &adapters.layers {
            for pair in [&l.q, &l.k, &l.v, &l.o].into_iter().flatten() {
                for p in [&pair.a, &pair.b] {
                    let get = |g: &GradientsParams| -> Vec<f32> {
                        g.get::<2>(p.id)
                            .unwrap()
                            .into_data()
                            .convert::<f32>()
                            .try_into_vec()
                            .unwrap()
                    };
                    let (x, y) = (get(&a), get(&b));
                    let largest = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    let diff = x
                        .iter()
                        .zip(&y)
                        .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
                    if largest > 0.0 {
                        worst = worst.max(diff / largest);
                    }
                }
            }
        }
        let mut ratios = Vec::new();
        for round in 1..=5 {
            let t = Instant::now();
            std::hint::black_box(autodiff());
            let ta = t.elapsed().as_secs_f64();
            let t = Instant::now();
            std::hint::black_box(on_host());
            let th = t.elapsed().as_secs_f64();
            ratios.push(ta / th);
            println!("| {len} | {round} | {ta:.3} | {th:.3} | {:.2}x |", ta / th);
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "{len} tokens: median {:.2}x; largest gradient difference over its matrix's largest \
             entry {worst:.1e} (B is zero, so dA is; compared where non-zero)",
            ratios[2]
        );
    }
}
