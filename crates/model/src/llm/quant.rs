//! Matrix products straight from GGUF's quantised blocks (Q4_0, Q4_1, Q8_0), for CPU inference.
//!
//! Decoding one token reads every weight once, so on a CPU it is bound by memory bandwidth:
//! f32 weights move 4 bytes per weight, Q4_1 blocks 0.625. burn's CPU backend dequantises a
//! quantised tensor before a matmul, so this module multiplies from the blocks themselves. Each
//! weight is `d * q + m` exactly as [`crate::gguf::dequantize`] computes it; only the summation
//! order differs from the f32 path (the golden tests hold on both). Output rows are split across
//! rayon threads and every dot product is summed in a fixed order, so results do not depend on
//! the thread count.

use rayon::prelude::*;

use crate::gguf::{GgmlType, Gguf, GgufError, permuted_qk_row};

/// A `[rows, cols]` matrix (Hugging Face's `[out, in]`) from GGUF blocks of 32 weights, kept in
/// the file's own packing: 4-bit blocks as 16 bytes of two nibbles (weights `j` and `j + 16`),
/// 8-bit blocks as 32 signed bytes, plus each block's scale `d` and offset `m` in `f32`
/// (weight = `d * q + m`; Q4_0's `d * (q - 8)` becomes `m = -8 d`). Decoding reads 0.75 bytes per
/// 4-bit weight: a fifth of the f32 traffic.
#[derive(Debug, Clone)]
pub struct QMatrix {
    rows: usize,
    cols: usize,
    /// 4 or 8.
    bits: u8,
    q: Vec<u8>,
    d: Vec<f32>,
    m: Option<Vec<f32>>,
}

