//! The neural-network toy's reward model, `d -> h -> softplus -> h -> softplus -> 1`, as burn
//! tensor ops, for a batch of independent MLPs (one per seed of a toy run): the tensor programs
//! of `fpo::toy::tensor` and the reference the hand-written `f64` version is checked against.
//!
//! burn's autodiff is first order only, so the squared norm of the parameter gradient is written
//! out as tracked ops (softplus' = sigmoid): one backward of it gives the mixed second derivative
//! `∇_y ||∇_φ r(y)||²` that the FPO penalties need.

use burn::tensor::{DType, Device, Tensor, TensorData, activation};

/// A batch of `n` MLPs. Inputs are `[n, k, d]` (`k` inputs per MLP); the weight matrices are held
/// transposed (`[in, out]`), so that a layer is one batched `x · Wᵀ`.
#[derive(Debug, Clone)]
pub struct ToyMlps {
    /// `W1ᵀ`, `[n, d, h]`.
    pub w1t: Tensor<3>,
    /// `[n, 1, h]`.
    pub b1: Tensor<3>,
    /// `W2ᵀ`, `[n, h, h]`.
    pub w2t: Tensor<3>,
    /// `[n, 1, h]`.
    pub b2: Tensor<3>,
    /// `[n, h, 1]`.
    pub w3: Tensor<3>,
    /// `[n, 1, 1]`.
    pub b3: Tensor<3>,
}

/// Intermediate values of one forward pass, each `[n, k, h]` (the reward `[n, k, 1]`).
#[derive(Debug, Clone)]
pub struct Forward {
    /// `r(y)`.
    pub reward: Tensor<3>,
    /// `softplus(h1)`.
    pub a1: Tensor<3>,
    /// `σ(h1)`.
    pub s1: Tensor<3>,
    /// `softplus(h2)`.
    pub a2: Tensor<3>,
    /// `σ(h2)`.
    pub s2: Tensor<3>,
}

/// A row-major `[rows, cols]` matrix's entries in `[cols, rows]` order.
fn transposed(m: &[f64], rows: usize, cols: usize) -> impl Iterator<Item = f64> + '_ {
    (0..cols).flat_map(move |c| (0..rows).map(move |r| m[r * cols + c]))
}

/// A tensor's values as `f64` on the host, row-major.
pub fn host_f64<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .try_into_vec()
        .expect("f64 data after convert")
}

/// Squared norm over the last axis, kept: `[.., m] -> [.., 1]`.
pub fn sq_norm<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    (x.clone() * x).sum_dim(D - 1)
}

impl ToyMlps {
    /// The MLPs of `fpo::toy::mlp`'s flat layouts (`W1 [h x d], b1, W2 [h x h], b2, w3, b3`,
    /// row-major), one per entry of `flats`, on `device` as `dtype` (`F64` on the CPU backends;
    /// GPU backends take `F32`).
    pub fn from_flat(
        flats: &[&[f64]],
        input: usize,
        hidden: usize,
        device: &Device,
        dtype: DType,
    ) -> Self {
        let (n, d, h) = (flats.len(), input, hidden);
        let mut parts: [Vec<f64>; 6] = Default::default();
        for p in flats {
            let (w1, rest) = p.split_at(h * d);
            let (b1, rest) = rest.split_at(h);
            let (w2, rest) = rest.split_at(h * h);
            let (b2, rest) = rest.split_at(h);
            let (w3, b3) = rest.split_at(h);
            parts[0].extend(transposed(w1, h, d));
            parts[1].extend_from_slice(b1);
            parts[2].extend(transposed(w2, h, h));
            parts[3].extend_from_slice(b2);
            parts[4].extend_from_slice(w3);
            parts[5].extend_from_slice(&b3[..1]);
        }
        let [w1t, b1, w2t, b2, w3, b3] = parts;
        let t = |v: Vec<f64>, shape: [usize; 3]| {
            Tensor::<3>::from_data(TensorData::new(v, shape), (device, dtype))
        };
        Self {
            w1t: t(w1t, [n, d, h]),
            b1: t(b1, [n, 1, h]),
            w2t: t(w2t, [n, h, h]),
            b2: t(b2, [n, 1, h]),
            w3: t(w3, [n, h, 1]),
            b3: t(b3, [n, 1, 1]),
        }
    }

    /// The inverse of [`Self::from_flat`]: each MLP's parameters in the flat layout. Also reads
    /// gradients back: `ToyMlps::from_params(grads).to_flat()`.
    pub fn to_flat(&self) -> Vec<Vec<f64>> {
        let [n, d, h] = self.w1t.dims();
        let [w1t, b1, w2t, b2, w3, b3] = self.params().map(host_f64);
        (0..n)
            .map(|i| {
                let mut p = Vec::with_capacity(h * d + h * h + 3 * h + 1);
                p.extend(transposed(&w1t[i * d * h..(i + 1) * d * h], d, h));
                p.extend_from_slice(&b1[i * h..(i + 1) * h]);
                p.extend(transposed(&w2t[i * h * h..(i + 1) * h * h], h, h));
                p.extend_from_slice(&b2[i * h..(i + 1) * h]);
                p.extend_from_slice(&w3[i * h..(i + 1) * h]);
                p.push(b3[i]);
                p
            })
            .collect()
    }

    /// The six parameter tensors, in layout order.
    pub fn params(&self) -> [Tensor<3>; 6] {
        [
            self.w1t.clone(),
            self.b1.clone(),
            self.w2t.clone(),
            self.b2.clone(),
            self.w3.clone(),
            self.b3.clone(),
        ]
    }

    /// MLPs from six parameter tensors in layout order.
    pub fn from_params([w1t, b1, w2t, b2, w3, b3]: [Tensor<3>; 6]) -> Self {
        Self {
            w1t,
            b1,
            w2t,
            b2,
            w3,
            b3,
        }
    }

    /// Forward pass of inputs `x` (`[n, k, d]`).
    pub fn forward(&self, x: Tensor<3>) -> Forward {
        let h1 = x.matmul(self.w1t.clone()) + self.b1.clone();
        let a1 = activation::softplus(h1.clone(), 1.0);
        let s1 = activation::sigmoid(h1);
        let h2 = a1.clone().matmul(self.w2t.clone()) + self.b2.clone();
        let a2 = activation::softplus(h2.clone(), 1.0);
        let s2 = activation::sigmoid(h2);
        let reward = a2.clone().matmul(self.w3.clone()) + self.b3.clone();
        Forward {
            reward,
            a1,
            s1,
            a2,
            s2,
        }
    }

    /// `||∇_φ r(x)||² = ||a2||² + 1 + ||δ2||² (||a1||² + 1) + ||δ1||² (||x||² + 1)`, with
    /// `δ2 = w3 ⊙ s2` and `δ1 = (W2ᵀ δ2) ⊙ s1`, as tracked ops of `x` given its forward pass:
    /// `[n, k, 1]`.
    pub fn grad_norm_sq(&self, x: Tensor<3>, pass: &Forward) -> Tensor<3> {
        let d2 = pass.s2.clone() * self.w3.clone().swap_dims(1, 2);
        let d1 = d2.clone().matmul(self.w2t.clone().swap_dims(1, 2)) * pass.s1.clone();
        sq_norm(pass.a2.clone())
            + 1.0
            + sq_norm(d2) * (sq_norm(pass.a1.clone()) + 1.0)
            + sq_norm(d1) * (sq_norm(x) + 1.0)
    }
}
