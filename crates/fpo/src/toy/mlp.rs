//! The neural-network toy's reward model, `d -> h -> softplus -> h -> softplus -> 1`, in plain
//! `f64` with every derivative the FPO penalties need written out by hand.
//!
//! Parameters live in one flat vector (layout: `W1 [h x d]`, `b1 [h]`, `W2 [h x h]`, `b2 [h]`,
//! `w3 [h]`, `b3`), row-major, so that the optimiser and the gradient norms see one slice.
//! For an input `y`:
//!
//! ```text
//! h1 = W1 y + b1, a1 = sp(h1), s1 = σ(h1)
//! h2 = W2 a1 + b2, a2 = sp(h2), s2 = σ(h2)
//! r  = w3.a2 + b3
//! δ2 = w3 ⊙ s2,  u = W2ᵀ δ2,  δ1 = u ⊙ s1,  ∇_y r = W1ᵀ δ1
//! ∇_φ r = (δ1 yᵀ, δ1, δ2 a1ᵀ, δ2, a2, 1)
//! P = ||∇_φ r||² = ||a2||² + 1 + ||δ2||² (||a1||² + 1) + ||δ1||² (||y||² + 1)
//! ```
//!
//! `∇_y P` (a mixed second derivative of the RM) is one reverse pass through the expression for
//! `P` above; see [`Mlp::grad_norm_sq_input_gradient`].

/// Layer sizes of the MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlpShape {
    /// Input dimension.
    pub input: usize,
    /// Width of both hidden layers.
    pub hidden: usize,
}

impl MlpShape {
    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        let (d, h) = (self.input, self.hidden);
        h * d + h + h * h + h + h + 1
    }

    fn offsets(&self) -> Offsets {
        let (d, h) = (self.input, self.hidden);
        let w1 = 0;
        let b1 = w1 + h * d;
        let w2 = b1 + h;
        let b2 = w2 + h * h;
        let w3 = b2 + h;
        let b3 = w3 + h;
        Offsets {
            w1,
            b1,
            w2,
            b2,
            w3,
            b3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Offsets {
    w1: usize,
    b1: usize,
    w2: usize,
    b2: usize,
    w3: usize,
    b3: usize,
}

/// The MLP's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    shape: MlpShape,
    off: Offsets,
    params: Vec<f64>,
    /// Column-major copies of `W1` and `W2` (`[d x h]`, `[h x h]`), so that the forward pass is
    /// a sum of contiguous `axpy`s (which vectorise) rather than short dot products.
    w1t: Vec<f64>,
    w2t: Vec<f64>,
}

/// Activations of one forward pass, kept for the backward passes.
#[derive(Debug, Clone)]
pub struct Activations {
    a1: Vec<f64>,
    s1: Vec<f64>,
    a2: Vec<f64>,
    s2: Vec<f64>,
    d2: Vec<f64>,
    u: Vec<f64>,
    d1: Vec<f64>,
    // Scratch of the second-order pass.
    g1: Vec<f64>,
    g2: Vec<f64>,
    seeds: Vec<f64>,
    /// The reward of the last forward pass.
    pub reward: f64,
}

impl Activations {
    /// Scratch space for an MLP of the given shape.
    pub fn new(shape: MlpShape) -> Self {
        let h = shape.hidden;
        let z = || vec![0.0; h];
        Self {
            a1: z(),
            s1: z(),
            a2: z(),
            s2: z(),
            d2: z(),
            u: z(),
            d1: z(),
            g1: z(),
            g2: z(),
            seeds: Vec::with_capacity(4 * h),
            reward: 0.0,
        }
    }

    /// What `∇_φ r(y)` is made of, for the gradient kernel (after a forward pass on `y`).
    pub fn features(&self, y: &[f64]) -> GradFeatures {
        GradFeatures {
            y: y.to_vec(),
            a1: self.a1.clone(),
            a2: self.a2.clone(),
            d1: self.d1.clone(),
            d2: self.d2.clone(),
        }
    }
}

/// The factors of one input's parameter gradient, `∇_φ r(y) = (δ1 yᵀ, δ1, δ2 a1ᵀ, δ2, a2, 1)`.
#[derive(Debug, Clone, PartialEq)]
pub struct GradFeatures {
    /// The input.
    pub y: Vec<f64>,
    /// First hidden activation.
    pub a1: Vec<f64>,
    /// Second hidden activation.
    pub a2: Vec<f64>,
    /// Backpropagated signal at the first hidden layer.
    pub d1: Vec<f64>,
    /// Backpropagated signal at the second hidden layer.
    pub d2: Vec<f64>,
}

/// The gradient kernel `k(y, y') = <∇_φ r(y), ∇_φ r(y')>` in `O(h + d)`, from the factors of
/// both gradients (the full gradients have `h d + h² + 3h + 1` entries).
#[inline(always)]
pub fn grad_inner(a: &GradFeatures, b: &GradFeatures) -> f64 {
    KernelParts::of(a, b).value()
}

/// The dot products the gradient kernel is made of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelParts {
    /// `a2.a2'`.
    pub a2: f64,
    /// `δ2.δ2'`.
    pub d2: f64,
    /// `a1.a1'`.
    pub a1: f64,
    /// `δ1.δ1'`.
    pub d1: f64,
    /// `y.y'`.
    pub y: f64,
}