fn h(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

impl QMatrix {
    /// The tensor `name` if it is a matrix in a block type this module multiplies from; rows
    /// un-permuted for `heads` (Q/K projections) as [`crate::gguf::unpermute_qk`] does.
    pub fn from_gguf(
        file: &Gguf,
        name: &str,
        heads: Option<usize>,
    ) -> Result<Option<Self>, GgufError> {
        let info = file.tensor(name)?;
        if info.dims.len() != 2 {
            return Ok(None);
        }
        let shape = info.shape();
        let Some(mut out) = Self::from_blocks(info.ty, file.tensor_data(name)?, shape[0], shape[1])
        else {
            return Ok(None);
        };
        if let Some(n_head) = heads {
            out.unpermute(n_head);
        }
        Ok(Some(out))
    }

    /// A `[rows, cols]` matrix from its raw GGUF blocks, if `ty` is Q4_0, Q4_1 or Q8_0 and the
    /// rows are whole blocks.
    pub fn from_blocks(ty: GgmlType, raw: &[u8], rows: usize, cols: usize) -> Option<Self> {
        if !matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0)
            || !cols.is_multiple_of(32)
        {
            return None;
        }
        let (_, block_bytes) = ty.block()?;
        let blocks = rows * cols / 32;
        if raw.len() != blocks * block_bytes {
            return None;
        }
        let bits = if ty == GgmlType::Q8_0 { 8 } else { 4 };
        let mut q = Vec::with_capacity(blocks * usize::from(bits) * 4);
        let mut d = Vec::with_capacity(blocks);
        let mut m = (ty != GgmlType::Q8_0).then(|| Vec::with_capacity(blocks));
        for blk in raw.chunks_exact(block_bytes) {
            let scale = h(&blk[..2]);
            d.push(scale);
            match ty {
                GgmlType::Q8_0 => q.extend_from_slice(&blk[2..]),
                GgmlType::Q4_1 => {
                    m.as_mut()?.push(h(&blk[2..4]));
                    q.extend_from_slice(&blk[4..]);
                }
                _ => {
                    m.as_mut()?.push(-8.0 * scale);
                    q.extend_from_slice(&blk[2..]);
                }
            }
        }
        Some(Self {
            rows,
            cols,
            bits,
            q,
            d,
            m,
        })
    }

    /// Bytes of `q` per row.
    fn row_bytes(&self) -> usize {
        self.cols * usize::from(self.bits) / 8
    }

    /// Restores Hugging Face's row order of a Q/K matrix (see [`crate::gguf::permuted_qk_row`]).
    fn unpermute(&mut self, n_head: usize) {
        let (rb, bpr) = (self.row_bytes(), self.cols / 32);
        let (q, d, m) = (self.q.clone(), self.d.clone(), self.m.clone());
        for hf in 0..self.rows {
            let gg = permuted_qk_row(hf, self.rows, n_head);
            self.q[hf * rb..(hf + 1) * rb].copy_from_slice(&q[gg * rb..(gg + 1) * rb]);
            self.d[hf * bpr..(hf + 1) * bpr].copy_from_slice(&d[gg * bpr..(gg + 1) * bpr]);
            if let (Some(dst), Some(src)) = (self.m.as_mut(), m.as_ref()) {
                dst[hf * bpr..(hf + 1) * bpr].copy_from_slice(&src[gg * bpr..(gg + 1) * bpr]);
            }
        }
    }

    /// One matrix of `parts`' rows stacked (same width and block type): one product instead of
    /// several over the same input (Q/K/V, gate/up).
    pub fn stack(parts: Vec<QMatrix>) -> Option<Self> {
        let first = parts.first()?;
        let (cols, bits, with_m) = (first.cols, first.bits, first.m.is_some());
        if parts
            .iter()
            .any(|p| p.cols != cols || p.bits != bits || p.m.is_some() != with_m)
        {
            return None;
        }
        let mut out = Self {
            rows: 0,
            cols,
            bits,
            q: Vec::new(),
            d: Vec::new(),
            m: with_m.then(Vec::new),
        };
        for p in parts {
            out.rows += p.rows;
            out.q.extend(p.q);
            out.d.extend(p.d);
            if let (Some(dst), Some(src)) = (out.m.as_mut(), p.m) {
                dst.extend(src);
            }
        }
        Some(out)
    }

    /// Output width.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input width.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `x @ Wᵀ` for `n` inputs `x` (`[n, cols]`, row-major): `[n, rows]`.
    pub fn matmul(&self, x: &[f32], n: usize) -> Vec<f32> {
        self.matmul_with(x, n, true)
    }

    /// [`QMatrix::matmul`]; `simd: false` takes the portable kernels even where AVX-512 is there
    /// (so that the tests cover them on any machine).
    fn matmul_with(&self, x: &[f32], n: usize, simd: bool) -> Vec<f32> {
        assert_eq!(x.len(), n * self.cols, "input width");
        let inputs = Inputs::new(x, n, self.cols, simd);
        #[cfg(target_arch = "x86_64")]
        if let Some(groups) = inputs.groups.as_deref().filter(|_| n >= PANEL_MIN_INPUTS) {
            let scratch = || Vec::with_capacity(PANEL_ROWS * self.cols / 32);
            return self.transposed(n, PANEL_ROWS, scratch, |r0, acc, buf| {
                let rows: Vec<Row<'_>> = (r0..r0 + acc.len() / n).map(|r| self.row(r)).collect();
                x86::panel(&rows, groups, n, buf, acc);
            });
        }
        self.transposed(
            n,
            16,
            || (),
            |r0, acc, _| {
                for (k, acc) in acc.chunks_mut(n).enumerate() {
                    row_dots(&self.row(r0 + k), &inputs, acc);
                }
            },
        )
    }

    /// Weight row `r`.
    fn row(&self, r: usize) -> Row<'_> {
        let (rb, bpr) = (self.row_bytes(), self.cols / 32);
        let blocks = r * bpr..(r + 1) * bpr;
        Row {
            q: &self.q[r * rb..(r + 1) * rb],
            bits: self.bits,
            d: &self.d[blocks.clone()],
            m: self.m.as_ref().map(|m| &m[blocks]),
        }
    }

    /// The `[n, rows]` product from `work(first_row, out, scratch)`, which fills the products of
    /// a tile of `tile` weight rows (the last one shorter) as `[rows of the tile, n]`. Tiles run
    /// on rayon's threads (each amortises its scheduling; `scratch` makes the scratch space of
    /// one run of tiles).
    fn transposed<B>(
        &self,
        n: usize,
        tile: usize,
        scratch: impl Fn() -> B + Sync + Send,
        work: impl Fn(usize, &mut [f32], &mut B) + Sync,
    ) -> Vec<f32> {
        let mut out_t = vec![0.0f32; self.rows * n];
        let task = |buf: &mut B, (ti, acc): (usize, &mut [f32])| work(ti * tile, acc, buf);
        if rayon::current_num_threads() > 1 {
            out_t
                .par_chunks_mut(n * tile)
                .enumerate()
                .for_each_init(scratch, task);
        } else {
            let mut buf = scratch();
            out_t
                .chunks_mut(n * tile)
                .enumerate()
                .for_each(|t| task(&mut buf, t));
        }
        // [rows, n] -> [n, rows], 32 rows at a time so that the rows read stay in L1.
        let mut out = vec![0.0f32; n * self.rows];
        for (b, block) in out_t.chunks(32 * n).enumerate() {
            for (i, o) in out.chunks_exact_mut(self.rows).enumerate() {
                for (v, t) in o[32 * b..].iter_mut().zip(block.chunks_exact(n)) {
                    *v = t[i];
                }
            }
        }
        out
    }
}

