//! This machine's f32 fused multiply-add peak: the roofline the kernels' rates are read
//! against (docs/results.md). Independent accumulators in registers (no memory traffic), on
//! the kernel path of this process (16 lanes on AVX-512, 8 on AVX2), on one thread and on every
//! thread of rayon's pool at once, 4 rounds each. `just bench-fma-peak`; threads:
//! `RAYON_NUM_THREADS`.

#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::Instant;

use fpo_model::CpuPath;

/// Fused multiply-adds per accumulator and call.
const STEPS: usize = 50_000_000;
/// Independent accumulators: more than the FMA latency times the units, fewer than the
/// registers.
const ACC: usize = 12;

fn main() {
    let path = CpuPath::from_env().unwrap_or_else(|e| panic!("{e}"));
    let threads = rayon::current_num_threads();
    println!("kernel path: {path:?}; threads: 1 and {threads}");
    println!("| round | 1 thread: GFLOP/s | {threads} threads: GFLOP/s | per thread |");
    println!("|---|---|---|---|");
    for round in 1..=4 {
        let one = rate(path, 1);
        let all = rate(path, threads);
        println!(
            "| {round} | {one:.1} | {all:.1} | {:.1} |",
            all / threads as f64
        );
    }
}

/// GFLOP/s of `threads` threads each running [`chains`].
fn rate(path: CpuPath, threads: usize) -> f64 {
    let t = Instant::now();
    let lanes: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(|| chains(path))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    (2 * STEPS * ACC * lanes) as f64 / t.elapsed().as_secs_f64() / 1e9
}

/// [`ACC`] chains of [`STEPS`] fused multiply-adds; the lanes per instruction that ran.
fn chains(path: CpuPath) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if path == CpuPath::Avx512
            && let Some(lanes) = chains_avx512()
        {
            return lanes;
        }
        if path != CpuPath::Portable
            && let Some(lanes) = chains_avx2()
        {
            return lanes;
        }
    }
    let (m, c) = (black_box(0.999_999_9f32), black_box(1e-7f32));
    let mut acc = black_box([1.0f32; ACC]);
    for _ in 0..STEPS {
        for a in &mut acc {
            *a = a.mul_add(m, c);
        }
    }
    black_box(acc);
    1
}

/// [`ACC`] chains of [`STEPS`] multiply-adds of one register width: `set1` and `fmadd` its
/// intrinsics.
#[cfg(target_arch = "x86_64")]
macro_rules! register_chains {
    ($set1:ident, $fmadd:ident) => {{
        use std::arch::x86_64::*;
        let (m, c) = ($set1(black_box(0.999_999_9)), $set1(black_box(1e-7)));
        let mut acc = black_box([$set1(1.0); ACC]);
        for _ in 0..STEPS {
            for a in &mut acc {
                *a = $fmadd(*a, m, c);
            }
        }
        black_box(acc);
    }};
}

#[cfg(target_arch = "x86_64")]
#[multiversion::multiversion(targets("x86_64+avx512f+avx2+fma"))]
fn chains_avx512() -> Option<usize> {
    multiversion::target::match_target! {
        "x86_64+avx512f" => {
            register_chains!(_mm512_set1_ps, _mm512_fmadd_ps);
            Some(16)
        },
        _ => None
    }
}

#[cfg(target_arch = "x86_64")]
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
fn chains_avx2() -> Option<usize> {
    multiversion::target::match_target! {
        "x86_64+avx2+fma" => {
            register_chains!(_mm256_set1_ps, _mm256_fmadd_ps);
            Some(8)
        },
        _ => None
    }
}
