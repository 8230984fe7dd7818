//! The neural-network toy's reward model, `d -> h -> softplus -> h -> softplus -> 1`, as burn
//! tensor ops. burn's autodiff is first order only, so the squared norm of the parameter gradient
//! is written out as tracked ops (softplus' = sigmoid): one backward of it gives the mixed second
//! derivative `∇_y ||∇_φ r(y)||²` that the FPO penalties need.

use burn::tensor::{DType, Device, Tensor, TensorData, activation};

/// The MLP's weights as tensors (row-major `[out, in]` matrices).
#[derive(Debug, Clone)]
pub struct ToyMlp {
    /// `[h, d]`.
    pub w1: Tensor<2>,
    /// `[h]`.
    pub b1: Tensor<1>,
    /// `[h, h]`.
    pub w2: Tensor<2>,
    /// `[h]`.
    pub b2: Tensor<1>,
    /// `[h]`.
    pub w3: Tensor<1>,
    /// `[1]`.
    pub b3: Tensor<1>,
}

/// Intermediate values of one forward pass of one input.
#[derive(Debug, Clone)]
pub struct Forward {
    /// `r(y)`, shape `[1]`.
    pub reward: Tensor<1>,
    /// `softplus(h1)`, `[h]`.
    pub a1: Tensor<1>,
    /// `σ(h1)`, `[h]`.
    pub s1: Tensor<1>,
    /// `softplus(h2)`, `[h]`.
    pub a2: Tensor<1>,
    /// `σ(h2)`, `[h]`.
    pub s2: Tensor<1>,
}

fn matvec(m: Tensor<2>, v: Tensor<1>) -> Tensor<1> {
    let n = v.dims()[0];
    m.matmul(v.reshape([n, 1])).flatten(0, 1)
}

impl ToyMlp {
    /// Builds the tensors from the flat `f64` layout of `fpo::toy::mlp` (`W1, b1, W2, b2, w3,
    /// b3`), on `device`, as `dtype` (`F64` on the CPU backends; GPU backends take `F32`).
    pub fn from_flat(
        params: &[f64],
        input: usize,
        hidden: usize,
        device: &Device,
        dtype: DType,
    ) -> Self {
        let (d, h) = (input, hidden);
        let mut at = 0;
        let mut take = |n: usize| {
            let s = params[at..at + n].to_vec();
            at += n;
            s
        };
        let t2 = |v: Vec<f64>, shape: [usize; 2]| {
            Tensor::<2>::from_data(TensorData::new(v, shape), (device, dtype))
        };
        let t1 = |v: Vec<f64>| {
            let n = v.len();
            Tensor::<1>::from_data(TensorData::new(v, [n]), (device, dtype))
        };
        Self {
            w1: t2(take(h * d), [h, d]),
            b1: t1(take(h)),
            w2: t2(take(h * h), [h, h]),
            b2: t1(take(h)),
            w3: t1(take(h)),
            b3: t1(take(1)),
        }
    }

    /// Forward pass of one input `y` (`[d]`).
    pub fn forward(&self, y: Tensor<1>) -> Forward {
        let h1 = matvec(self.w1.clone(), y) + self.b1.clone();
        let a1 = activation::softplus(h1.clone(), 1.0);
        let s1 = activation::sigmoid(h1);
        let h2 = matvec(self.w2.clone(), a1.clone()) + self.b2.clone();
        let a2 = activation::softplus(h2.clone(), 1.0);
        let s2 = activation::sigmoid(h2);
        let reward = (self.w3.clone() * a2.clone()).sum() + self.b3.clone();
        Forward {
            reward,
            a1,
            s1,
            a2,
            s2,
        }
    }

    /// `||∇_φ r(y)||²` as tracked tensor ops of `y`:
    /// `||a2||² + 1 + ||δ2||² (||a1||² + 1) + ||δ1||² (||y||² + 1)`, `δ2 = w3 ⊙ s2`,
    /// `δ1 = (W2ᵀ δ2) ⊙ s1`.
    pub fn grad_norm_sq(&self, y: Tensor<1>) -> Tensor<1> {
        let f = self.forward(y.clone());
        let d2 = self.w3.clone() * f.s2;
        let d1 = matvec(self.w2.clone().transpose(), d2.clone()) * f.s1;
        let sq = |t: Tensor<1>| (t.clone() * t).sum();
        sq(f.a2) + 1.0 + sq(d2) * (sq(f.a1) + 1.0) + sq(d1) * (sq(y) + 1.0)
    }
}
