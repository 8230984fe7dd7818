//! AVX-512 kernels that dequantise each block of a weight row once (`d * q + m`, one fused
//! multiply-add per 16 weights) and multiply it into up to eight inputs held in registers:
//! batched decoding reads the weights once per step instead of once per sequence. The
//! intrinsics are safe to call inside functions compiled for AVX-512, and `multiversion` runs
//! those only on a CPU that has it.
use std::arch::x86_64::*;
use std::cell::RefCell;

use super::{Row, Simd, dequantise_into};

/// Inputs `start..start + take` as 16-lane vectors in block-major order: for each block of 32
/// columns, each input's two vectors. A block's inputs are one contiguous run, so the kernel
/// reads them at constant offsets. `take` is one of [`row_dots`]' widths 8, 4, 2, 1, or for
/// [`panel`] at most [`TILE_INPUTS`].
pub(super) struct Group {
    start: usize,
    take: usize,
    v: Vec<[__m512; 2]>,
}

/// The inputs (`[n, cols]`) in kernel-width groups, on a CPU with AVX-512 (`panel`: for
/// [`panel`]).
#[allow(clippy::redundant_closure)]
#[multiversion::multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma"))]
pub(super) fn groups(x: &[f32], n: usize, cols: usize, panel: bool) -> Option<Vec<Group>> {
    multiversion::target::match_target! {
        "x86_64+avx512f+avx512bw" => {
            let mut out = Vec::new();
            let mut start = 0;
            while start < n {
                let take = match n - start {
                    left if panel => left.min(TILE_INPUTS),
                    8.. => 8,
                    4..=7 => 4,
                    2..=3 => 2,
                    _ => 1,
                };
                let mut v = Vec::with_capacity(cols / 32 * take);
                for b in 0..cols / 32 {
                    for i in start..start + take {
                        let c = &x[i * cols + 32 * b..i * cols + 32 * b + 32];
                        // A closure: `#[target_feature]` functions are not `Fn`; closures
                        // inherit the features.
                        let load = |c: &[f32]| load(c);
                        v.push([load(&c[..16]), load(&c[16..])]);
                    }
                }
                out.push(Group { start, take, v });
                start += take;
            }
            Some(out)
        },
        _ => {
            let _ = (x, n, cols, panel);
            None
        }
    }
}

#[target_feature(enable = "avx512f")]
fn load(c: &[f32]) -> __m512 {
    _mm512_setr_ps(
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12], c[13],
        c[14], c[15],
    )
}

/// `acc[i] = Σ_b (d_b q_b + m_b) · x_i,b` for every input `i`, a group at a time.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma"))]
pub(super) fn row_dots(w: &Row<'_>, groups: &[Group], acc: &mut [f32]) {
    multiversion::target::match_target! {
        "x86_64+avx512f+avx512bw" => {
            for g in groups {
                let out = &mut acc[g.start..g.start + g.take];
                // Independent sums: 16 at 4 and 8 inputs (2 blocks x lo/hi at 4; lo/hi at
                // 8), 8 at two, 4 at one, so no multiply-add waits on the previous one.
                match (g.take, w.bits) {
                    (8, 4) => dots::<8, 1, 4>(w, &g.v, out),
                    (4, 4) => dots::<4, 2, 4>(w, &g.v, out),
                    (2, 4) => dots::<2, 2, 4>(w, &g.v, out),
                    (_, 4) => dots::<1, 2, 4>(w, &g.v, out),
                    (8, _) => dots::<8, 1, 8>(w, &g.v, out),
                    (4, _) => dots::<4, 2, 8>(w, &g.v, out),
                    (2, _) => dots::<2, 2, 8>(w, &g.v, out),
                    _ => dots::<1, 2, 8>(w, &g.v, out),
                }
            }
        },
        _ => {
            let _ = (w, groups, acc);
            unreachable!("input groups exist only on AVX-512")
        }
    }
}

