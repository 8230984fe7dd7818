//! Matrix products straight from GGUF's quantised blocks (Q4_0, Q4_1, Q8_0), for CPU inference.
//!
//! Decoding one token reads every weight once, so on a CPU it is bound by memory bandwidth:
//! f32 weights move 4 bytes per weight, Q4_1 blocks 0.625. burn's CPU backend dequantises a
//! quantised tensor before a matmul, so this module multiplies from the blocks themselves. Each
//! weight is `d * q + m` exactly as [`crate::gguf::dequantize`] computes it; only the summation
//! order differs from the f32 path (the golden tests hold on both). Output rows are split across
//! rayon threads and every dot product is summed in a fixed order, so results do not depend on
//! the thread count.
//!
//! Three kernel paths ([`CpuPath`]): [`avx512`] and [`avx2`] (intrinsics, one design in 16- and
//! 8-lane vectors) and [`portable`] (plain loops the compiler vectorises). The best the CPU has
//! runs, or the one `FPO_CPU` forces.

use rayon::prelude::*;

use crate::cpu::CpuPath;
use crate::gguf::{GgmlType, Gguf, GgufError, permuted_qk_row};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

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

    /// `x @ Wᵀ` for `n` inputs `x` (`[n, cols]`, row-major): `[n, rows]`, on the kernel path of
    /// this process ([`CpuPath::active`]).
    pub fn matmul(&self, x: &[f32], n: usize) -> Vec<f32> {
        self.matmul_on(x, n, CpuPath::active())
            .unwrap_or_else(|| self.portable(x, n))
    }

    /// [`QMatrix::matmul`] whose every input's outputs are the same in any batch, bit for bit:
    /// the panel kernels at every size (from [`PANEL_MIN_INPUTS`] inputs on [`QMatrix::matmul`]
    /// takes them too; below, its sums depend on the kernel group an input falls in). The loop's
    /// decoding batches use it, so that what one policy's rows compute does not depend on the
    /// rows beside them.
    pub fn matmul_invariant(&self, x: &[f32], n: usize) -> Vec<f32> {
        self.invariant_on(x, n, CpuPath::active())
            .unwrap_or_else(|| self.portable(x, n))
    }

    /// [`QMatrix::matmul`] on the kernels of `path`; `None` where this CPU lacks the path (the
    /// kernels did not run). Each path's sums run in their own fixed order: results differ
    /// between paths by rounding only, and not with the thread count.
    pub fn matmul_on(&self, x: &[f32], n: usize, path: CpuPath) -> Option<Vec<f32>> {
        self.on(x, n, path, false)
    }

    /// [`QMatrix::matmul_invariant`] on the kernels of `path`, or `None` where this CPU lacks it.
    pub fn invariant_on(&self, x: &[f32], n: usize, path: CpuPath) -> Option<Vec<f32>> {
        self.on(x, n, path, true)
    }

    /// The product on `path`; `panel`: the panel kernels whatever the batch.
    fn on(&self, x: &[f32], n: usize, path: CpuPath, panel: bool) -> Option<Vec<f32>> {
        assert_eq!(x.len(), n * self.cols, "input width");
        if n == 0 {
            return Some(Vec::new());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = panel;
        match path {
            #[cfg(target_arch = "x86_64")]
            CpuPath::Avx512 => self.simd::<avx512::Avx512>(x, n, panel),
            #[cfg(target_arch = "x86_64")]
            CpuPath::Avx2 => self.simd::<avx2::Avx2>(x, n, panel),
            // One input at a time: the same in any batch.
            CpuPath::Portable => Some(self.portable(x, n)),
            #[cfg(not(target_arch = "x86_64"))]
            _ => None,
        }
    }

    /// The product on the intrinsics kernels `K`, if the CPU has them: from
    /// [`PANEL_MIN_INPUTS`] inputs on (or with `panel`), a tile of `K::PANEL_ROWS` rows is
    /// dequantised once and multiplied into every input; below, a row's blocks are dequantised
    /// once for all inputs.
    #[cfg(target_arch = "x86_64")]
    fn simd<K: Simd>(&self, x: &[f32], n: usize, panel: bool) -> Option<Vec<f32>> {
        let panel = panel || n >= PANEL_MIN_INPUTS;
        let groups = K::groups(x, n, self.cols, panel)?;
        if panel {
            // The panels write each product straight into its input's row.
            // The span's rows are looked up once, then run a panel at a time.
            return Some(self.spans(n, K::PANEL_ROWS, |first, len, pieces| {
                let rows: Vec<Row<'_>> = (first..first + len).map(|r| self.row(r)).collect();
                for (p, panel) in rows.chunks(K::PANEL_ROWS).enumerate() {
                    K::panel(panel, &groups, pieces, p * K::PANEL_ROWS);
                }
            }));
        }
        Some(self.transposed(n, 16, |r0, acc| {
            for (k, acc) in acc.chunks_mut(n).enumerate() {
                if K::TOUCH_NEXT_ROW {
                    self.touch(r0 + k + 1);
                }
                K::row_dots(&self.row(r0 + k), &groups, acc);
            }
        }))
    }

    /// The product on the portable kernels (any CPU).
    fn portable(&self, x: &[f32], n: usize) -> Vec<f32> {
        let xsum = portable::block_sums(x);
        self.transposed(n, 16, |r0, acc| {
            for (k, acc) in acc.chunks_mut(n).enumerate() {
                self.touch(r0 + k + 1);
                portable::row_dots(&self.row(r0 + k), x, &xsum, self.cols, acc);
            }
        })
    }

    /// Reads one byte of each cache line of row `r`'s blocks, scales and offsets, so that their
    /// misses overlap the work on the row before. The AVX2 and portable kernels spend twice the
    /// instructions per block that the AVX-512 ones do, and without this they wait on each
    /// row's loads: a decoding step's products (`cargo bench --bench qmatmul`, one thread) took
    /// 30 ms on AVX2 and 33 portable, 17 and 20 with it; AVX-512's 15-16 ms did not change.
    fn touch(&self, r: usize) {
        if r >= self.rows {
            return;
        }
        let row = self.row(r);
        let mut t = 0u8;
        for c in row.q.iter().step_by(64) {
            t ^= c;
        }
        let mut f = 0.0f32;
        for c in row.d.iter().step_by(16) {
            f += c;
        }
        if let Some(m) = row.m {
            for c in m.iter().step_by(16) {
                f += c;
            }
        }
        std::hint::black_box((t, f));
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

    /// The `[n, rows]` product from `work(first_row, acc)`, which fills the products of a tile
    /// of `tile` weight rows (the last one shorter) as `[rows of the tile, n]`, each input's
    /// run of a tile's outputs then written into that input's row (see [`QMatrix::spans`]).
    fn transposed(
        &self,
        n: usize,
        tile: usize,
        work: impl Fn(usize, &mut [f32]) + Sync,
    ) -> Vec<f32> {
        self.spans(n, tile, |first, len, pieces| {
            let mut acc = vec![0.0f32; tile * n];
            for t0 in (0..len).step_by(tile) {
                let here = tile.min(len - t0);
                let acc = &mut acc[..here * n];
                work(first + t0, acc);
                for (i, piece) in pieces.iter_mut().enumerate() {
                    for (v, a) in piece[t0..t0 + here].iter_mut().zip(acc.chunks_exact(n)) {
                        *v = a[i];
                    }
                }
            }
        })
    }

    /// The `[n, rows]` product from `work(first_row, len, pieces)`, which fills rows
    /// `first_row..first_row + len` of every input's product: `pieces[i][r]` is input `i`'s
    /// product with row `first_row + r`. The rows split into a few spans of whole tiles of
    /// `tile` rows per rayon thread, one task each (no `[rows, n]` product and transposing
    /// pass: the head's is 49,152 x 25 floats per decoding step).
    fn spans(
        &self,
        n: usize,
        tile: usize,
        work: impl Fn(usize, usize, &mut [&mut [f32]]) + Sync,
    ) -> Vec<f32> {
        let mut out = vec![0.0f32; n * self.rows];
        let threads = rayon::current_num_threads();
        let tiles = self.rows.div_ceil(tile);
        let span = tiles.div_ceil(if threads > 1 { 4 * threads } else { 1 }) * tile;
        // Each span's piece of every input's row: `spans[s][i]`.
        let mut spans: Vec<Vec<&mut [f32]>> = (0..self.rows.div_ceil(span))
            .map(|_| Vec::with_capacity(n))
            .collect();
        for row in out.chunks_exact_mut(self.rows) {
            for (pieces, piece) in spans.iter_mut().zip(row.chunks_mut(span)) {
                pieces.push(piece);
            }
        }
        let task = |(s, mut pieces): (usize, Vec<&mut [f32]>)| {
            let len = pieces.first().map_or(0, |p| p.len());
            work(s * span, len, &mut pieces);
        };
        if threads > 1 && spans.len() > 1 {
            spans.into_par_iter().enumerate().for_each(task);
        } else {
            spans.into_iter().enumerate().for_each(task);
        }
        out
    }
}

/// From this many inputs on (prefill, scoring), the intrinsics kernels dequantise a tile of
/// weight rows once and multiply it into every input ([`Simd::panel`]).
#[cfg(target_arch = "x86_64")]
const PANEL_MIN_INPUTS: usize = 32;

/// One weight row: its packed blocks, their scales `d` and offsets `m` (weight = `d * q + m`).
struct Row<'a> {
    q: &'a [u8],
    bits: u8,
    d: &'a [f32],
    m: Option<&'a [f32]>,
}

