//! The exact rung of the approximation ladder: self-influence through the (damped) Hessian of the
//! reward model's training loss.
//!
//! The influence variant's gradient term is `G_H(y) = gᵀ (η H_λ)⁻¹ g`, `g = ∇_φ r(y)`, so that
//! `H⁻¹ = η I` gives `||g||²` (relaxed FPO) back.
//!
//! - Linear toy: the RM's loss at a step is `(u - w.y)² + (wd / 2η) ||w||²` on the one sample
//!   it trains on, so `H = 2 y yᵀ + (wd/η + λ) I` and, by Sherman-Morrison,
//!   `G_H = ||y||² / (η (c + 2 ||y||²))`, `c = wd/η + λ`.
//! - Neural-network toy: the Gauss-Newton Hessian of the buffer's MSE plus Adam's L2 decay,
//!   `H = (2/n) Σ g_i g_iᵀ + (wd + λ) I`, applied exactly through the Woodbury identity:
//!   `gᵀ H⁻¹ g = (||g||² - kᵀ K⁻¹ k) / c` with `k_i = <g, g_i>`, `K = (n c / 2) I + [<g_i, g_j>]`
//!   (an `n x n` system, `n` the buffer size, instead of one over the ~1400 parameters). The
//!   inner products come from [`super::mlp::grad_inner`] in `O(h + d)` each.

use super::mlp::{Activations, GradFeatures, KernelParts, Mlp, grad_inner};

/// `G_H` of the linear toy and its gradient (into `out`, when given).
pub fn linear_grad_term(
    y: &[f64],
    eta: f64,
    weight_decay: f64,
    damping: f64,
    out: Option<&mut [f64]>,
) -> f64 {
    let c = weight_decay / eta + damping;
    let nsq: f64 = y.iter().map(|v| v * v).sum();
    let denom = c + 2.0 * nsq;
    if let Some(out) = out {
        let k = 2.0 * c / (eta * denom * denom);
        for (o, v) in out.iter_mut().zip(y) {
            *o = k * v;
        }
    }
    nsq / (eta * denom)
}

/// The damped Gauss-Newton Hessian of the neural-network toy's RM loss over a buffer.
#[derive(Debug, Clone)]
pub struct GaussNewton {
    features: Vec<GradFeatures>,
    /// Cholesky factor of `K` (row-major lower triangle).
    chol: Vec<f64>,
    c: f64,
    eta: f64,
}

impl GaussNewton {
    /// Builds `H = (2/n) Σ g_i g_iᵀ + (weight_decay + damping) I` from the buffer's gradient
    /// factors (at the RM's current parameters).
    pub fn new(features: Vec<GradFeatures>, weight_decay: f64, damping: f64, eta: f64) -> Self {
        gauss_newton_new(features, weight_decay, damping, eta)
    }

    /// The buffer's gradient factors it was built from, in buffer order.
    pub fn features(&self) -> &[GradFeatures] {
        &self.features
    }

    /// `G_H(y) = gᵀ (η H)⁻¹ g` after `rm.forward(y, act)`, and its gradient into `out` (when
    /// given), the buffer held fixed.
    pub fn grad_term(
        &self,
        rm: &Mlp,
        y: &[f64],
        act: &mut Activations,
        out: Option<&mut [f64]>,
    ) -> f64 {
        gauss_newton_grad_term(self, rm, y, act, out)
    }
}

/// Lower Cholesky factor of a symmetric positive-definite `n x n` matrix (row-major).
#[inline(always)]
fn cholesky(mut a: Vec<f64>, n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
        for k in j + 1..n {
            a[j * n + k] = 0.0;
        }
    }
    Some(a)
}

/// Solves `L Lᵀ x = b` in place.
#[inline(always)]
fn solve(l: &[f64], n: usize, b: &mut [f64]) {
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * n + k] * b[k];
        }
        b[i] = s / l[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= l[k * n + i] * b[k];
        }
        b[i] = s / l[i * n + i];
    }
}

#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn gauss_newton_new(
    features: Vec<GradFeatures>,
    weight_decay: f64,
    damping: f64,
    eta: f64,
) -> GaussNewton {
    let n = features.len();
    let c = weight_decay + damping;
    let mut k = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let v = grad_inner(&features[i], &features[j]);
            k[i * n + j] = v;
            k[j * n + i] = v;
        }
        k[i * n + i] += n as f64 * c / 2.0;
    }
    let chol = cholesky(k, n).expect("K = (n c / 2) I + Gram is positive definite for c > 0");
    GaussNewton {
        features,
        chol,
        c,
        eta,
    }
}