/// The products of `rows` with every input, input `i`'s with `rows[r]` into `out[i][at + r]`:
/// the rows' blocks are dequantised once into `buf` (block-major per [`TILE_ROWS`] rows), then
/// multiplied into each group of inputs by a register tile of up to [`TILE_ROWS`] rows x
/// [`TILE_INPUTS`] inputs, which loads a weight vector once per group and an input vector once
/// per tile.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma"))]
pub(super) fn panel(
    rows: &[Row<'_>],
    groups: &[Group],
    buf: &mut Vec<[__m512; 2]>,
    out: &mut [&mut [f32]],
    at: usize,
) {
    multiversion::target::match_target! {
        "x86_64+avx512f+avx512bw" => {
            let Some(first) = rows.first() else { return };
            let bpr = first.d.len();
            // Grown to the widest panel the thread has run (zeros written then only), then
            // written by index: appending cost a store and a reload of the length per block.
            if buf.len() < rows.len() * bpr {
                buf.resize(rows.len() * bpr, [_mm512_setzero_ps(); 2]);
            }
            for (ti, tile) in rows.chunks(TILE_ROWS).enumerate() {
                let out = &mut buf[ti * TILE_ROWS * bpr..(ti * TILE_ROWS + tile.len()) * bpr];
                if first.bits == 4 {
                    dequantise::<4>(tile, out);
                } else {
                    dequantise::<8>(tile, out);
                }
            }
            // Each group of inputs stays in L1 while every tile of rows passes it.
            for g in groups {
                for (ti, tile) in rows.chunks(TILE_ROWS).enumerate() {
                    let w = &buf[ti * TILE_ROWS * bpr..(ti * TILE_ROWS + tile.len()) * bpr];
                    let at = (g.start, at + ti * TILE_ROWS);
                    match tile.len() {
                        5 => tile_of::<5>(g.take, w, &g.v, out, at),
                        4 => tile_of::<4>(g.take, w, &g.v, out, at),
                        3 => tile_of::<3>(g.take, w, &g.v, out, at),
                        2 => tile_of::<2>(g.take, w, &g.v, out, at),
                        _ => tile_of::<1>(g.take, w, &g.v, out, at),
                    }
                }
            }
        },
        _ => {
            let _ = (rows, groups, buf, out, at);
            unreachable!("input groups exist only on AVX-512")
        }
    }
}

/// Rows per register tile of [`panel`].
const TILE_ROWS: usize = 5;
/// Inputs per register tile of [`panel`]: 5 x 5 sums, 5 weight vectors and an input vector
/// take 31 of the 32 vector registers, 10 loads per 25 multiply-adds. On an Intel Xeon this
/// ran at 176 GFLOP/s from L1 against 166 for 3 x 8 (and 164 against 139 with the inputs in
/// L2), and the loop's 25 inputs fill five tiles with none left over.
const TILE_INPUTS: usize = 5;

/// [`tile_dots`] for `R` rows and a group of `take` inputs.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn tile_of<const R: usize>(
    take: usize,
    w: &[[__m512; 2]],
    x: &[[__m512; 2]],
    out: &mut [&mut [f32]],
    at: (usize, usize),
) {
    match take {
        5 => tile_dots::<R, 5>(w, x, out, at),
        4 => tile_dots::<R, 4>(w, x, out, at),
        3 => tile_dots::<R, 3>(w, x, out, at),
        2 => tile_dots::<R, 2>(w, x, out, at),
        _ => tile_dots::<R, 1>(w, x, out, at),
    }
}

/// `tile`'s rows dequantised into `out` (`tile.len()` x their blocks), block-major: for each
/// block, each row's two vectors.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn dequantise<const BITS: u8>(tile: &[Row<'_>], out: &mut [[__m512; 2]]) {
    dequantise_into(tile, out, |q, d, m| {
        let (lo, hi) = block::<BITS>(q, d, m);
        [lo, hi]
    });
}