/// `block(quants, d, m)` of every block of `tile`'s rows into `out` (`tile.len()` x their
/// blocks), block-major: for each block, each row's slot. A row at a time, its quants, scales
/// and offsets walked by iterators, so that nothing is bounds-checked or reloaded per block
/// (interleaving the rows block by block cost a fifth more per decoding step).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn dequantise_into<T>(
    tile: &[Row<'_>],
    out: &mut [T],
    mut block: impl FnMut(&[u8], f32, f32) -> T,
) {
    let Some(first) = tile.first() else { return };
    let qb = usize::from(first.bits) * 4;
    for (k, row) in tile.iter().enumerate() {
        let slots = out[k..].iter_mut().step_by(tile.len());
        let blocks = slots.zip(row.q.chunks_exact(qb)).zip(row.d);
        match row.m {
            Some(m) => {
                for (((slot, q), &d), &m) in blocks.zip(m) {
                    *slot = block(q, d, m);
                }
            }
            None => {
                for ((slot, q), &d) in blocks {
                    *slot = block(q, d, 0.0);
                }
            }
        }
    }
}

/// One instruction set's kernels ([`avx512`], [`avx2`]): the inputs converted once to its
/// vectors (`None` where the CPU lacks it), a weight row against every input, and a tile of
/// rows against every input.
#[cfg(target_arch = "x86_64")]
trait Simd {
    /// Some inputs as vectors, block-major.
    type Group: Sync;
    /// Weight rows dequantised at once by [`Simd::panel`].
    const PANEL_ROWS: usize;
    /// Whether [`Simd::row_dots`] runs faster with the next row touched first
    /// ([`QMatrix::touch`]).
    const TOUCH_NEXT_ROW: bool;
    /// The inputs `[n, cols]` in the groups the kernels take (`panel`: for [`Simd::panel`]).
    fn groups(x: &[f32], n: usize, cols: usize, panel: bool) -> Option<Vec<Self::Group>>;
    /// `acc[i] = w · x_i` for every input.
    fn row_dots(w: &Row<'_>, groups: &[Self::Group], acc: &mut [f32]);
    /// Every row of `rows` against every input, input `i`'s product with `rows[r]` into
    /// `out[i][at + r]` (the dequantised tiles in a scratch buffer of the thread's).
    fn panel(rows: &[Row<'_>], groups: &[Self::Group], out: &mut [&mut [f32]], at: usize);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::dequantize;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeSet;

    fn names(paths: impl Iterator<Item = CpuPath>) -> String {
        let names: Vec<_> = paths.map(CpuPath::name).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

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
        let mut ran = BTreeSet::new();
        // Panels ending in a short register tile: on AVX-512 (tiles of 5 rows, panels of 15)
        // 37 rows end in a tile of 2, 26 in one of 1, 28 in one of 3; on AVX2 (tiles of 3,
        // panels of 24) in 1, 2 and 1.
        for ((rows, cols), ty) in [(37, 96), (26, 64), (28, 64)]
            .into_iter()
            .flat_map(|s| [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0].map(|ty| (s, ty)))
        {
            let raw = blocks(ty, rows, cols, &mut rng);
            let w = dequantize(ty, &raw).unwrap();
            let qm = QMatrix::from_blocks(ty, &raw, rows, cols).unwrap();
            // 1, 2, 4 and 8 inputs are the row kernels' widths; 3 = 2 + 1, 11 = 8 + 2 + 1; 35
            // (7 groups of 5 on AVX-512, 8 x 4 + 3 on AVX2) takes the panel kernels.
            for n in [1, 3, 5, 8, 11, 35] {
                let x: Vec<f32> = (0..n * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
                for path in CpuPath::ALL {
                    let Some(got) = qm.matmul_on(&x, n, path) else {
                        assert!(!path.is_supported(), "{path}: supported, but did not run");
                        continue;
                    };
                    ran.insert(path);
                    for i in 0..n {
                        for r in 0..rows {
                            let want: f64 = (0..cols)
                                .map(|c| f64::from(w[r * cols + c]) * f64::from(x[i * cols + c]))
                                .sum();
                            let g = f64::from(got[i * rows + r]);
                            assert!(
                                (g - want).abs() < 1e-5 * (1.0 + want.abs()),
                                "{ty:?} {rows}x{cols} n={n} {path} input {i} row {r}: {g} vs {want}"
                            );
                        }
                    }
                }
            }
        }
        // Every path this CPU has ran; the ones it lacks are named.
        let supported: BTreeSet<_> = CpuPath::supported().into_iter().collect();
        assert_eq!(ran, supported);
        eprintln!(
            "kernel paths checked: {}; not on this CPU: {}",
            names(ran.iter().copied()),
            names(CpuPath::ALL.into_iter().filter(|p| !p.is_supported()))
        );
        assert!(QMatrix::from_blocks(GgmlType::F32, &[0; 4 * 32], 1, 32).is_none());
        let raw = blocks(GgmlType::Q8_0, 2, 32, &mut rng);
        assert!(QMatrix::from_blocks(GgmlType::Q8_0, &raw[..raw.len() - 1], 2, 32).is_none());
    }

    /// The batch-invariant product gives every input, bit for bit, what it gives the input alone,
    /// in batches below and above the panel's size and in any order, and equals the plain
    /// product where that takes the panel (from 32 inputs): catches a kernel whose sums depend
    /// on the group an input falls in (the AVX-512 reduction of fewer than eight inputs did).
    #[test]
    fn invariant_products_do_not_depend_on_the_batch() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            let (rows, cols) = (29, 96);
            let qm =
                QMatrix::from_blocks(ty, &blocks(ty, rows, cols, &mut rng), rows, cols).unwrap();
            let x: Vec<f32> = (0..41 * cols)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            for path in CpuPath::supported() {
                let alone: Vec<Vec<f32>> = x
                    .chunks_exact(cols)
                    .map(|xi| qm.invariant_on(xi, 1, path).unwrap())
                    .collect();
                // Panel groups (AVX-512: of 5; AVX2: of 4) ending in every width.
                for (start, n) in [(0, 3), (5, 9), (1, 7), (2, 25), (0, 41), (7, 33), (3, 38)] {
                    let batch = &x[start * cols..(start + n) * cols];
                    let got = qm.invariant_on(batch, n, path).unwrap();
                    for i in 0..n {
                        assert_eq!(
                            &got[i * rows..(i + 1) * rows],
                            &alone[start + i][..],
                            "{ty:?} {path}: input {} in a batch of {n}",
                            start + i
                        );
                    }
                    if n >= 32 {
                        assert_eq!(qm.matmul_on(batch, n, path).unwrap(), got, "{ty:?} {path}");
                    }
                }
                // Reversed: every input somewhere else in its groups.
                let reversed: Vec<f32> = x.chunks_exact(cols).rev().flatten().copied().collect();
                let got = qm.invariant_on(&reversed, 41, path).unwrap();
                for (i, want) in alone.iter().rev().enumerate() {
                    assert_eq!(&got[i * rows..(i + 1) * rows], &want[..], "{ty:?} {path}");
                }
            }
        }
    }
}
