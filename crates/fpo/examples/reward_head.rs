//! Fits the reward model's linear head (Bradley-Terry) on MiniLM features of the HH-RLHF
//! harmless pairs and prints its held-out pair accuracy: responses alone, at most 128 tokens, as
//! the LLM pipeline scores them. `cargo run --release -p fpo --example reward_head`
//! (needs `just models`; the pairs are read from the checkout's `datasets/`, or `FPO_DATA_DIR`).

#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Instant;

use fpo::reward::{BradleyTerry, Head};
use fpo_model::encoder::SentenceEncoder;
use fpo_model::llm::{DEFAULT_ENCODER, models_dir};
use fpo_model::{BackendKind, device};

fn main() {
    let data = std::env::var_os("FPO_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets"))
        .join("preferences/hh_rlhf_harmless_base_test_pairs.jsonl");
    let text = std::fs::read_to_string(&data).unwrap_or_else(|e| panic!("{}: {e}", data.display()));
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let dev = device(BackendKind::Flex, false).unwrap();
    let enc = SentenceEncoder::load(&models_dir().join(DEFAULT_ENCODER), &dev).unwrap();
    let t = Instant::now();
    let chosen: Vec<&str> = rows.iter().map(|r| r["chosen"].as_str().unwrap()).collect();
    let rejected: Vec<&str> = rows
        .iter()
        .map(|r| r["rejected"].as_str().unwrap())
        .collect();
    let fc = enc.embed(&chosen, 128, 32).unwrap();
    let fr = enc.embed(&rejected, 128, 32).unwrap();
    let embed_s = t.elapsed().as_secs_f64();
    let pairs: Vec<(Vec<f32>, Vec<f32>)> = fc.into_iter().zip(fr).collect();
    let split = pairs.len() * 4 / 5;
    let (train, test) = pairs.split_at(split);
    let t = Instant::now();
    let (head, losses) =
        Head::fit_bradley_terry(Head::zeros(enc.dim()), train, &BradleyTerry::default());
    println!(
        "{} pairs ({} train, {} held out); embedding {:.1} s, fit {:.1} s; final train loss {:.4}",
        pairs.len(),
        train.len(),
        test.len(),
        embed_s,
        t.elapsed().as_secs_f64(),
        losses.last().unwrap()
    );
    println!(
        "pair accuracy: train {:.3}, held out {:.3}",
        head.pair_accuracy(train),
        head.pair_accuracy(test)
    );
}
