//! The portable kernels: `Σ_b d_b (q_b · x_b)` over blocks of 32 per input, plain loops without
//! intrinsics, which the compiler vectorises (for AVX2+FMA and NEON as well as the baseline,
//! chosen at run time by multiversion). The offsets enter through the inputs' block sums.
//!
//! Why so: the products stay in 16 lanes across all blocks and are reduced once: a horizontal sum
//! per block costs more than the block's 32 multiply-adds (measured 4x slower), and so does any
//! other work inside the loop. Keep the final `lanes.iter().sum()`: reducing the lanes with an
//! explicit `(l0 + l1) + ...` tree instead made LLVM stop vectorising the loop (measured 4x
//! slower on AVX2).

use super::Row;

/// The block sums of the inputs `[n, cols]` (what the offsets multiply).
pub(super) fn block_sums(x: &[f32]) -> Vec<f32> {
    x.chunks_exact(32).map(|c| c.iter().sum()).collect()
}

/// One weight row against every input: `acc[i] = Σ_b (d_b q_b + m_b) · x_i,b`, from the inputs
/// (`[n, cols]`) and their block sums.
pub(super) fn row_dots(row: &Row<'_>, x: &[f32], xsum: &[f32], cols: usize, acc: &mut [f32]) {
    let bpr = cols / 32;
    for ((a, xi), xs) in acc
        .iter_mut()
        .zip(x.chunks_exact(cols))
        .zip(xsum.chunks_exact(bpr))
    {
        *a = if row.bits == 4 {
            scaled_dot_q4(row.q, row.d, xi)
        } else {
            scaled_dot_q8(row.q, row.d, xi)
        };
        if let Some(m) = row.m {
            *a += m.iter().zip(xs).map(|(m, s)| m * s).sum::<f32>();
        }
    }
}

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