/// `R` dequantised rows (`w`, block-major) against `N` inputs (`x`, block-major):
/// `out[start + i][row + r] = Σ w_r · x_i`, one sum per (row, input) in a register.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn tile_dots<const R: usize, const N: usize>(
    w: &[[__m512; 2]],
    x: &[[__m512; 2]],
    out: &mut [&mut [f32]],
    (start, row): (usize, usize),
) {
    let mut acc = [[_mm512_setzero_ps(); N]; R];
    for (wb, xb) in w.chunks_exact(R).zip(x.chunks_exact(N)) {
        let wb: &[[__m512; 2]; R] = wb.try_into().expect("R rows");
        let xb: &[[__m512; 2]; N] = xb.try_into().expect("N inputs");
        for h in 0..2 {
            for i in 0..N {
                for r in 0..R {
                    acc[r][i] = _mm512_fmadd_ps(wb[r][h], xb[i][h], acc[r][i]);
                }
            }
        }
    }
    // Every sum reduced in the order of [`sums`] (eight at once, the rest one by one with the
    // same additions), so that a result depends neither on the group its input fell in nor on
    // the sums reduced beside it.
    // Indexed by constants once the loops unroll: an iterator here kept the sums in memory.
    let mut flat = [_mm512_setzero_ps(); TILE_ROWS * TILE_INPUTS];
    for r in 0..R {
        for i in 0..N {
            flat[r * N + i] = acc[r][i];
        }
    }
    let mut total = [0.0f32; TILE_ROWS * TILE_INPUTS];
    let mut eight = flat[..R * N].chunks_exact(8);
    let mut sums8 = total[..R * N].chunks_exact_mut(8);
    for (v, t) in (&mut eight).zip(&mut sums8) {
        sums(v, t);
    }
    for (&v, t) in eight.remainder().iter().zip(sums8.into_remainder()) {
        *t = sum_one(v);
    }
    for (i, piece) in out[start..start + N].iter_mut().enumerate() {
        for (r, v) in piece[row..row + R].iter_mut().enumerate() {
            *v = total[r * N + i];
        }
    }
}

/// The sum of `v`'s lanes in the order [`sums`] adds each input's: lanes `j + 8` onto `j`,
/// then `j + 4` onto `j` (`S_j`, `j < 4`), then `(S_0 + S_1) + (S_2 + S_3)`.
#[inline]
#[target_feature(enable = "avx512f")]
fn sum_one(v: __m512) -> f32 {
    let t = _mm512_add_ps(v, _mm512_shuffle_f32x4::<0b11_10_11_10>(v, v));
    let s = _mm512_add_ps(t, _mm512_shuffle_f32x4::<0b01_01_01_01>(t, t));
    let w = _mm512_add_ps(s, _mm512_permute_ps::<0b10_11_00_01>(s));
    let z = _mm512_add_ps(w, _mm512_permute_ps::<0b01_00_11_10>(w));
    _mm512_cvtss_f32(z)
}

/// `out[i] = Σ lanes of v[i]`: eight vectors at once by halving and interleaving them (~24
/// shuffles and adds instead of ~9 per vector), fewer one by one.
#[inline]
#[target_feature(enable = "avx512f")]
fn sums(v: &[__m512], out: &mut [f32]) {
    let Ok(v) = <&[__m512; 8]>::try_from(v) else {
        for (o, &x) in out.iter_mut().zip(v) {
            *o = _mm512_reduce_add_ps(x);
        }
        return;
    };
    // Pairs: 128-bit quarters [a0 a1 b0 b1] + [a2 a3 b2 b3]: a's 8 partial sums, then b's.
    let pair = |a, b| {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
        )
    };
    // Quads: quarter k holds input k's 4 partial sums.
    let quad = |a, b| {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b),
            _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b),
        )
    };
    let lo = quad(pair(v[0], v[1]), pair(v[2], v[3]));
    let hi = quad(pair(v[4], v[5]), pair(v[6], v[7]));
    // In each quarter k: [k, k, 4 + k, 4 + k] as two partial sums each, then one each.
    let w = _mm512_add_ps(
        _mm512_shuffle_ps::<0b10_00_10_00>(lo, hi),
        _mm512_shuffle_ps::<0b11_01_11_01>(lo, hi),
    );
    let z = _mm512_add_ps(w, _mm512_permute_ps::<0b10_11_00_01>(w));
    let order = _mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 0, 0, 0, 0, 0, 0, 0, 0);
    let total: [f32; 8] = bytemuck::cast(_mm512_castps512_ps256(_mm512_permutexvar_ps(order, z)));
    out.copy_from_slice(&total);
}

