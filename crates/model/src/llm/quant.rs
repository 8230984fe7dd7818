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

/// A `[rows, cols]` matrix (Hugging Face's `[out, in]`) from GGUF blocks of 32 weights, kept
/// as one `i8` per weight plus each block's scale `d` and offset `m` in `f32` (weight =
/// `d * q + m`): a quarter of the f32 traffic, and integer unpacking done once at load.
#[derive(Debug, Clone)]
pub struct QMatrix {
    rows: usize,
    cols: usize,
    q: Vec<i8>,
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
        let ty = info.ty;
        if !matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0) || info.dims.len() != 2 {
            return Ok(None);
        }
        let (block_elems, block_bytes) = ty.block().expect("block type");
        let shape = info.shape();
        let (rows, cols) = (shape[0], shape[1]);
        if block_elems != 32 || !cols.is_multiple_of(32) {
            return Ok(None);
        }
        let raw = file.tensor_data(name)?;
        let blocks = rows * cols / 32;
        let mut q = vec![0i8; rows * cols];
        let mut d = vec![0.0f32; blocks];
        let mut m = (ty == GgmlType::Q4_1).then(|| vec![0.0f32; blocks]);
        for (b, blk) in raw.chunks_exact(block_bytes).enumerate() {
            let w = &mut q[b * 32..(b + 1) * 32];
            d[b] = h(&blk[..2]);
            match ty {
                GgmlType::Q8_0 => {
                    for (j, &v) in blk[2..].iter().enumerate() {
                        w[j] = v as i8;
                    }
                }
                GgmlType::Q4_1 => {
                    if let Some(m) = m.as_mut() {
                        m[b] = h(&blk[2..4]);
                    }
                    for (j, &v) in blk[4..].iter().enumerate() {
                        w[j] = (v & 0x0F) as i8;
                        w[j + 16] = (v >> 4) as i8;
                    }
                }
                _ => {
                    for (j, &v) in blk[2..].iter().enumerate() {
                        w[j] = (v & 0x0F) as i8 - 8;
                        w[j + 16] = (v >> 4) as i8 - 8;
                    }
                }
            }
        }
        let mut out = Self {
            rows,
            cols,
            q,
            d,
            m,
        };
        if let Some(n_head) = heads {
            out.unpermute(n_head);
        }
        Ok(Some(out))
    }

    /// Restores Hugging Face's row order of a Q/K matrix (see [`crate::gguf::permuted_qk_row`]).
    fn unpermute(&mut self, n_head: usize) {
        let (cols, bpr) = (self.cols, self.cols / 32);
        let (q, d, m) = (self.q.clone(), self.d.clone(), self.m.clone());
        for hf in 0..self.rows {
            let gg = permuted_qk_row(hf, self.rows, n_head);
            self.q[hf * cols..(hf + 1) * cols].copy_from_slice(&q[gg * cols..(gg + 1) * cols]);
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
        let (cols, with_m) = (first.cols, first.m.is_some());
        if parts
            .iter()
            .any(|p| p.cols != cols || p.m.is_some() != with_m)
        {
            return None;
        }
        let mut out = Self {
            rows: 0,
            cols,
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

    /// `x @ Wᵀ` for `n` inputs `x` (`[n, cols]`, row-major): `[n, rows]`.
    pub fn matmul(&self, x: &[f32], n: usize) -> Vec<f32> {
        assert_eq!(x.len(), n * self.cols, "input width");
        let bpr = self.cols / 32;
        // Per-block sums of the inputs (for the `m` term of Q4_1).
        let xsum: Vec<f32> = x.chunks_exact(32).map(|c| c.iter().sum()).collect();
        let mut out_t = vec![0.0f32; self.rows * n];
        // Rows in tiles so that each rayon task amortises its scheduling.
        let tile = 16;
        let work = |(ti, acc): (usize, &mut [f32])| {
            for (k, acc) in acc.chunks_mut(n).enumerate() {
                let r = ti * tile + k;
                let blocks = r * bpr..(r + 1) * bpr;
                row_dots(
                    &self.q[r * self.cols..(r + 1) * self.cols],
                    &self.d[blocks.clone()],
                    self.m.as_ref().map(|m| &m[blocks]),
                    x,
                    &xsum,
                    self.cols,
                    acc,
                );
            }
        };
        if rayon::current_num_threads() > 1 {
            out_t.par_chunks_mut(n * tile).enumerate().for_each(work);
        } else {
            out_t.chunks_mut(n * tile).enumerate().for_each(work);
        }
        // [rows, n] -> [n, rows].
        let mut out = vec![0.0f32; n * self.rows];
        for r in 0..self.rows {
            for i in 0..n {
                out[i * self.rows + r] = out_t[r * n + i];
            }
        }
        out
    }
}

/// One weight row against every input: `acc[i] = Σ_b d_b (q_b · x_i,b) + m_b Σ x_i,b`.
fn row_dots(
    q: &[i8],
    d: &[f32],
    m: Option<&[f32]>,
    x: &[f32],
    xsum: &[f32],
    cols: usize,
    acc: &mut [f32],
) {
    let bpr = cols / 32;
    for (i, a) in acc.iter_mut().enumerate() {
        let mut total = scaled_dot(q, d, &x[i * cols..(i + 1) * cols]);
        if let Some(m) = m {
            let xs = &xsum[i * bpr..(i + 1) * bpr];
            total += m.iter().zip(xs).map(|(m, s)| m * s).sum::<f32>();
        }
        *a = total;
    }
}

/// `Σ_b d_b (q_b · x_b)` over blocks of 32. Compiled for AVX2+FMA and NEON as well as the
/// baseline, chosen at run time (multiversion). The products stay in 8 lanes across all blocks
/// and are reduced once: a horizontal sum per block costs more than the block's 32
/// multiply-adds (measured 4x slower), and so does any other work inside this loop. Keep the final
/// `lanes.iter().sum()`: reducing the lanes with an explicit `(l0 + l1) + ...` tree instead made
/// LLVM stop vectorising the loop (measured 4x slower on AVX2).
#[multiversion::multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn scaled_dot(q: &[i8], d: &[f32], x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    for ((qb, xb), &db) in q.chunks_exact(32).zip(x.chunks_exact(32)).zip(d) {
        let mut blk = [0.0f32; 8];
        for (qc, xc) in qb.chunks_exact(8).zip(xb.chunks_exact(8)) {
            for l in 0..8 {
                blk[l] += f32::from(qc[l]) * xc[l];
            }
        }
        for l in 0..8 {
            lanes[l] += db * blk[l];
        }
    }
    lanes.iter().sum()
}