#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn gauss_newton_grad_term(
    this: &GaussNewton,
    rm: &Mlp,
    y: &[f64],
    act: &mut Activations,
    out: Option<&mut [f64]>,
) -> f64 {
    let n = this.features.len();
    let own = act.features(y);
    let own_parts = KernelParts::of(&own, &own);
    let parts: Vec<KernelParts> = this
        .features
        .iter()
        .map(|f| KernelParts::of(&own, f))
        .collect();
    let p = own_parts.value();
    let k: Vec<f64> = parts.iter().map(KernelParts::value).collect();
    let mut beta = k.clone();
    solve(&this.chol, n, &mut beta);
    let scale = 1.0 / (this.eta * this.c);
    let value = scale * (p - k.iter().zip(&beta).map(|(a, b)| a * b).sum::<f64>());
    if let Some(out) = out {
        // ∇ (P - kᵀ K⁻¹ k) = ∇P - 2 Σ β_i ∇k_i = ∇_y Σ α_i k(y, y_i) with α = (2, -2β).
        let terms: Vec<(&GradFeatures, f64, KernelParts)> =
            std::iter::once((&own, 2.0 * scale, own_parts))
                .chain(
                    this.features
                        .iter()
                        .zip(&beta)
                        .zip(&parts)
                        .map(|((f, b), &k)| (f, -2.0 * scale * b, k)),
                )
                .collect();
        rm.grad_inner_input_gradient_with(act, &terms, out);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toy::central_difference;
    use crate::toy::mlp::MlpShape;

    fn dense_h(m: &Mlp, ys: &[Vec<f64>], c: f64) -> Vec<Vec<f64>> {
        let p = m.params().len();
        let mut h = vec![vec![0.0; p]; p];
        for y in ys {
            let mut act = Activations::new(m.shape());
            m.forward(y, &mut act);
            let mut g = vec![0.0; p];
            m.add_param_gradient(y, &act, 1.0, &mut g);
            for i in 0..p {
                for j in 0..p {
                    h[i][j] += 2.0 / ys.len() as f64 * g[i] * g[j];
                }
            }
        }
        for (i, row) in h.iter_mut().enumerate() {
            row[i] += c;
        }
        h
    }

    #[test]
    fn woodbury_matches_a_dense_solve_and_its_gradient_matches_fd() {
        let shape = MlpShape {
            input: 3,
            hidden: 4,
        };
        let m = Mlp::init(shape, 0.8, &mut crate::toy::rng(2, 0));
        let ys: Vec<Vec<f64>> = (0..5)
            .map(|i| vec![0.3 * i as f64, -0.2, 0.1 * i as f64 - 0.4])
            .collect();
        let feats = |m: &Mlp| -> Vec<GradFeatures> {
            ys.iter()
                .map(|y| {
                    let mut a = Activations::new(shape);
                    m.forward(y, &mut a);
                    a.features(y)
                })
                .collect()
        };
        let (wd, damping, eta) = (1e-3, 0.05, 0.01);
        let gn = GaussNewton::new(feats(&m), wd, damping, eta);
        let y = vec![0.7, -0.5, 0.25];
        let mut act = Activations::new(shape);
        m.forward(&y, &mut act);
        let mut grad = vec![0.0; 3];
        let value = gn.grad_term(&m, &y, &mut act, Some(&mut grad));

        // Dense reference: solve H x = g with a full Cholesky over the parameters.
        let h = dense_h(&m, &ys, wd + damping);
        let p = m.params().len();
        let mut g = vec![0.0; p];
        m.add_param_gradient(&y, &act, 1.0, &mut g);
        let flat: Vec<f64> = h.into_iter().flatten().collect();
        let l = cholesky(flat, p).unwrap();
        let mut x = g.clone();
        solve(&l, p, &mut x);
        let dense = g.iter().zip(&x).map(|(a, b)| a * b).sum::<f64>() / eta;
        assert!(
            (value - dense).abs() < 1e-9 * dense.abs(),
            "{value} vs {dense}"
        );

        let f = |z: &[f64]| {
            let mut a = Activations::new(shape);
            m.forward(z, &mut a);
            gn.grad_term(&m, z, &mut a, None)
        };
        for i in 0..3 {
            let fd = central_difference(f, &y, i, 1e-5);
            assert!(
                (fd - grad[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                "coord {i}: {fd} vs {}",
                grad[i]
            );
        }
    }

    #[test]
    fn linear_grad_term_matches_sherman_morrison_and_fd() {
        let y = [0.3, -1.2, 0.8];
        let (eta, wd, damping) = (0.005, 1e-4, 0.01);
        let mut g = [0.0; 3];
        let v = linear_grad_term(&y, eta, wd, damping, Some(&mut g));
        // Dense: yᵀ (η (2 y yᵀ + c I))⁻¹ y.
        let c = wd / eta + damping;
        let mut h: Vec<f64> = (0..9).map(|k| 2.0 * y[k / 3] * y[k % 3]).collect();
        for i in 0..3 {
            h[i * 3 + i] += c;
        }
        let l = cholesky(h, 3).unwrap();
        let mut x = y.to_vec();
        solve(&l, 3, &mut x);
        let dense = y.iter().zip(&x).map(|(a, b)| a * b).sum::<f64>() / eta;
        assert!((v - dense).abs() < 1e-12 * dense);
        for i in 0..3 {
            let fd =
                central_difference(|z| linear_grad_term(z, eta, wd, damping, None), &y, i, 1e-6);
            assert!((fd - g[i]).abs() < 1e-6 * (1.0 + fd.abs()));
        }
    }
}
