//! f32 products `x · B` against a matrix `B` packed once in column panels, for the host policy
//! step ([`crate::llm::decoder::HostStep`]): the frozen weights are multiplied by every
//! training sequence, forward (`W`) and backward (`Wᵀ`), so they are packed once at load.
//!
//! Why not burn's gemm: it packs the weight on every call, and at the loop's ~80 rows that
//! packing is a large share of the product (the step ran at ~40 GFLOP/s through it). Here a
//! panel of 16 columns is `k` rows of 16 contiguous floats; a register tile of up to 6 input
//! rows by the panel's 16 columns (one 16-lane vector per row on AVX-512, two 8-lane ones on
//! AVX2: 12 of its 16 registers) runs down `k`, one multiply-add per input and step. Each output
//! is one chain of multiply-adds over `k` in order, whatever the tile, the chunking of `k`
//! (a chunk continues from the stored sums) or the thread count, so results do not depend on
//! the batch or the threads; they differ from another summation order by rounding only.

use rayon::prelude::*;

use crate::cpu::{CpuPath, for_chunks};

/// Columns per panel: the register tile's accumulators (12 vectors).
const NR: usize = 12;
/// Inputs per block: one 16-lane vector (AVX-512), two 8-lane ones elsewhere.
const LANES: usize = 16;
/// Rows of `B` per chunk: a chunk of a panel (12 KiB) and of a block of inputs (16 KiB) stay in
/// L1.
const KC: usize = 256;

/// A `[k, n]` matrix in column panels of [`NR`] (the last zero-padded): panel `p` is `k` rows
/// of `NR` floats.
#[derive(Debug, Clone)]
pub struct Packed {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl Packed {
    /// `B` given row-major `[k, n]`.
    pub fn new(b: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(b.len(), k * n, "packed: a [{k}, {n}] matrix");
        Self::from_fn(k, n, |kk, j| b[kk * n + j])
    }

    /// `B = Wᵀ` for `w` row-major `[n, k]`.
    pub fn transposed(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), k * n, "packed: a [{n}, {k}] matrix");
        Self::from_fn(k, n, |kk, j| w[j * k + kk])
    }

    fn from_fn(k: usize, n: usize, at: impl Fn(usize, usize) -> f32 + Sync) -> Self {
        let panels = n.div_ceil(NR);
        let mut data = vec![0.0f32; panels * k * NR];
        data.par_chunks_mut(k * NR)
            .enumerate()
            .for_each(|(p, panel)| {
                for (kk, row) in panel.chunks_exact_mut(NR).enumerate() {
                    for (c, v) in row.iter_mut().enumerate() {
                        let j = p * NR + c;
                        if j < n {
                            *v = at(kk, j);
                        }
                    }
                }
            });
        Self { k, n, data }
    }

    /// Columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// `x · B` for `x` row-major `[m, k]`: `[m, n]`, panels on rayon's threads, on the kernel
    /// path of this process ([`CpuPath::active`]).
    pub fn left_mul(&self, x: &[f32], m: usize) -> Vec<f32> {
        self.left_mul_on(x, m, CpuPath::active())
            .expect("the active path is supported")
    }

    /// [`Packed::left_mul`] on the kernels of `path`, or `None` where this CPU lacks it. Every
    /// path gives the same bits.
    pub fn left_mul_on(&self, x: &[f32], m: usize, path: CpuPath) -> Option<Vec<f32>> {
        if !path.is_supported() {
            return None;
        }
        let (k, n) = (self.k, self.n);
        assert_eq!(x.len(), m * k, "packed: {m} inputs of {k}");
        if m == 0 || n == 0 {
            return Some(vec![0.0; m * n]);
        }
        let parallel = rayon::current_num_threads() > 1 && m * k * n >= 1 << 18;
        // The inputs in blocks of `LANES`, transposed: block `g` is `k` rows of `LANES` floats.
        let blocks = m.div_ceil(LANES);
        let mut xt = vec![0.0f32; blocks * k * LANES];
        let transpose = |g: usize, block: &mut [f32]| {
            for (l, row) in x.chunks_exact(k).skip(g * LANES).take(LANES).enumerate() {
                for (kk, &v) in row.iter().enumerate() {
                    block[kk * LANES + l] = v;
                }
            }
        };
        let panel = |xt: &[f32], p: usize| {
            let mut out = vec![0.0f32; blocks * NR * LANES];
            panel(
                path,
                xt,
                k,
                &self.data[p * k * NR..(p + 1) * k * NR],
                &mut out,
            );
            out
        };
        // Each panel's `[blocks][NR][LANES]` back to row `i` of `[m, n]`.
        let gather = |done: &[Vec<f32>], i: usize, row: &mut [f32]| {
            let (g, l) = (i / LANES, i % LANES);
            for (p, out) in done.iter().enumerate() {
                let w = NR.min(n - p * NR);
                for (c, v) in row[p * NR..p * NR + w].iter_mut().enumerate() {
                    *v = out[(g * NR + c) * LANES + l];
                }
            }
        };
        let panels = n.div_ceil(NR);
        for_chunks(&mut xt, k * LANES, parallel, transpose);
        let done: Vec<Vec<f32>> = if parallel {
            (0..panels).into_par_iter().map(|p| panel(&xt, p)).collect()
        } else {
            (0..panels).map(|p| panel(&xt, p)).collect()
        };
        let mut y = vec![0.0f32; m * n];
        for_chunks(&mut y, n, parallel, |i, row| gather(&done, i, row));
        Some(y)
    }
}