/// From this many inputs on (prefill, scoring), a product dequantises each tile of
/// [`PANEL_ROWS`] weight rows once and multiplies it into every input ([`x86::panel`]).
#[cfg(target_arch = "x86_64")]
const PANEL_MIN_INPUTS: usize = 32;
#[cfg(target_arch = "x86_64")]
const PANEL_ROWS: usize = 24;

/// One weight row: its packed blocks, their scales `d` and offsets `m` (weight = `d * q + m`).
struct Row<'a> {
    q: &'a [u8],
    bits: u8,
    d: &'a [f32],
    m: Option<&'a [f32]>,
}

/// The inputs of one product: row-major `[n, cols]` with per-block sums (for the offsets), and
/// on AVX-512 machines as 16-lane vectors instead, converted once and reused by every row.
struct Inputs<'a> {
    x: &'a [f32],
    n: usize,
    cols: usize,
    xsum: Vec<f32>,
    #[cfg(target_arch = "x86_64")]
    groups: Option<Vec<x86::Group>>,
}

impl<'a> Inputs<'a> {
    /// `simd`: use the AVX-512 kernel where the CPU has it.
    fn new(x: &'a [f32], n: usize, cols: usize, simd: bool) -> Self {
        #[cfg(target_arch = "x86_64")]
        let groups = if simd { x86::groups(x, n, cols) } else { None };
        #[cfg(target_arch = "x86_64")]
        let simd = groups.is_some();
        #[cfg(not(target_arch = "x86_64"))]
        let simd = {
            let _ = simd;
            false
        };
        Self {
            x,
            n,
            cols,
            xsum: if simd {
                Vec::new()
            } else {
                x.chunks_exact(32).map(|c| c.iter().sum()).collect()
            },
            #[cfg(target_arch = "x86_64")]
            groups,
        }
    }
}

/// One weight row against every input: `acc[i] = Σ_b (d_b q_b + m_b) · x_i,b`. On AVX-512 every
/// block is dequantised once for all inputs ([`x86`]); elsewhere, one 16-lane dot per input and
/// the offsets through the inputs' block sums.
fn row_dots(row: &Row<'_>, inputs: &Inputs<'_>, acc: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(groups) = &inputs.groups {
        return x86::row_dots(row, groups, acc);
    }
    let (cols, bpr) = (inputs.cols, inputs.cols / 32);
    for (i, a) in acc.iter_mut().enumerate().take(inputs.n) {
        let xi = &inputs.x[i * cols..(i + 1) * cols];
        *a = if row.bits == 4 {
            scaled_dot_q4(row.q, row.d, xi)
        } else {
            scaled_dot_q8(row.q, row.d, xi)
        };
        if let Some(m) = row.m {
            let xs = &inputs.xsum[i * bpr..(i + 1) * bpr];
            *a += m.iter().zip(xs).map(|(m, s)| m * s).sum::<f32>();
        }
    }
}

