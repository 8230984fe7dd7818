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

use crate::gguf::{GgmlType, Gguf, GgufError};

/// A `[rows, cols]` matrix (Hugging Face's `[out, in]`) kept in its GGUF blocks.
#[derive(Debug, Clone)]
pub struct QMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    bytes: Vec<u8>,
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
        if !cols.is_multiple_of(block_elems) {
            return Ok(None);
        }
        let row_bytes = cols / block_elems * block_bytes;
        let raw = file.tensor_data(name)?;
        let bytes = match heads {
            None => raw.to_vec(),
            Some(n_head) => {
                let d = rows / n_head;
                let mut out = vec![0u8; raw.len()];
                for hh in 0..n_head {
                    for half in 0..2 {
                        for i in 0..d / 2 {
                            let hf = hh * d + half * (d / 2) + i;
                            let gg = hh * d + 2 * i + half;
                            out[hf * row_bytes..(hf + 1) * row_bytes]
                                .copy_from_slice(&raw[gg * row_bytes..(gg + 1) * row_bytes]);
                        }
                    }
                }
                out
            }
        };
        Ok(Some(Self {
            ty,
            rows,
            cols,
            row_bytes,
            bytes,
        }))
    }

    /// Output width.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// `x @ Wᵀ` for `n` inputs `x` (`[n, cols]`, row-major): `[n, rows]`.
    pub fn matmul(&self, x: &[f32], n: usize) -> Vec<f32> {
        assert_eq!(x.len(), n * self.cols, "input width");
        let blocks = self.cols / 32;
        // Per-block sums of the inputs (the `m` term of Q4_1).
        let xsum: Vec<f32> = x.chunks_exact(32).map(|c| c.iter().sum()).collect();
        let mut out_t = vec![0.0f32; self.rows * n];
        out_t.par_chunks_mut(n).enumerate().for_each(|(r, acc)| {
            let row = &self.bytes[r * self.row_bytes..(r + 1) * self.row_bytes];
            let mut w = [0.0f32; 32];
            for b in 0..blocks {
                let (d, m) = match self.ty {
                    GgmlType::Q8_0 => {
                        let blk = &row[b * 34..(b + 1) * 34];
                        for (j, &q) in blk[2..].iter().enumerate() {
                            w[j] = f32::from(q as i8);
                        }
                        (h(&blk[..2]), 0.0)
                    }
                    GgmlType::Q4_1 => {
                        let blk = &row[b * 20..(b + 1) * 20];
                        for (j, &q) in blk[4..].iter().enumerate() {
                            w[j] = f32::from(q & 0x0F);
                            w[j + 16] = f32::from(q >> 4);
                        }
                        (h(&blk[..2]), h(&blk[2..4]))
                    }
                    _ => {
                        let blk = &row[b * 18..(b + 1) * 18];
                        for (j, &q) in blk[2..].iter().enumerate() {
                            w[j] = f32::from(q & 0x0F) - 8.0;
                            w[j + 16] = f32::from(q >> 4) - 8.0;
                        }
                        (h(&blk[..2]), 0.0)
                    }
                };
                for (i, a) in acc.iter_mut().enumerate() {
                    let xb = &x[i * self.cols + b * 32..i * self.cols + b * 32 + 32];
                    let mut s = [0.0f32; 8];
                    for k in 0..4 {
                        for l in 0..8 {
                            s[l] += w[k * 8 + l] * xb[k * 8 + l];
                        }
                    }
                    let dot: f32 = s.iter().sum();
                    *a += d * dot + m * xsum[i * blocks + b];
                }
            }
        });
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