/// The panel on the CPU path `path`: intrinsics for AVX-512 and AVX2 (both with FMA), plain
/// loops elsewhere. Every path computes the same chains of fused multiply-adds, so the same
/// bits.
fn panel(path: CpuPath, xt: &[f32], k: usize, b: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if path == CpuPath::Avx512 && panel_avx512(xt, k, b, out) {
            return;
        }
        if path != CpuPath::Portable && panel_avx2(xt, k, b, out) {
            return;
        }
    }
    let _ = path;
    by_chunks(xt, k, b, out, tile_portable);
}

/// One panel `b` (`[k, NR]`) against every block of inputs `xt` (`[blocks][k][LANES]`) into
/// `out` (`[blocks][NR][LANES]`), by chunks of `k` through `tile`.
#[inline(always)]
fn by_chunks(
    xt: &[f32],
    k: usize,
    b: &[f32],
    out: &mut [f32],
    tile: impl Fn(&[f32], &[f32], &mut [f32]),
) {
    by_chunks_paired(xt, k, b, out, &tile, |x0, x1, b, o0, o1| {
        tile(x0, b, o0);
        tile(x1, b, o1);
    });
}

/// [`by_chunks`] with two blocks of inputs at a time through `pair` (each weight read once
/// for both), the last odd block through `tile`.
#[inline(always)]
fn by_chunks_paired(
    xt: &[f32],
    k: usize,
    b: &[f32],
    out: &mut [f32],
    tile: impl Fn(&[f32], &[f32], &mut [f32]),
    pair: impl Fn(&[f32], &[f32], &[f32], &mut [f32], &mut [f32]),
) {
    let mut k0 = 0;
    while k0 < k {
        let k1 = (k0 + KC).min(k);
        let bk = &b[k0 * NR..k1 * NR];
        let mut blocks = xt
            .chunks_exact(k * LANES)
            .zip(out.chunks_exact_mut(NR * LANES));
        while let Some((x0, o0)) = blocks.next() {
            let x0 = &x0[k0 * LANES..k1 * LANES];
            match blocks.next() {
                Some((x1, o1)) => pair(x0, &x1[k0 * LANES..k1 * LANES], bk, o0, o1),
                None => tile(x0, bk, o0),
            }
        }
        k0 = k1;
    }
}