/// AVX-512 kernels that dequantise each block of a weight row once (`d * q + m`, one fused
/// multiply-add per 16 weights) and multiply it into up to eight inputs held in registers:
/// batched decoding reads the weights once per step instead of once per sequence. The
/// intrinsics are safe to call inside functions compiled for AVX-512, and `multiversion` runs
/// those only on a CPU that has it.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Row;

    /// Inputs `start..start + take` (`take` one of the kernel widths 8, 4, 2, 1) as 16-lane
    /// vectors in block-major order: for each block of 32 columns, each input's two vectors.
    /// A block's inputs are one contiguous run, so the kernel reads them at constant offsets.
    pub(super) struct Group {
        start: usize,
        take: usize,
        v: Vec<[__m512; 2]>,
    }

    /// The inputs (`[n, cols]`) in kernel-width groups, on a CPU with AVX-512.
    #[allow(clippy::redundant_closure)]
    #[multiversion::multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma"))]
    pub(super) fn groups(x: &[f32], n: usize, cols: usize) -> Option<Vec<Group>> {
        multiversion::target::match_target! {
            "x86_64+avx512f+avx512bw" => {
                let mut out = Vec::new();
                let mut start = 0;
                while start < n {
                    let take = match n - start {
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
                let _ = (x, n, cols);
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

    /// `acc` (`[rows, n]`) = the products of `rows` with every input: the rows' blocks are
    /// dequantised once into `buf` (block-major per [`TILE_ROWS`] rows), then multiplied into
    /// each group of inputs by a register tile of up to `TILE_ROWS` rows x 8 inputs, which loads
    /// a weight vector once per 8 inputs and an input vector once per `TILE_ROWS` rows.
    #[multiversion::multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma"))]
    pub(super) fn panel(
        rows: &[Row<'_>],
        groups: &[Group],
        n: usize,
        buf: &mut Vec<[__m512; 2]>,
        acc: &mut [f32],
    ) {
        multiversion::target::match_target! {
            "x86_64+avx512f+avx512bw" => {
                let Some(first) = rows.first() else { return };
                let bpr = first.d.len();
                buf.clear();
                buf.resize(rows.len() * bpr, [_mm512_setzero_ps(); 2]);
                for (tile, out) in rows.chunks(TILE_ROWS).zip(buf.chunks_mut(TILE_ROWS * bpr)) {
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
                        let out = &mut acc[ti * TILE_ROWS * n..(ti * TILE_ROWS + tile.len()) * n];
                        let at = (g.start, n);
                        match (tile.len(), g.take) {
                            (3, 8) => tile_dots::<3, 8>(w, &g.v, out, at),
                            (3, 4) => tile_dots::<3, 4>(w, &g.v, out, at),
                            (3, 2) => tile_dots::<3, 2>(w, &g.v, out, at),
                            (3, _) => tile_dots::<3, 1>(w, &g.v, out, at),
                            (2, 8) => tile_dots::<2, 8>(w, &g.v, out, at),
                            (2, 4) => tile_dots::<2, 4>(w, &g.v, out, at),
                            (2, 2) => tile_dots::<2, 2>(w, &g.v, out, at),
                            (2, _) => tile_dots::<2, 1>(w, &g.v, out, at),
                            (_, 8) => tile_dots::<1, 8>(w, &g.v, out, at),
                            (_, 4) => tile_dots::<1, 4>(w, &g.v, out, at),
                            (_, 2) => tile_dots::<1, 2>(w, &g.v, out, at),
                            _ => tile_dots::<1, 1>(w, &g.v, out, at),
                        }
                    }
                }
            },
            _ => {
                let _ = (rows, groups, n, buf, acc);
                unreachable!("input groups exist only on AVX-512")
            }
        }
    }

    /// Rows per register tile of [`panel`] (3 x 8 inputs = 24 of the 32 vector registers).
    const TILE_ROWS: usize = 3;

    /// `tile`'s rows dequantised into `out`, block-major: for each block, each row's two vectors.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn dequantise<const BITS: u8>(tile: &[Row<'_>], out: &mut [[__m512; 2]]) {
        let qb = usize::from(BITS) * 4;
        for (b, slots) in out.chunks_exact_mut(tile.len()).enumerate() {
            for (row, slot) in tile.iter().zip(slots) {
                let m = row.m.map_or(0.0, |m| m[b]);
                let (lo, hi) = block::<BITS>(&row.q[b * qb..], row.d[b], m);
                *slot = [lo, hi];
            }
        }
    }

    /// `R` dequantised rows (`w`, block-major) against `N` inputs (`x`, block-major):
    /// `out[r * n + start + i] = Σ w_r · x_i`, one sum per (row, input) in a register.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn tile_dots<const R: usize, const N: usize>(
        w: &[[__m512; 2]],
        x: &[[__m512; 2]],
        out: &mut [f32],
        (start, n): (usize, usize),
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
        for (r, a) in acc.iter().enumerate() {
            let out = &mut out[r * n + start..r * n + start + N];
            sums(a, out);
        }
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
        let total: [f32; 8] =
            bytemuck::cast(_mm512_castps512_ps256(_mm512_permutexvar_ps(order, z)));
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
        let step =
            |acc: &mut [[[__m512; 2]; U]; N], u: usize, q: &[u8], d, m, x: &[[__m512; 2]]| {
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
}

// The two kernels below: `Σ_b d_b (q_b · x_b)` over blocks of 32, where the AVX-512 kernel above
// does not run (it takes every product on a CPU with AVX-512). Compiled for AVX2+FMA and NEON as
// well as the baseline, chosen at run time (multiversion). The products stay in 16
// lanes across all blocks and are reduced once: a horizontal sum per block costs more than the
// block's 32 multiply-adds (measured 4x slower), and so does any other work inside the loop. Keep
// the final `lanes.iter().sum()`: reducing the lanes with an explicit `(l0 + l1) + ...` tree
// instead made LLVM stop vectorising the loop (measured 4x slower on AVX2).

/// 4-bit blocks: 16 bytes, weight `j` in the low nibble of byte `j`, weight `j + 16` in its high
/// nibble.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn scaled_dot_q4(q: &[u8], d: &[f32], x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    for ((qb, xb), &db) in q.chunks_exact(16).zip(x.chunks_exact(32)).zip(d) {
        let mut blk = [0.0f32; 16];
        let (lo, hi) = xb.split_at(16);
        for l in 0..16 {
            blk[l] += f32::from(qb[l] & 0x0F) * lo[l];
        }
        for l in 0..16 {
            blk[l] += f32::from(qb[l] >> 4) * hi[l];
        }
        for l in 0..16 {
            lanes[l] += db * blk[l];
        }
    }
    lanes.iter().sum()
}

/// 8-bit blocks: 32 signed bytes.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn scaled_dot_q8(q: &[u8], d: &[f32], x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    for ((qb, xb), &db) in q.chunks_exact(32).zip(x.chunks_exact(32)).zip(d) {
        let mut blk = [0.0f32; 16];
        for (qc, xc) in qb.chunks_exact(16).zip(xb.chunks_exact(16)) {
            for l in 0..16 {
                blk[l] += f32::from(qc[l] as i8) * xc[l];
            }
        }
        for l in 0..16 {
            lanes[l] += db * blk[l];
        }
    }
    lanes.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::dequantize;
    use rand::{Rng, SeedableRng};

    /// Random blocks of `ty` for a `rows x cols` matrix (scales of a realistic size).
    fn blocks(ty: GgmlType, rows: usize, cols: usize, rng: &mut impl Rng) -> Vec<u8> {
        let (_, size) = ty.block().unwrap();
        let mut raw = Vec::new();
        for _ in 0..rows * cols / 32 {
            let d = half::f16::from_f32(rng.random_range(0.001..0.05));
            raw.extend_from_slice(&d.to_le_bytes());
            if ty == GgmlType::Q4_1 {
                let m = half::f16::from_f32(rng.random_range(-0.2..0.0));
                raw.extend_from_slice(&m.to_le_bytes());
            }
            while raw.len() % size != 0 {
                raw.push(rng.random());
            }
        }
        raw
    }

    #[test]
    fn products_match_the_dequantised_weights_for_every_block_type_and_batch() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        // 37 rows: panels of 24 + 13, register tiles of 3 rows and one of 1; 26: a tile of 2.
        for ((rows, cols), ty) in [(37, 96), (26, 64)]
            .into_iter()
            .flat_map(|s| [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0].map(|ty| (s, ty)))
        {
            let raw = blocks(ty, rows, cols, &mut rng);
            let w = dequantize(ty, &raw).unwrap();
            let qm = QMatrix::from_blocks(ty, &raw, rows, cols).unwrap();
            // 1, 2, 4 and 8 inputs are the AVX-512 kernels' widths; 3 = 2 + 1, 11 = 8 + 2 + 1;
            // 35 (= 4 x 8 + 2 + 1) takes the panel kernel.
            for (n, simd) in [1, 3, 5, 8, 11, 35]
                .into_iter()
                .flat_map(|n| [(n, true), (n, false)])
            {
                let x: Vec<f32> = (0..n * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
                let got = qm.matmul_with(&x, n, simd);
                for i in 0..n {
                    for r in 0..rows {
                        let want: f64 = (0..cols)
                            .map(|c| f64::from(w[r * cols + c]) * f64::from(x[i * cols + c]))
                            .sum();
                        let g = f64::from(got[i * rows + r]);
                        assert!(
                            (g - want).abs() < 1e-5 * (1.0 + want.abs()),
                            "{ty:?} {rows}x{cols} n={n} simd={simd} input {i} row {r}: {g} vs {want}"
                        );
                    }
                }
            }
        }
        assert!(QMatrix::from_blocks(GgmlType::F32, &[0; 4 * 32], 1, 32).is_none());
        let raw = blocks(GgmlType::Q8_0, 2, 32, &mut rng);
        assert!(QMatrix::from_blocks(GgmlType::Q8_0, &raw[..raw.len() - 1], 2, 32).is_none());
    }
}
