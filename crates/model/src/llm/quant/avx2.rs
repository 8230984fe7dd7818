//! AVX2+FMA kernels, of the AVX-512 kernels' design ([`super::avx512`]) in 8-lane vectors and
//! 16 registers: each block of a weight row is dequantised once (`d * q + m`, one fused
//! multiply-add per 8 weights) into four vectors and multiplied into up to eight inputs; from
//! [`super::PANEL_MIN_INPUTS`] inputs on, a tile of rows is dequantised once and multiplied into
//! every input by register tiles of 3 rows x 4 inputs (12 sums, 3 weight vectors and an input
//! vector: the 16 registers). The intrinsics are safe to call inside functions compiled for
//! AVX2 and FMA, and `multiversion` runs those only on a CPU that has them.

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::{Row, Simd, dequantise_into};

/// Inputs `start..start + take` (`take` one of 8, 4, 2, 1) as 8-lane vectors in block-major
/// order: for each block of 32 columns, each input's four vectors.
pub(super) struct Group {
    start: usize,
    take: usize,
    v: Vec<[__m256; 4]>,
}

/// The inputs (`[n, cols]`) in groups of at most `widest` (8 or 4), on a CPU with AVX2 and FMA.
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
pub(super) fn groups(x: &[f32], n: usize, cols: usize, widest: usize) -> Option<Vec<Group>> {
    multiversion::target::match_target! {
        "x86_64+avx2+fma" => {
            let mut out = Vec::new();
            let mut start = 0;
            while start < n {
                let take = [8, 4, 2, 1]
                    .into_iter()
                    .find(|&t| t <= widest && t <= n - start)
                    .unwrap_or(1);
                let mut v = Vec::with_capacity(cols / 32 * take);
                for b in 0..cols / 32 {
                    for i in start..start + take {
                        let c = &x[i * cols + 32 * b..i * cols + 32 * b + 32];
                        v.push([load(&c[..8]), load(&c[8..16]), load(&c[16..24]), load(&c[24..])]);
                    }
                }
                out.push(Group { start, take, v });
                start += take;
            }
            Some(out)
        },
        _ => {
            let _ = (x, n, cols, widest);
            None
        }
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn load(c: &[f32]) -> __m256 {
    let lanes: [f32; 8] = c.try_into().expect("8 lanes");
    bytemuck::cast(lanes)
}

/// `acc[i] = Σ_b (d_b q_b + m_b) · x_i,b` for every input `i`, a group at a time.
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
pub(super) fn row_dots(w: &Row<'_>, groups: &[Group], acc: &mut [f32]) {
    multiversion::target::match_target! {
        "x86_64+avx2+fma" => {
            for g in groups {
                let out = &mut acc[g.start..g.start + g.take];
                // Independent sums: one per input at 8 inputs, two at 4, four at 2 and 1 (the
                // four vectors of a block each into its own), so that no multiply-add waits on
                // the previous one; with the block's four weight vectors, 15 registers.
                match (g.take, w.bits) {
                    (8, 4) => dots::<8, 1, 4>(w, &g.v, out),
                    (4, 4) => dots::<4, 2, 4>(w, &g.v, out),
                    (2, 4) => dots::<2, 4, 4>(w, &g.v, out),
                    (_, 4) => dots::<1, 4, 4>(w, &g.v, out),
                    (8, _) => dots::<8, 1, 8>(w, &g.v, out),
                    (4, _) => dots::<4, 2, 8>(w, &g.v, out),
                    (2, _) => dots::<2, 4, 8>(w, &g.v, out),
                    _ => dots::<1, 4, 8>(w, &g.v, out),
                }
            }
        },
        _ => {
            let _ = (w, groups, acc);
            unreachable!("input groups exist only on AVX2")
        }
    }
}

/// The products of `rows` with every input, input `i`'s with `rows[r]` into `out[i][at + r]`:
/// the rows' blocks are dequantised once into `buf` (block-major per [`TILE_ROWS`] rows), then
/// multiplied into each group of (at most 4) inputs by a register tile of up to `TILE_ROWS`
/// rows x 4 inputs.
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
pub(super) fn panel(
    rows: &[Row<'_>],
    groups: &[Group],
    buf: &mut Vec<[__m256; 4]>,
    out: &mut [&mut [f32]],
    at: usize,
) {
    multiversion::target::match_target! {
        "x86_64+avx2+fma" => {
            let Some(first) = rows.first() else { return };
            let bpr = first.d.len();
            // Grown to the widest panel the thread has run (zeros written then only), then
            // written by index: appending cost a store and a reload of the length per block.
            if buf.len() < rows.len() * bpr {
                buf.resize(rows.len() * bpr, [_mm256_setzero_ps(); 4]);
            }
            for (ti, tile) in rows.chunks(TILE_ROWS).enumerate() {
                let out = &mut buf[ti * TILE_ROWS * bpr..(ti * TILE_ROWS + tile.len()) * bpr];
                if first.bits == 4 {
                    dequantise::<4>(tile, out);
                } else {
                    dequantise::<8>(tile, out);
                }
            }
            for g in groups {
                for (ti, tile) in rows.chunks(TILE_ROWS).enumerate() {
                    let w = &buf[ti * TILE_ROWS * bpr..(ti * TILE_ROWS + tile.len()) * bpr];
                    let at = (g.start, at + ti * TILE_ROWS);
                    match (tile.len(), g.take) {
                        (3, 4) => tile_dots::<3, 4>(w, &g.v, out, at),
                        (3, 2) => tile_dots::<3, 2>(w, &g.v, out, at),
                        (3, _) => tile_dots::<3, 1>(w, &g.v, out, at),
                        (2, 4) => tile_dots::<2, 4>(w, &g.v, out, at),
                        (2, 2) => tile_dots::<2, 2>(w, &g.v, out, at),
                        (2, _) => tile_dots::<2, 1>(w, &g.v, out, at),
                        (_, 4) => tile_dots::<1, 4>(w, &g.v, out, at),
                        (_, 2) => tile_dots::<1, 2>(w, &g.v, out, at),
                        _ => tile_dots::<1, 1>(w, &g.v, out, at),
                    }
                }
            }
        },
        _ => {
            let _ = (rows, groups, buf, out, at);
            unreachable!("input groups exist only on AVX2")
        }
    }
}

/// Rows per register tile of [`panel`].
const TILE_ROWS: usize = 3;

/// `tile`'s rows dequantised into `out` (`tile.len()` x their blocks), block-major: for each
/// block, each row's four vectors.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn dequantise<const BITS: u8>(tile: &[Row<'_>], out: &mut [[__m256; 4]]) {
    dequantise_into(tile, out, |q, d, m| block::<BITS>(q, d, m));
}

/// `R` dequantised rows (`w`, block-major) against `N` inputs (`x`, block-major):
/// `out[start + i][row + r] = Σ w_r · x_i`, one sum per (row, input) in a register.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn tile_dots<const R: usize, const N: usize>(
    w: &[[__m256; 4]],
    x: &[[__m256; 4]],
    out: &mut [&mut [f32]],
    (start, row): (usize, usize),
) {
    let mut acc = [[_mm256_setzero_ps(); N]; R];
    for (wb, xb) in w.chunks_exact(R).zip(x.chunks_exact(N)) {
        let wb: &[[__m256; 4]; R] = wb.try_into().expect("R rows");
        let xb: &[[__m256; 4]; N] = xb.try_into().expect("N inputs");
        for h in 0..4 {
            for i in 0..N {
                for r in 0..R {
                    acc[r][i] = _mm256_fmadd_ps(wb[r][h], xb[i][h], acc[r][i]);
                }
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let mut total = [0.0f32; N];
        sums(a, &mut total);
        for (piece, &v) in out[start..start + N].iter_mut().zip(&total) {
            piece[row + r] = v;
        }
    }
}

/// `out[i] = Σ lanes of v[i]` for up to eight vectors: three rounds of pairwise horizontal adds
/// and one add of the two halves (absent vectors count as zeros).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn sums(v: &[__m256], out: &mut [f32]) {
    let mut p = [_mm256_setzero_ps(); 8];
    p[..v.len()].copy_from_slice(v);
    // [v0 01, v0 23, v1 01, v1 23 | v0 45, v0 67, v1 45, v1 67], and so on.
    let t = [
        _mm256_hadd_ps(p[0], p[1]),
        _mm256_hadd_ps(p[2], p[3]),
        _mm256_hadd_ps(p[4], p[5]),
        _mm256_hadd_ps(p[6], p[7]),
    ];
    // [v0 0-3, v1 0-3, v2 0-3, v3 0-3 | v0 4-7, v1 4-7, v2 4-7, v3 4-7], and v4-v7.
    let (lo4, hi4) = (_mm256_hadd_ps(t[0], t[1]), _mm256_hadd_ps(t[2], t[3]));
    let total = _mm256_add_ps(
        _mm256_permute2f128_ps::<0x20>(lo4, hi4),
        _mm256_permute2f128_ps::<0x31>(lo4, hi4),
    );
    let total: [f32; 8] = bytemuck::cast(total);
    out.copy_from_slice(&total[..out.len()]);
}

/// One block (`q`: its 16 or 32 bytes) dequantised: weights `0..8`, `8..16`, `16..24`, `24..32`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn block<const BITS: u8>(q: &[u8], d: f32, m: f32) -> [__m256; 4] {
    let scale = _mm256_set1_ps(d);
    let offset = _mm256_set1_ps(m);
    let bytes = |at: usize| -> __m128i {
        let raw: [u8; 16] = q[at..at + 16].try_into().expect("16 bytes");
        bytemuck::cast(raw)
    };
    let ints = if BITS == 4 {
        // Byte j holds weight j in its low nibble and weight j + 16 in its high one.
        let raw = bytes(0);
        let (a, b) = (
            _mm256_cvtepu8_epi32(raw),
            _mm256_cvtepu8_epi32(_mm_srli_si128::<8>(raw)),
        );
        let low = _mm256_set1_epi32(0x0F);
        [
            _mm256_and_si256(a, low),
            _mm256_and_si256(b, low),
            _mm256_srli_epi32::<4>(a),
            _mm256_srli_epi32::<4>(b),
        ]
    } else {
        let (r0, r1) = (bytes(0), bytes(16));
        [
            _mm256_cvtepi8_epi32(r0),
            _mm256_cvtepi8_epi32(_mm_srli_si128::<8>(r0)),
            _mm256_cvtepi8_epi32(r1),
            _mm256_cvtepi8_epi32(_mm_srli_si128::<8>(r1)),
        ]
    };
    ints.map(|i| _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), scale, offset))
}