/// `out[c] += Σ_kk x[kk] · b[kk, c]` for the `LANES` inputs of one block (`x` `[len][LANES]`)
/// and the `NR` columns of one panel (`b` `[len][NR]`), in plain loops.
fn tile_portable(x: &[f32], b: &[f32], out: &mut [f32]) {
    for (c, o) in out.chunks_exact_mut(LANES).enumerate() {
        for (l, o) in o.iter_mut().enumerate() {
            let mut acc = *o;
            for (xk, bk) in x.chunks_exact(LANES).zip(b.chunks_exact(NR)) {
                acc = xk[l].mul_add(bk[c], acc);
            }
            *o = acc;
        }
    }
}

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// [`panel`] with 16-lane vectors, `false` where the CPU lacks AVX-512.
#[cfg(target_arch = "x86_64")]
#[multiversion::multiversion(targets("x86_64+avx512f+avx2+fma"))]
fn panel_avx512(xt: &[f32], k: usize, b: &[f32], out: &mut [f32]) -> bool {
    multiversion::target::match_target! {
        "x86_64+avx512f" => {
            // A closure: `#[target_feature]` functions are not `Fn`; closures inherit the
            // features.
            by_chunks_paired(
                xt,
                k,
                b,
                out,
                |x, b, o| tile_avx512(x, b, o),
                |x0, x1, b, o0, o1| tile_pair_avx512(x0, x1, b, o0, o1),
            );
            true
        },
        _ => {
            let _ = (xt, k, b, out);
            false
        }
    }
}

/// The tile in 16-lane registers: `NR` accumulators, one vector of inputs per step, each
/// column's weight broadcast.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn tile_avx512(x: &[f32], b: &[f32], out: &mut [f32]) {
    let load = |s: &[f32]| -> __m512 {
        let a: [f32; 16] = s[..16].try_into().expect("16 lanes");
        bytemuck::cast(a)
    };
    let mut acc: [__m512; NR] = std::array::from_fn(|c| load(&out[c * LANES..]));
    for (xk, bk) in x.chunks_exact(LANES).zip(b.chunks_exact(NR)) {
        let xv = load(xk);
        for c in 0..NR {
            acc[c] = _mm512_fmadd_ps(xv, _mm512_set1_ps(bk[c]), acc[c]);
        }
    }
    for (a, o) in acc.iter().zip(out.chunks_exact_mut(LANES)) {
        let v: [f32; 16] = bytemuck::cast(*a);
        o.copy_from_slice(&v);
    }
}

/// [`tile_avx512`] for two blocks of inputs at once: `2 NR` accumulators, each column's weight
/// broadcast once for both (14 loads per 24 multiply-adds instead of 13 per 12, which bound
/// the single tile on the load ports). Each output's chain is the single tile's.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn tile_pair_avx512(x0: &[f32], x1: &[f32], b: &[f32], out0: &mut [f32], out1: &mut [f32]) {
    let load = |s: &[f32]| -> __m512 {
        let a: [f32; 16] = s[..16].try_into().expect("16 lanes");
        bytemuck::cast(a)
    };
    let mut acc0: [__m512; NR] = std::array::from_fn(|c| load(&out0[c * LANES..]));
    let mut acc1: [__m512; NR] = std::array::from_fn(|c| load(&out1[c * LANES..]));
    let steps = x0.chunks_exact(LANES).zip(x1.chunks_exact(LANES));
    for ((xk0, xk1), bk) in steps.zip(b.chunks_exact(NR)) {
        let (xv0, xv1) = (load(xk0), load(xk1));
        for c in 0..NR {
            let w = _mm512_set1_ps(bk[c]);
            acc0[c] = _mm512_fmadd_ps(xv0, w, acc0[c]);
            acc1[c] = _mm512_fmadd_ps(xv1, w, acc1[c]);
        }
    }
    for (acc, out) in [(acc0, out0), (acc1, out1)] {
        for (a, o) in acc.iter().zip(out.chunks_exact_mut(LANES)) {
            let v: [f32; 16] = bytemuck::cast(*a);
            o.copy_from_slice(&v);
        }
    }
}

