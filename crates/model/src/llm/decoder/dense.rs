//! The f32 weights of a projection, whole (training, GPUs) or as column parts multiplied in
//! parallel (a multi-threaded CPU inference copy).

use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::llm::weights::HostTensor;

/// A projection's f32 weights `[in, out]`. A CPU inference copy holds them as contiguous
/// column parts of at most [`PART_COLUMNS`] outputs, multiplied in parallel: burn's gemm splits
/// one `38 x 576 x 1536` product across two threads poorly (81-84 GFLOP/s, against 139-145 for
/// six 256-column parts on two rayon threads, and 58 -> 72 GFLOP/s on one thread: the parts
/// stay in cache). A training copy keeps one part (long sequences parallelise inside gemm), and
/// so does a copy loaded with one rayon thread (run one after the other, the parts were slower
/// than the whole product in the model: prefill 160-178 -> 179-205 ms).
#[derive(Debug, Clone)]
pub(super) struct Dense {
    pub(super) parts: Vec<Tensor<2>>,
}

/// Widest column part of a [`Dense`] CPU inference weight.
const PART_COLUMNS: usize = 192;

impl Dense {
    /// `[out, in]` on the host to `[in, out]` on the device, in parts when `split`.
    pub(super) fn new(t: HostTensor, device: &Device, split: bool) -> Self {
        let (rows, cols) = (t.shape[0], t.shape[1]);
        // An even number of parts of whole 16-column groups, so two threads share them evenly.
        let n = if split && rows > PART_COLUMNS && rayon::current_num_threads() > 1 {
            rows.div_ceil(PART_COLUMNS).next_multiple_of(2)
        } else {
            1
        };
        let width = rows.div_ceil(n).next_multiple_of(16).min(rows);
        let parts = (0..rows)
            .step_by(width)
            .map(|r0| {
                let w = width.min(rows - r0);
                let mut out = vec![0.0f32; w * cols];
                for r in 0..w {
                    for c in 0..cols {
                        out[c * w + r] = t.data[(r0 + r) * cols + c];
                    }
                }
                Tensor::from_data(TensorData::new(out, [cols, w]), (device, DType::F32))
            })
            .collect();
        Self { parts }
    }

    /// `self + delta` (`delta`: `[in, out]`).
    pub(super) fn add(&mut self, delta: Tensor<2>) {
        let mut at = 0;
        for p in &mut self.parts {
            let w = p.dims()[1];
            *p = p.clone() + delta.clone().narrow(1, at, w);
            at += w;
        }
    }
}

/// `x_i @ w_i` for each pair; the parts of every split weight run as one parallel batch.
pub(super) fn dense_products(pairs: &[(&Tensor<2>, &Dense)]) -> Vec<Tensor<2>> {
    if pairs.iter().all(|(_, w)| w.parts.len() == 1) {
        return pairs
            .iter()
            .map(|(x, w)| (*x).clone().matmul(w.parts[0].clone()))
            .collect();
    }
    let tasks: Vec<(usize, &Tensor<2>, &Tensor<2>)> = pairs
        .iter()
        .enumerate()
        .flat_map(|(i, (x, w))| w.parts.iter().map(move |p| (i, *x, p)))
        .collect();
    let mut done: Vec<(usize, Tensor<2>)> = tasks
        .into_par_iter()
        .map(|(i, x, p)| (i, x.clone().matmul(p.clone())))
        .collect();
    let mut out = Vec::with_capacity(pairs.len());
    for i in 0..pairs.len() {
        let mine: Vec<Tensor<2>> = done
            .extract_if(.., |(j, _)| *j == i)
            .map(|(_, t)| t)
            .collect();
        out.push(if mine.len() == 1 {
            mine.into_iter().next().expect("one part")
        } else {
            Tensor::cat(mine, 1)
        });
    }
    out
}