impl KernelParts {
    /// The parts of `k(a, b)`.
    #[inline(always)]
    pub fn of(a: &GradFeatures, b: &GradFeatures) -> Self {
        Self {
            a2: dot(&a.a2, &b.a2),
            d2: dot(&a.d2, &b.d2),
            a1: dot(&a.a1, &b.a1),
            d1: dot(&a.d1, &b.d1),
            y: dot(&a.y, &b.y),
        }
    }

    /// `k = a2.a2' + 1 + (δ2.δ2')(a1.a1' + 1) + (δ1.δ1')(y.y' + 1)`.
    #[inline]
    pub fn value(&self) -> f64 {
        self.a2 + 1.0 + self.d2 * (self.a1 + 1.0) + self.d1 * (self.y + 1.0)
    }
}

impl Mlp {
    /// An MLP with the given flat parameters.
    pub fn from_params(shape: MlpShape, params: Vec<f64>) -> Self {
        assert_eq!(
            params.len(),
            shape.num_params(),
            "parameter count of {shape:?}"
        );
        let mut mlp = Self {
            shape,
            off: shape.offsets(),
            params,
            w1t: Vec::new(),
            w2t: Vec::new(),
        };
        mlp.refresh_transposes();
        mlp
    }

    /// The flat parameter vector (layout in the module docs).
    pub fn params(&self) -> &[f64] {
        &self.params
    }

    /// Changes the parameters in place (an optimiser step).
    pub fn update(&mut self, f: impl FnOnce(&mut [f64])) {
        f(&mut self.params);
        self.refresh_transposes();
    }

    fn refresh_transposes(&mut self) {
        let (d, h) = (self.shape.input, self.shape.hidden);
        let o = self.off;
        let transpose = |m: &[f64], rows: usize, cols: usize| {
            let mut t = vec![0.0; rows * cols];
            for i in 0..rows {
                for j in 0..cols {
                    t[j * rows + i] = m[i * cols + j];
                }
            }
            t
        };
        self.w1t = transpose(&self.params[o.w1..o.b1], h, d);
        self.w2t = transpose(&self.params[o.w2..o.b2], h, h);
    }