/// One block (`q`: its 16 or 32 bytes) dequantised: weights `0..16` and `16..32`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn block<const BITS: u8>(q: &[u8], d: f32, m: f32) -> (__m512, __m512) {
    let scale = _mm512_set1_ps(d);
    let offset = _mm512_set1_ps(m);
    let bytes = |at: usize| -> __m128i {
        let raw: [u8; 16] = q[at..at + 16].try_into().expect("16 bytes");
        bytemuck::cast(raw)
    };
    let (lo, hi) = if BITS == 4 {
        let wide = _mm512_cvtepu8_epi32(bytes(0));
        (
            _mm512_and_si512(wide, _mm512_set1_epi32(0x0F)),
            _mm512_srli_epi32::<4>(wide),
        )
    } else {
        (
            _mm512_cvtepi8_epi32(bytes(0)),
            _mm512_cvtepi8_epi32(bytes(16)),
        )
    };
    (
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo), scale, offset),
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), scale, offset),
    )
}

/// `N` inputs of `BITS`-bit blocks; `U` blocks per step, each into its own pair of sums
/// (the loops over `u` and `i` are unrolled, so every sum has a fixed register). The blocks
/// are walked with iterators over exact chunks, so no index is bounds-checked per block.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn dots<const N: usize, const U: usize, const BITS: u8>(
    w: &Row<'_>,
    xs: &[[__m512; 2]],
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
    let offset = |m: f32| if BITS == 4 { m } else { 0.0 };
    let mut acc = [[[_mm512_setzero_ps(); 2]; U]; N];
    let step = |acc: &mut [[[__m512; 2]; U]; N], u: usize, q: &[u8], d, m, x: &[[__m512; 2]]| {
        let (lo, hi) = block::<BITS>(q, d, offset(m));
        for (a, x) in acc.iter_mut().zip(x) {
            a[u][0] = _mm512_fmadd_ps(lo, x[0], a[u][0]);
            a[u][1] = _mm512_fmadd_ps(hi, x[1], a[u][1]);
        }
    };
    let (qc, dc, mc, xc) = (
        w.q.chunks_exact(qb * U),
        w.d.chunks_exact(U),
        m.chunks_exact(U),
        xs.chunks_exact(N * U),
    );
    let (qr, dr, mr, xr) = (
        qc.remainder(),
        dc.remainder(),
        mc.remainder(),
        xc.remainder(),
    );
    for (((q, d), m), x) in qc.zip(dc).zip(mc).zip(xc) {
        for u in 0..U {
            step(&mut acc, u, &q[u * qb..], d[u], m[u], &x[u * N..u * N + N]);
        }
    }
    for (((q, &d), &m), x) in qr.chunks_exact(qb).zip(dr).zip(mr).zip(xr.chunks_exact(N)) {
        step(&mut acc, 0, q, d, m, x);
    }
    let totals = acc.map(|a| {
        let mut total = _mm512_add_ps(a[0][0], a[0][1]);
        for pair in &a[1..] {
            total = _mm512_add_ps(total, _mm512_add_ps(pair[0], pair[1]));
        }
        total
    });
    sums(&totals, out);
}

/// These kernels, for [`super::QMatrix`]'s dispatch.
pub(super) struct Avx512;

impl Simd for Avx512 {
    type Group = Group;
    const PANEL_ROWS: usize = 15;
    const TOUCH_NEXT_ROW: bool = false;

    fn groups(x: &[f32], n: usize, cols: usize, panel: bool) -> Option<Vec<Group>> {
        groups(x, n, cols, panel)
    }

    fn row_dots(w: &Row<'_>, groups: &[Group], acc: &mut [f32]) {
        row_dots(w, groups, acc);
    }

    fn panel(rows: &[Row<'_>], groups: &[Group], out: &mut [&mut [f32]], at: usize) {
        TILES.with_borrow_mut(|buf| panel(rows, groups, buf, out, at));
    }
}

thread_local! {
    /// Each thread's dequantised tiles for [`panel`], kept between products: sized by the
    /// widest panel the thread has run, and not allocated, zeroed and faulted in per product.
    static TILES: RefCell<Vec<[__m512; 2]>> = const { RefCell::new(Vec::new()) };
}