/// [`panel`] with 8-lane vectors, `false` where the CPU lacks AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
fn panel_avx2(xt: &[f32], k: usize, b: &[f32], out: &mut [f32]) -> bool {
    multiversion::target::match_target! {
        "x86_64+avx2+fma" => {
            by_chunks(xt, k, b, out, |x, b, o| tile_avx2(x, b, o));
            true
        },
        _ => {
            let _ = (xt, k, b, out);
            false
        }
    }
}

/// The tile in 8-lane registers, each half of the block's lanes in turn (`NR` accumulators of
/// AVX2's 16 registers).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn tile_avx2(x: &[f32], b: &[f32], out: &mut [f32]) {
    let load = |s: &[f32]| -> __m256 {
        let a: [f32; 8] = s[..8].try_into().expect("8 lanes");
        bytemuck::cast(a)
    };
    for half in [0, 8] {
        let mut acc: [__m256; NR] = std::array::from_fn(|c| load(&out[c * LANES + half..]));
        for (xk, bk) in x.chunks_exact(LANES).zip(b.chunks_exact(NR)) {
            let xv = load(&xk[half..]);
            for c in 0..NR {
                acc[c] = _mm256_fmadd_ps(xv, _mm256_set1_ps(bk[c]), acc[c]);
            }
        }
        for (c, a) in acc.iter().enumerate() {
            let v: [f32; 8] = bytemuck::cast(*a);
            out[c * LANES + half..c * LANES + half + 8].copy_from_slice(&v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn naive(x: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut y = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                y[i * n + j] = (0..k)
                    .map(|kk| f64::from(x[i * k + kk]) * f64::from(b[kk * n + j]))
                    .sum();
            }
        }
        y
    }

    /// Products against the naive sum on every kernel path this CPU has, for shapes that take
    /// several blocks of inputs (a partial last one), a partial last panel and more than one
    /// chunk of `k`; every path gives the same bits (one fused multiply-add chain per output in
    /// the same order); `Wᵀ` packed from `W` gives the bits of `Wᵀ` packed directly; and an
    /// input's outputs are the same bits alone as in its batch. Catches a kernel that drops a
    /// lane or a column, sums a chunk twice, or reassociates its sums on one path.
    #[test]
    fn products_match_the_naive_sum_on_every_path_and_batch() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut ran = Vec::new();
        for (m, k, n) in [(37, 300, 29), (16, 16, 12), (1, 600, 5), (6, 1, 40)] {
            let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let packed = Packed::new(&b, k, n);
            let y = packed.left_mul(&x, m);
            for (got, want) in y.iter().zip(naive(&x, &b, m, k, n)) {
                assert!(
                    (f64::from(*got) - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "[{m}, {k}] x [{k}, {n}]: {got} vs {want}"
                );
            }
            for path in CpuPath::ALL {
                match packed.left_mul_on(&x, m, path) {
                    Some(other) => {
                        assert_eq!(other, y, "{path}: other bits");
                        ran.push(path);
                    }
                    None => assert!(!path.is_supported(), "{path}: supported, but did not run"),
                }
            }
            let mut bt = vec![0.0f32; k * n];
            for kk in 0..k {
                for j in 0..n {
                    bt[j * k + kk] = b[kk * n + j];
                }
            }
            assert_eq!(Packed::transposed(&bt, n, k).left_mul(&x, m), y);
            for i in 0..m {
                let alone = packed.left_mul(&x[i * k..(i + 1) * k], 1);
                assert_eq!(alone, y[i * n..(i + 1) * n], "input {i} of {m}");
            }
        }
        ran.sort_by_key(|p| p.name());
        ran.dedup();
        eprintln!("panel paths checked: {ran:?}");
        assert_eq!(ran.len(), CpuPath::supported().len());
    }
}