    /// Weights ~ N(0, sd²), biases 0 (the authors' initialisation).
    pub fn init(shape: MlpShape, sd: f64, rng: &mut impl rand::Rng) -> Self {
        use rand_distr::{Distribution, Normal};
        let normal = Normal::new(0.0, sd).expect("sd >= 0");
        let o = shape.offsets();
        let mut params = vec![0.0; shape.num_params()];
        for range in [o.w1..o.b1, o.w2..o.b2, o.w3..o.b3] {
            for p in &mut params[range] {
                *p = normal.sample(rng);
            }
        }
        Self::from_params(shape, params)
    }

    /// The layer sizes.
    pub fn shape(&self) -> MlpShape {
        self.shape
    }

    fn offsets(&self) -> Offsets {
        self.off
    }

    /// Forward pass: returns `r(y)` and fills `act` (including `δ1`, `δ2` of the backward pass,
    /// which every caller needs).
    pub fn forward(&self, y: &[f64], act: &mut Activations) -> f64 {
        mlp_forward(self, y, act)
    }

    /// `∇_y r` after [`Self::forward`].
    pub fn input_gradient(&self, act: &Activations, out: &mut [f64]) {
        let (d, h) = (self.shape.input, self.shape.hidden);
        let w1 = &self.params[self.offsets().w1..self.offsets().b1];
        out.fill(0.0);
        for i in 0..h {
            axpy(act.d1[i], &w1[i * d..(i + 1) * d], out);
        }
    }

    /// `P = ||∇_φ r(y)||²` after [`Self::forward`] on `y`.
    pub fn grad_norm_sq(&self, y: &[f64], act: &Activations) -> f64 {
        let nsq = |v: &[f64]| dot(v, v);
        nsq(&act.a2) + 1.0 + nsq(&act.d2) * (nsq(&act.a1) + 1.0) + nsq(&act.d1) * (nsq(y) + 1.0)
    }

    /// `∇_y P`, the mixed second derivative the FPO penalties need, after [`Self::forward`] on
    /// `y`. `P(y) = k(y, y)` for the gradient kernel `k` of [`grad_inner`], so
    /// `∇P = 2 ∇_y k(y, y')|_{y' = y}`: one reverse pass of [`Self::grad_inner_input_gradient`].
    pub fn grad_norm_sq_input_gradient(&self, y: &[f64], act: &mut Activations, out: &mut [f64]) {
        let own = act.features(y);
        self.grad_inner_input_gradient(y, act, &[(&own, 2.0)], out);
    }

    /// `∇_y Σ_i α_i k(y, y_i)`, the kernel `k(y, y') = <∇_φ r(y), ∇_φ r(y')>` of
    /// [`grad_inner`] with the `y_i` held fixed, after [`Self::forward`] on `y`.
    ///
    /// With `k(y, y') = a2.a2' + 1 + (δ2.δ2')(a1.a1' + 1) + (δ1.δ1')(y.y' + 1)`, the seeds of
    /// the reverse pass are the partial derivatives with respect to `a2, δ2, a1, δ1, y`; they are
    /// then pushed back through `δ1 = (W2ᵀ δ2) ⊙ σ(h1)`, `δ2 = w3 ⊙ σ(h2)` and the forward pass.
    pub fn grad_inner_input_gradient(
        &self,
        y: &[f64],
        act: &mut Activations,
        terms: &[(&GradFeatures, f64)],
        out: &mut [f64],
    ) {
        let own = act.features(y);
        let with_parts: Vec<(&GradFeatures, f64, KernelParts)> = terms
            .iter()
            .map(|&(f, al)| (f, al, KernelParts::of(&own, f)))
            .collect();
        self.grad_inner_input_gradient_with(act, &with_parts, out);
    }

    /// [`Self::grad_inner_input_gradient`] with the kernel's dot products `KernelParts::of(y, y_i)`
    /// already computed (callers that also need `k(y, y_i)` compute them once).
    pub fn grad_inner_input_gradient_with(
        &self,
        act: &mut Activations,
        terms: &[(&GradFeatures, f64, KernelParts)],
        out: &mut [f64],
    ) {
        mlp_grad_inner_input_gradient_with(self, act, terms, out)
    }

