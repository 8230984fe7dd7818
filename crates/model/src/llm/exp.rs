//! `exp` of many `f32` at once, bit for bit what `f32::exp` gives on x86-64 Linux: glibc's
//! `expf` (2.27 on; its FMA build, the one glibc picks on a CPU with AVX2 and FMA), 16 lanes at
//! a time on AVX-512. The softmaxes over the vocabulary (sampling, the oracle's log-likelihoods,
//! the policy step's loss) and attention's call `exp` once per logit or score: one call into
//! the C library each, ~3% of the loop's time, where the same arithmetic in vectors is a
//! fraction of it.
//!
//! glibc's `expf` (from Arm's optimized-routines): in `f64`, `z = x · 32/ln 2` rounded to an
//! integer `k` by adding and subtracting `1.5 · 2^52`, `r = z - k` (the multiply fused, as the
//! FMA build computes it), `2^(k/32)` from a 32-entry table and `k`'s high bits, a cubic in `r`,
//! then one rounding to `f32`. Arguments with `|x| >= 88` (overflow, underflow, infinities,
//! NaN) take the scalar call, as do whole slices on other CPUs, so every result is the
//! library's. The test checks both bit for bit against `f32::exp` over random and edge
//! arguments.

use crate::cpu::CpuPath;

/// Each `x` replaced by `exp(x)`.
pub(crate) fn exp_in_place(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if CpuPath::active() == CpuPath::Avx512 && wide::exp_in_place(x) {
        return;
    }
    for v in x {
        *v = v.exp();
    }
}

#[cfg(target_arch = "x86_64")]
mod wide {
    use std::arch::x86_64::*;

    /// glibc's `__exp2f_data.tab`: `2^(i/32)`'s bits less `i << 47`.
    const TABLE: [u64; 32] = [
        0x3ff0000000000000,
        0x3fefd9b0d3158574,
        0x3fefb5586cf9890f,
        0x3fef9301d0125b51,
        0x3fef72b83c7d517b,
        0x3fef54873168b9aa,
        0x3fef387a6e756238,
        0x3fef1e9df51fdee1,
        0x3fef06fe0a31b715,
        0x3feef1a7373aa9cb,
        0x3feedea64c123422,
        0x3feece086061892d,
        0x3feebfdad5362a27,
        0x3feeb42b569d4f82,
        0x3feeab07dd485429,
        0x3feea47eb03a5585,
        0x3feea09e667f3bcd,
        0x3fee9f75e8ec5f74,
        0x3feea11473eb0187,
        0x3feea589994cce13,
        0x3feeace5422aa0db,
        0x3feeb737b0cdc5e5,
        0x3feec49182a3f090,
        0x3feed503b23e255d,
        0x3feee89f995ad3ad,
        0x3feeff76f2fb5e47,
        0x3fef199bdd85529c,
        0x3fef3720dcef9069,
        0x3fef5818dcfba487,
        0x3fef7c97337b9b5f,
        0x3fefa4afa2a490da,
        0x3fefd0765b6e4540,
    ];
    /// `32 / ln 2`.
    const INV_LN2_N: f64 = f64::from_bits(0x4047_1547_652b_82fe);
    /// `1.5 · 2^52`: adding it rounds to an integer, ties to even.
    const SHIFT: f64 = f64::from_bits(0x4338_0000_0000_0000);
    /// The cubic's coefficients (of `r^3`, `r^2`, `r`).
    const C: [f64; 3] = [
        f64::from_bits(0x3ebc_6af8_4b91_2394),
        f64::from_bits(0x3f2e_bfce_50fa_c4f3),
        f64::from_bits(0x3f96_2e42_ff0c_52d6),
    ];
    /// `|x| >= 88` (and infinities, NaN): bits 20-30 of `x` from 88's (`0x42b`) on.
    const SPECIAL_TOP: i32 = 0x42b;

    /// [`super::exp_in_place`] on AVX-512; `false` where the CPU lacks it (nothing written).
    #[multiversion::multiversion(targets("x86_64+avx512f+avx512dq+avx512vl+avx2+fma"))]
    pub(super) fn exp_in_place(x: &mut [f32]) -> bool {
        multiversion::target::match_target! {
            "x86_64+avx512f+avx512dq" => {
                let mut chunks = x.chunks_exact_mut(8);
                for c in &mut chunks {
                    let c: &mut [f32; 8] = c.try_into().expect("8 lanes");
                    *c = exp8(*c);
                }
                let rest = chunks.into_remainder();
                if !rest.is_empty() {
                    let mut lanes = [0.0f32; 8];
                    lanes[..rest.len()].copy_from_slice(rest);
                    let len = rest.len();
                    rest.copy_from_slice(&exp8(lanes)[..len]);
                }
                true
            },
            _ => {
                let _ = x;
                false
            }
        }
    }

