//! Throughput of the quantised matrix product ([`fpo_model::llm::quant::QMatrix::matmul`]) on
//! SmolLM2's real blocks, per batch size: `cargo bench --bench qmatmul` (threads:
//! `RAYON_NUM_THREADS`). Prints GFLOP/s and effective weight bandwidth per shape.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use fpo_model::gguf::Gguf;
use fpo_model::llm::quant::QMatrix;
use fpo_model::llm::{DEFAULT_LLM, models_dir};

fn main() {
    let file = Gguf::open(&models_dir().join(DEFAULT_LLM)).unwrap_or_else(|e| panic!("{e}"));
    println!("| matrix | rows x cols | inputs | us per product | GFLOP/s |");
    println!("|---|---|---|---|---|");
    for name in ["blk.0.ffn_gate.weight", "blk.0.ffn_down.weight"] {
        let q = QMatrix::from_gguf(&file, name, None)
            .unwrap_or_else(|e| panic!("{e}"))
            .expect("a block type QMatrix takes");
        let (rows, cols) = (q.rows(), q.cols());
        for n in [1usize, 4, 8, 38] {
            let x: Vec<f32> = (0..n * cols)
                .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
                .collect();
            let reps = (2000 / n).max(50);
            let _ = q.matmul(&x, n);
            let t = Instant::now();
            for _ in 0..reps {
                std::hint::black_box(q.matmul(std::hint::black_box(&x), n));
            }
            let us = t.elapsed().as_secs_f64() / reps as f64 * 1e6;
            let gflops = 2.0 * (rows * cols * n) as f64 / us / 1e3;
            println!("| {name} | {rows} x {cols} | {n} | {us:.1} | {gflops:.1} |");
        }
    }
}