    /// Adds `scale * ∇_φ r(y)` to `grad` (same flat layout as the parameters), after
    /// [`Self::forward`] on `y`.
    pub fn add_param_gradient(&self, y: &[f64], act: &Activations, scale: f64, grad: &mut [f64]) {
        let f = Factors {
            y,
            a1: &act.a1,
            a2: &act.a2,
            d1: &act.d1,
            d2: &act.d2,
        };
        mlp_add_param_gradient(self, f, scale, grad)
    }

    /// [`Self::add_param_gradient`] from the factors of an earlier forward pass at these
    /// parameters (bit-identical to running the pass again).
    pub fn add_param_gradient_of(&self, f: &GradFeatures, scale: f64, grad: &mut [f64]) {
        let f = Factors {
            y: &f.y,
            a1: &f.a1,
            a2: &f.a2,
            d1: &f.d1,
            d2: &f.d2,
        };
        mlp_add_param_gradient(self, f, scale, grad)
    }

    /// `r(y)` from the factors of an earlier forward pass at these parameters (bit-identical to
    /// [`Self::forward`]'s).
    pub fn reward_of(&self, f: &GradFeatures) -> f64 {
        let o = self.offsets();
        self.params[o.b3] + dot(&self.params[o.w3..o.b3], &f.a2)
    }
}

