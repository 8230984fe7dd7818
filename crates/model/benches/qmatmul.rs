//! Throughput of the quantised matrix product ([`fpo_model::llm::quant::QMatrix::matmul`]) on
//! SmolLM2's real blocks, per batch size, beside burn's f32 matmul (flex, AVX-512 gemm) of the
//! same dequantised weights: `cargo bench --bench qmatmul` (threads: `RAYON_NUM_THREADS`).
//! Prints microseconds per product and GFLOP/s per shape, for each CPU kernel path this CPU has
//! (AVX-512, AVX2, portable; `FPO_CPU` does not change this table, and burn's gemm keeps its own
//! dispatch): the decoder takes the quantised path for as many token rows as it wins at
//! (`QUANT_MAX_ROWS`).

#![allow(clippy::print_stdout)]

use std::time::Instant;

use burn::tensor::{DType, Tensor, TensorData};
use fpo_model::gguf::Gguf;
use fpo_model::llm::quant::QMatrix;
use fpo_model::llm::{DEFAULT_LLM, models_dir};
use fpo_model::{BackendKind, CpuPath, device};

/// Best-of-3 mean microseconds of `f` over `reps` calls.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..3)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64 * 1e6
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let file = Gguf::open(&models_dir().join(DEFAULT_LLM)).unwrap_or_else(|e| panic!("{e}"));
    streaming(&file);
    let dev = device(BackendKind::Flex, false).unwrap();
    println!(
        "| matrix | rows x cols | inputs | kernel path | quantised: us | GFLOP/s | burn f32 gemm: us | GFLOP/s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for name in [
        "blk.0.ffn_gate.weight",
        "blk.0.ffn_down.weight",
        "token_embd.weight",
    ] {
        let q = QMatrix::from_gguf(&file, name, None)
            .unwrap_or_else(|e| panic!("{e}"))
            .expect("a block type QMatrix takes");
        let (rows, cols) = (q.rows(), q.cols());
        let w = file.dequantize(name).unwrap_or_else(|e| panic!("{e}"));
        // Stored `[in, out]` as the decoder keeps its f32 projections.
        let wt = Tensor::<2>::from_data(TensorData::new(w, [rows, cols]), (&dev, DType::F32))
            .transpose();
        let wt = Tensor::<2>::from_data(wt.into_data(), (&dev, DType::F32));
        for n in [1usize, 2, 4, 8, 12, 16, 38] {
            let x: Vec<f32> = (0..n * cols)
                .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
                .collect();
            let reps = (2000 / n).max(50);
            let gemm = time(reps, || {
                let xt = Tensor::<2>::from_data(
                    TensorData::new(x.clone(), [n, cols]),
                    (&dev, DType::F32),
                );
                std::hint::black_box(xt.matmul(wt.clone()).into_data());
            });
            let gf = |us: f64| 2.0 * (rows * cols * n) as f64 / us / 1e3;
            for path in CpuPath::supported() {
                let quant = time(reps, || {
                    std::hint::black_box(q.matmul_on(std::hint::black_box(&x), n, path));
                });
                println!(
                    "| {name} | {rows} x {cols} | {n} | {path} | {quant:.1} | {:.1} | {gemm:.1} | {:.1} |",
                    gf(quant),
                    gf(gemm)
                );
            }
        }
    }
}

/// Every layer's projections and the output head one after another, as a decoding step runs
/// them: ~110 MB that stream from memory rather than sit in cache, per path and batch size.
fn streaming(file: &Gguf) {
    let layers = (0..)
        .take_while(|l| file.tensor(&format!("blk.{l}.ffn_gate.weight")).is_ok())
        .count();
    let mut mats = Vec::new();
    for l in 0..layers {
        for part in [
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
        ] {
            let name = format!("blk.{l}.{part}.weight");
            mats.extend(QMatrix::from_gguf(file, &name, None).unwrap_or_else(|e| panic!("{e}")));
        }
    }
    mats.extend(
        QMatrix::from_gguf(file, "token_embd.weight", None).unwrap_or_else(|e| panic!("{e}")),
    );
    let flops: usize = mats.iter().map(|m| 2 * m.rows() * m.cols()).sum();
    println!(
        "| products of a decoding step ({} matrices) | inputs | kernel path | ms | GFLOP/s |",
        mats.len()
    );
    println!("|---|---|---|---|---|");
    // 25: the loop's decoding batch at the paper's sizes (3 policies x 8 candidates and the
    // reference), on the batch-invariant kernels it takes.
    for (n, invariant) in [(1usize, false), (8, false), (25, true)] {
        let xs: Vec<Vec<f32>> = mats
            .iter()
            .map(|m| {
                (0..n * m.cols())
                    .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
                    .collect()
            })
            .collect();
        for path in CpuPath::supported() {
            let us = time(5, || {
                for (m, x) in mats.iter().zip(&xs) {
                    let x = std::hint::black_box(x);
                    std::hint::black_box(if invariant {
                        m.invariant_on(x, n, path)
                    } else {
                        m.matmul_on(x, n, path)
                    });
                }
            });
            let inputs = if invariant {
                format!("{n}, batch-invariant")
            } else {
                n.to_string()
            };
            println!(
                "| | {inputs} | {path} | {:.2} | {:.1} |",
                us / 1e3,
                (flops * n) as f64 / us / 1e3
            );
        }
    }
    println!();
}