    /// Eight `expf`s: the arithmetic of glibc's FMA build in `f64` lanes, and the library's own
    /// call for any lane with `|x| >= 88`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,avx512vl")]
    fn exp8(x: [f32; 8]) -> [f32; 8] {
        let xs: __m256 = bytemuck::cast(x);
        let xd = _mm512_cvtps_pd(xs);
        let shifted = _mm512_fmadd_pd(_mm512_set1_pd(INV_LN2_N), xd, _mm512_set1_pd(SHIFT));
        let ki = _mm512_castpd_si512(shifted);
        let kd = _mm512_sub_pd(shifted, _mm512_set1_pd(SHIFT));
        let r = _mm512_fmsub_pd(_mm512_set1_pd(INV_LN2_N), xd, kd);
        // T[ki % 32]: two 16-entry lookups (index bits 0-3), chosen by bit 4.
        let table = |i: usize| -> __m512d {
            let part: [u64; 8] = TABLE[8 * i..8 * i + 8].try_into().expect("8 entries");
            _mm512_castsi512_pd(bytemuck::cast(part))
        };
        let idx = _mm512_and_si512(ki, _mm512_set1_epi64(31));
        let low = _mm512_permutex2var_pd(table(0), idx, table(1));
        let high = _mm512_permutex2var_pd(table(2), idx, table(3));
        let upper = _mm512_test_epi64_mask(idx, _mm512_set1_epi64(16));
        let t = _mm512_castpd_si512(_mm512_mask_blend_pd(upper, low, high));
        let s = _mm512_castsi512_pd(_mm512_add_epi64(t, _mm512_slli_epi64::<47>(ki)));
        let z = _mm512_fmadd_pd(r, _mm512_set1_pd(C[0]), _mm512_set1_pd(C[1]));
        let r2 = _mm512_mul_pd(r, r);
        let y = _mm512_fmadd_pd(r, _mm512_set1_pd(C[2]), _mm512_set1_pd(1.0));
        let y = _mm512_mul_pd(_mm512_fmadd_pd(z, r2, y), s);
        let mut out: [f32; 8] = bytemuck::cast(_mm512_cvtpd_ps(y));
        let top = _mm256_and_si256(
            _mm256_srli_epi32::<20>(_mm256_castps_si256(xs)),
            _mm256_set1_epi32(0x7ff),
        );
        let special = _mm256_cmpgt_epi32_mask(top, _mm256_set1_epi32(SPECIAL_TOP - 1));
        if special != 0 {
            for (i, (o, v)) in out.iter_mut().zip(x).enumerate() {
                if special & (1 << i) != 0 {
                    *o = v.exp();
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Bit for bit `f32::exp` for every argument the vectors compute (all 2.2 billion `f32`
    /// with `|x| < 88`). A step a little off in `f64` moves only results within ~2^-29 of an
    /// `f32` rounding boundary: the multiply in `r` left unfused moves 2 of the 2.2 billion,
    /// which 300,000 random arguments did not find; every argument does.
    #[test]
    fn exp_is_the_libraries_for_every_argument_below_88() {
        use rayon::prelude::*;
        let end = 88.0f32.to_bits();
        let chunk = 1 << 16;
        let wrong: Vec<(f32, f32, f32)> = (0..end.div_ceil(chunk))
            .into_par_iter()
            .flat_map_iter(|c| {
                let bits = c * chunk..(c * chunk + chunk).min(end);
                let args: Vec<f32> = bits
                    .flat_map(|b| [f32::from_bits(b), -f32::from_bits(b)])
                    .collect();
                let mut got = args.clone();
                exp_in_place(&mut got);
                args.into_iter()
                    .zip(got)
                    .filter(|(a, g)| a.exp().to_bits() != g.to_bits())
                    .map(|(a, g)| (a, g, a.exp()))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "{} arguments off the library's exp, first (x, got, want): {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
        eprintln!("exp checked on the {} path", CpuPath::active());
    }

    /// Bit for bit `f32::exp` (NaN for NaN) past the vectors' range and at its edges: random
    /// arguments and bit patterns, glibc's special cases (overflow, underflow, infinities,
    /// NaN), on every slice length around the vector width. Catches a special case taken by
    /// the vectors, and a short slice's padding leaking into its results.
    #[test]
    fn exp_is_the_libraries_at_the_edges() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut args: Vec<f32> = (0..200_000)
            .map(|_| rng.random_range(-110.0f32..95.0))
            .collect();
        args.extend((0..50_000).map(|_| rng.random_range(-1.0f32..1.0)));
        args.extend((0..50_000).map(|_| f32::from_bits(rng.random())));
        args.extend([
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            88.0,
            -88.0,
            f32::from_bits(88.0f32.to_bits() - 1),
            f32::from_bits((-88.0f32).to_bits() - 1),
            88.72283,
            88.72284,
            -103.27893,
            -103.97208,
            -104.0,
            f32::MAX,
            f32::MIN,
        ]);
        let check = |got: &[f32], want: &[f32]| {
            for (g, w) in got.iter().zip(want) {
                assert!(
                    g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                    "exp: {g:e} ({:#x}) against the library's {w:e} ({:#x})",
                    g.to_bits(),
                    w.to_bits()
                );
            }
        };
        let want: Vec<f32> = args.iter().map(|v| v.exp()).collect();
        let mut got = args.clone();
        exp_in_place(&mut got);
        check(&got, &want);
        for len in 0..=17 {
            let mut part = args[1000..1000 + len].to_vec();
            exp_in_place(&mut part);
            check(&part, &want[1000..1000 + len]);
        }
    }
}