/// `torch.optim.Adam` with L2 weight decay added to the gradient (not AdamW).
#[derive(Debug, Clone, PartialEq)]
pub struct Adam {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// L2 weight decay, added to the gradient.
    pub weight_decay: f64,
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl Adam {
    /// An optimiser for `n` parameters with zero moments.
    pub fn new(n: usize, lr: f64, beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> Self {
        Self {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    /// One step, in `torch.optim.Adam`'s order of operations.
    pub fn step(&mut self, params: &mut [f64], grad: &[f64]) {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t);
        let bc2 = 1.0 - self.beta2.powi(self.t);
        let step_size = self.lr / bc1;
        let bc2_sqrt = bc2.sqrt();
        for (((p, g), m), v) in params
            .iter_mut()
            .zip(grad)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            let g = g + self.weight_decay * *p;
            *m = self.beta1 * *m + (1.0 - self.beta1) * g;
            *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
            let denom = v.sqrt() / bc2_sqrt + self.eps;
            *p -= step_size * *m / denom;
        }
    }
}

/// `log(1 + e^x)`, stable for every `x`.
pub fn softplus(x: f64) -> f64 {
    softplus_and_sigmoid(x).0
}

/// `(softplus(x), σ(x))` from one exponential, with the branch-free polynomial kernels below
/// (within a few ulp of libm's `exp` and `ln_1p`; see the tests), so that a loop over a layer
/// vectorises instead of calling libm twice per unit.
#[inline(always)]
pub fn softplus_and_sigmoid(x: f64) -> (f64, f64) {
    let e = exp_non_positive(-x.abs());
    let sp = x.max(0.0) + ln_1p_unit(e);
    let inv = 1.0 / (1.0 + e);
    (sp, if x >= 0.0 { inv } else { e * inv })
}

/// Applies [`softplus_and_sigmoid`] to the pre-activations in `a` (in place) and writes `σ` to
/// `s`. Always inlined, so that it is compiled with the vector width of the multiversioned
/// kernel that calls it.
#[inline(always)]
fn activate(a: &mut [f64], s: &mut [f64]) {
    for (ai, si) in a.iter_mut().zip(s.iter_mut()) {
        (*ai, *si) = softplus_and_sigmoid(*ai);
    }
}

/// `e^x` for `x <= 0`: Cody-Waite reduction `x = n ln2 + r`, `|r| <= ln2 / 2`, a degree-13
/// Taylor polynomial (truncation < 5e-18), and `2^n` built from the exponent bits. Inputs below
/// -708 are clamped (the result, < 4e-308, is then slightly too large, which no caller sees).
#[inline(always)]
fn exp_non_positive(x: f64) -> f64 {
    const ROUND: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52: adding it rounds to an integer
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let x = x.max(-708.0);
    let t = x * std::f64::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 6_227_020_800.0; // 1/13!
    for k in (0..13).rev() {
        p = p * r + 1.0 / FACT[k];
    }
    // t's low mantissa bits hold n (two's complement); 2^n = (n + 1023) << 52.
    let bits = t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(1023) << 52;
    p * f64::from_bits(bits)
}

/// `k!` for `k = 0..=12`.
const FACT: [f64; 13] = [
    1.0,
    1.0,
    2.0,
    6.0,
    24.0,
    120.0,
    720.0,
    5040.0,
    40320.0,
    362_880.0,
    3_628_800.0,
    39_916_800.0,
    479_001_600.0,
];

/// `ln(1 + e)` for `e` in `[0, 1]`: `2 atanh(s)`, `s = e / (2 + e) <= 1/3`, by its odd series to
/// `s^37` (truncation < 1e-18 relative).
#[inline(always)]
fn ln_1p_unit(e: f64) -> f64 {
    let s = e / (2.0 + e);
    let z = s * s;
    let mut p = 1.0 / 37.0;
    for k in (0..18).rev() {
        p = p * z + 1.0 / f64::from(2 * k + 1);
    }
    2.0 * s * p
}

/// A dot product with four independent accumulators (vectorises, and is deterministic).
#[inline(always)]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        acc[0] += x[0] * y[0];
        acc[1] += x[1] * y[1];
        acc[2] += x[2] * y[2];
        acc[3] += x[3] * y[3];
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `y += alpha * x` (vectorises).
#[inline(always)]
pub fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn mlp_forward(this: &Mlp, y: &[f64], act: &mut Activations) -> f64 {
    let (d, h) = (this.shape.input, this.shape.hidden);
    if h == 32 {
        // The toys' width (and the authors'): the layer sums stay in registers.
        return forward_fixed::<32>(this, y, act);
    }
    let o = this.offsets();
    let p = &this.params;
    let b1 = &p[o.b1..o.w2];
    let (w2, b2) = (&p[o.w2..o.b2], &p[o.b2..o.w3]);
    let (w3, b3) = (&p[o.w3..o.b3], p[o.b3]);
    act.a1.copy_from_slice(b1);
    for (j, yj) in y.iter().enumerate().take(d) {
        axpy(*yj, &this.w1t[j * h..(j + 1) * h], &mut act.a1);
    }
    activate(&mut act.a1, &mut act.s1);
    act.a2.copy_from_slice(b2);
    for j in 0..h {
        axpy(act.a1[j], &this.w2t[j * h..(j + 1) * h], &mut act.a2);
    }
    activate(&mut act.a2, &mut act.s2);
    act.reward = b3 + dot(w3, &act.a2);
    for i in 0..h {
        act.d2[i] = w3[i] * act.s2[i];
    }
    act.u.fill(0.0);
    for i in 0..h {
        axpy(act.d2[i], &w2[i * h..(i + 1) * h], &mut act.u);
    }
    for i in 0..h {
        act.d1[i] = act.u[i] * act.s1[i];
    }
    act.reward
}

/// [`mlp_forward`] for a hidden width known at compile time: the same operations in the same
/// order (so bit-identical results), with each layer's sums in local arrays that the compiler keeps
/// in vector registers instead of a store and a reload per row.
#[inline(always)]
fn forward_fixed<const H: usize>(this: &Mlp, y: &[f64], act: &mut Activations) -> f64 {
    let d = this.shape.input;
    let o = this.offsets();
    let p = &this.params;
    let row =
        |m: &[f64], j: usize| -> [f64; H] { m[j * H..(j + 1) * H].try_into().expect("row of H") };
    let mut a1: [f64; H] = p[o.b1..o.w2].try_into().expect("b1 of H");
    for (j, yj) in y.iter().enumerate().take(d) {
        let w = row(&this.w1t, j);
        for i in 0..H {
            a1[i] += yj * w[i];
        }
    }
    act.a1.copy_from_slice(&a1);
    activate(&mut act.a1, &mut act.s1);
    let mut a2: [f64; H] = p[o.b2..o.w3].try_into().expect("b2 of H");
    for j in 0..H {
        let (c, w) = (act.a1[j], row(&this.w2t, j));
        for i in 0..H {
            a2[i] += c * w[i];
        }
    }
    act.a2.copy_from_slice(&a2);
    activate(&mut act.a2, &mut act.s2);
    let w3 = &p[o.w3..o.b3];
    act.reward = p[o.b3] + dot(w3, &act.a2);
    let mut u = [0.0f64; H];
    for j in 0..H {
        let c = w3[j] * act.s2[j];
        act.d2[j] = c;
        let w = row(&p[o.w2..o.b2], j);
        for i in 0..H {
            u[i] += c * w[i];
        }
    }
    act.u.copy_from_slice(&u);
    for i in 0..H {
        act.d1[i] = u[i] * act.s1[i];
    }
    act.reward
}

#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn mlp_grad_inner_input_gradient_with(
    this: &Mlp,
    act: &mut Activations,
    terms: &[(&GradFeatures, f64, KernelParts)],
    out: &mut [f64],
) {
    let (d, h) = (this.shape.input, this.shape.hidden);
    let o = this.offsets();
    let p = &this.params;
    let w1 = &p[o.w1..o.b1];
    let w2 = &p[o.w2..o.b2];
    let w3 = &p[o.w3..o.b3];
    // Seeds: g_a2, g_d2, g_a1, g_d1 (h each), and the direct g_y in `out`.
    let mut seeds = std::mem::take(&mut act.seeds);
    seeds.clear();
    seeds.resize(4 * h, 0.0);
    let (g_a2, rest) = seeds.split_at_mut(h);
    let (g_d2, rest) = rest.split_at_mut(h);
    let (g_a1, g_d1) = rest.split_at_mut(h);
    out.fill(0.0);
    for &(f, al, k) in terms {
        let c_d2 = al * (k.a1 + 1.0);
        let c_a1 = al * k.d2;
        let c_d1 = al * (k.y + 1.0);
        let c_y = al * k.d1;
        axpy(al, &f.a2, g_a2);
        axpy(c_d2, &f.d2, g_d2);
        axpy(c_a1, &f.a1, g_a1);
        axpy(c_d1, &f.d1, g_d1);
        axpy(c_y, &f.y, out);
    }
    // δ1 = u ⊙ s1, u = W2ᵀ δ2: dQ/du = g_d1 ⊙ s1 (in act.g1), dQ/dδ2 += W2 dQ/du.
    for i in 0..h {
        act.g1[i] = g_d1[i] * act.s1[i];
    }
    // dQ/dh2 = g_a2 ⊙ s2 + (dQ/dδ2 ⊙ w3) ⊙ s2 (1 - s2), in act.g2 (first W2 dQ/du).
    act.g2.copy_from_slice(g_d2);
    for j in 0..h {
        axpy(act.g1[j], &this.w2t[j * h..(j + 1) * h], &mut act.g2);
    }
    for i in 0..h {
        let s2 = act.s2[i];
        act.g2[i] = g_a2[i] * s2 + act.g2[i] * w3[i] * s2 * (1.0 - s2);
    }
    // dQ/da1 += W2ᵀ dQ/dh2.
    for i in 0..h {
        axpy(act.g2[i], &w2[i * h..(i + 1) * h], g_a1);
    }
    // dQ/dh1 = dQ/da1 ⊙ s1 + (g_d1 ⊙ u) ⊙ s1 (1 - s1); dQ/dy += W1ᵀ dQ/dh1.
    for i in 0..h {
        let s1 = act.s1[i];
        let gh1 = g_a1[i] * s1 + g_d1[i] * act.u[i] * s1 * (1.0 - s1);
        axpy(gh1, &w1[i * d..(i + 1) * d], out);
    }
    act.seeds = seeds;
}

#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn mlp_add_param_gradient(this: &Mlp, f: Factors<'_>, scale: f64, grad: &mut [f64]) {
    let (d, h) = (this.shape.input, this.shape.hidden);
    let o = this.offsets();
    for i in 0..h {
        let c1 = scale * f.d1[i];
        axpy(c1, f.y, &mut grad[o.w1 + i * d..o.w1 + (i + 1) * d]);
        grad[o.b1 + i] += c1;
        let c2 = scale * f.d2[i];
        axpy(c2, f.a1, &mut grad[o.w2 + i * h..o.w2 + (i + 1) * h]);
        grad[o.b2 + i] += c2;
    }
    axpy(scale, f.a2, &mut grad[o.w3..o.b3]);
    grad[o.b3] += scale;
}