/// `N` inputs of `BITS`-bit blocks, `A` sums per input (a block's vector `k` into sum `k % A`).
/// The blocks are walked with iterators over exact chunks, so no index is bounds-checked per
/// block.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn dots<const N: usize, const A: usize, const BITS: u8>(
    w: &Row<'_>,
    xs: &[[__m256; 4]],
    out: &mut [f32],
) {
    let qb = usize::from(BITS) * 4;
    // 4-bit blocks always carry offsets (Q4_0's is -8 d); 8-bit ones have none (the scales
    // stand in for them and are ignored).
    let m = if BITS == 4 {
        w.m.expect("4-bit offsets")
    } else {
        w.d
    };
    let mut acc = [[_mm256_setzero_ps(); A]; N];
    for (((q, &d), &m), x) in w.q.chunks_exact(qb).zip(w.d).zip(m).zip(xs.chunks_exact(N)) {
        let v = block::<BITS>(q, d, if BITS == 4 { m } else { 0.0 });
        for (a, xi) in acc.iter_mut().zip(x) {
            for k in 0..4 {
                a[k % A] = _mm256_fmadd_ps(v[k], xi[k], a[k % A]);
            }
        }
    }
    let totals = acc.map(|a| {
        let mut total = a[0];
        for &s in &a[1..] {
            total = _mm256_add_ps(total, s);
        }
        total
    });
    sums(&totals, out);
}

/// These kernels, for [`super::QMatrix`]'s dispatch.
pub(super) struct Avx2;

impl Simd for Avx2 {
    type Group = Group;
    const PANEL_ROWS: usize = 24;
    const TOUCH_NEXT_ROW: bool = true;

    fn groups(x: &[f32], n: usize, cols: usize, panel: bool) -> Option<Vec<Group>> {
        groups(x, n, cols, if panel { 4 } else { 8 })
    }

    fn row_dots(w: &Row<'_>, groups: &[Group], acc: &mut [f32]) {
        row_dots(w, groups, acc);
    }

    fn panel(rows: &[Row<'_>], groups: &[Group], out: &mut [&mut [f32]], at: usize) {
        TILES.with_borrow_mut(|buf| panel(rows, groups, buf, out, at));
    }
}

thread_local! {
    /// Each thread's dequantised tiles for [`panel`], kept between products (as AVX-512's).
    static TILES: RefCell<Vec<[__m256; 4]>> = const { RefCell::new(Vec::new()) };
}