/// Borrowed gradient factors, from [`Activations`] or from [`GradFeatures`].
#[derive(Clone, Copy)]
struct Factors<'a> {
    y: &'a [f64],
    a1: &'a [f64],
    a2: &'a [f64],
    d1: &'a [f64],
    d2: &'a [f64],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mlp() -> (Mlp, Vec<f64>) {
        let shape = MlpShape {
            input: 5,
            hidden: 7,
        };
        let mut rng = crate::toy::rng(11, 0);
        // A larger init than the toy's so that the second-order terms are not negligible.
        (
            Mlp::init(shape, 0.7, &mut rng),
            vec![0.3, -1.2, 0.8, 0.05, -0.4],
        )
    }

    use crate::toy::central_difference as central;

    #[test]
    fn input_gradient_matches_central_differences() {
        let (m, y) = mlp();
        let mut act = Activations::new(m.shape());
        m.forward(&y, &mut act);
        let mut g = vec![0.0; 5];
        m.input_gradient(&act, &mut g);
        let f = |x: &[f64]| m.forward(x, &mut Activations::new(m.shape()));
        for i in 0..5 {
            let fd = central(f, &y, i, 1e-5);
            assert!((fd - g[i]).abs() < 1e-8, "coord {i}: {fd} vs {}", g[i]);
        }
    }

    #[test]
    fn param_gradient_matches_central_differences_and_norm() {
        let (m, y) = mlp();
        let mut act = Activations::new(m.shape());
        m.forward(&y, &mut act);
        let mut g = vec![0.0; m.params().len()];
        m.add_param_gradient(&y, &act, 1.0, &mut g);
        for i in 0..m.params().len() {
            let f = |p: &[f64]| {
                Mlp::from_params(m.shape(), p.to_vec())
                    .forward(&y, &mut Activations::new(m.shape()))
            };
            let fd = central(f, m.params(), i, 1e-5);
            assert!((fd - g[i]).abs() < 1e-8, "param {i}: {fd} vs {}", g[i]);
        }
        let norm_sq: f64 = g.iter().map(|v| v * v).sum();
        assert!((norm_sq - m.grad_norm_sq(&y, &act)).abs() < 1e-10);
    }

    #[test]
    fn mixed_second_derivative_matches_central_differences() {
        let (m, y) = mlp();
        let mut act = Activations::new(m.shape());
        m.forward(&y, &mut act);
        let mut g = vec![0.0; 5];
        m.grad_norm_sq_input_gradient(&y, &mut act, &mut g);
        let f = |x: &[f64]| {
            let mut a = Activations::new(m.shape());
            m.forward(x, &mut a);
            m.grad_norm_sq(x, &a)
        };
        for i in 0..5 {
            let fd = central(f, &y, i, 1e-5);
            assert!(
                (fd - g[i]).abs() < 1e-7 * (1.0 + fd.abs()),
                "coord {i}: {fd} vs {}",
                g[i]
            );
        }
    }

    #[test]
    fn gradient_kernel_matches_full_gradients_and_its_input_gradient_matches_fd() {
        let (m, y) = mlp();
        let z: Vec<f64> = y.iter().map(|v| 0.5 - v).collect();
        let feat = |x: &[f64]| {
            let mut a = Activations::new(m.shape());
            m.forward(x, &mut a);
            let mut g = vec![0.0; m.params().len()];
            m.add_param_gradient(x, &a, 1.0, &mut g);
            (a.features(x), g)
        };
        let ((fy, gy), (fz, gz)) = (feat(&y), feat(&z));
        let full: f64 = gy.iter().zip(&gz).map(|(a, b)| a * b).sum();
        assert!((grad_inner(&fy, &fz) - full).abs() < 1e-10);
        // ∇_y (0.7 k(y, z) - 1.3 k(y, y0)) against central differences, z and y0 held fixed.
        let y0: Vec<f64> = y.iter().map(|v| v * 0.3 + 0.1).collect();
        let f0 = feat(&y0).0;
        let q = |x: &[f64]| 0.7 * grad_inner(&feat(x).0, &fz) - 1.3 * grad_inner(&feat(x).0, &f0);
        let mut act = Activations::new(m.shape());
        m.forward(&y, &mut act);
        let mut g = vec![0.0; 5];
        m.grad_inner_input_gradient(&y, &mut act, &[(&fz, 0.7), (&f0, -1.3)], &mut g);
        for i in 0..5 {
            let fd = central(q, &y, i, 1e-5);
            assert!(
                (fd - g[i]).abs() < 1e-7 * (1.0 + fd.abs()),
                "coord {i}: {fd} vs {}",
                g[i]
            );
        }
    }

    #[test]
    fn activation_kernels_match_libm() {
        let mut worst = (0.0f64, 0.0f64);
        for i in 0..=200_000 {
            let x = -750.0 + 760.0 * f64::from(i) / 200_000.0;
            let (sp, sg) = softplus_and_sigmoid(x);
            let e = (-x.abs()).exp();
            let (sp_ref, sg_ref) = (
                x.max(0.0) + e.ln_1p(),
                if x >= 0.0 {
                    1.0 / (1.0 + e)
                } else {
                    e / (1.0 + e)
                },
            );
            let rel = |a: f64, b: f64| {
                if b == 0.0 {
                    a.abs()
                } else {
                    ((a - b) / b).abs()
                }
            };
            // Below -708 the clamped exponential is allowed to be slightly large (< 4e-308).
            if x > -708.0 {
                worst.0 = worst.0.max(rel(sp, sp_ref));
                worst.1 = worst.1.max(rel(sg, sg_ref));
            } else {
                assert!(sg < 4e-308 && sp < 4e-308);
            }
        }
        assert!(
            worst.0 < 1e-15 && worst.1 < 1e-15,
            "worst relative errors {worst:?}"
        );
    }

    #[test]
    fn adam_matches_torch_formula_on_a_hand_computed_step() {
        // One step of torch.optim.Adam(lr=0.1, weight_decay=0.5) from p = 2, grad = 1:
        // g = 1 + 0.5*2 = 2; m = 0.2; v = 0.004; m_hat = 2, v_hat = 4; p = 2 - 0.1*2/(2+1e-8).
        let mut adam = Adam::new(1, 0.1, 0.9, 0.999, 1e-8, 0.5);
        let mut p = [2.0];
        adam.step(&mut p, &[1.0]);
        assert!(
            (p[0] - (2.0 - 0.1 * 2.0 / (2.0 + 1e-8))).abs() < 1e-12,
            "{}",
            p[0]
        );
    }
}
