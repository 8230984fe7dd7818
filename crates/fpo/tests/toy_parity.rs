//! The toys on every backend this build has, against the hand-written `f64` kernels of `fpo`:
//! the neural-network toy's reward model and its mixed second derivative, and both toy suites
//! as tensor programs (`fpo::toy::tensor`) against the host kernels' trajectories. Without GPU
//! features this runs flex and ndarray; built with `--features fpo-runner/wgpu` it also runs
//! wgpu, and then requires an adapter (CI installs Mesa's lavapipe). `scripts/gpu-check` runs it
//! beside `fpo-model`'s `backend_parity`.

use burn::tensor::{DType, Tensor, TensorData};
use fpo::toy::mlp::{Activations, Mlp, MlpShape};
use fpo_model::toy_mlp::ToyMlps;
use fpo_model::{BackendKind, device};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The backends compared with flex: every one compiled in. A GPU backend compiled in must find
/// a device: a parity test that skips itself proves nothing.
fn others() -> Vec<BackendKind> {
    fpo_model::backend::others_than_flex().unwrap_or_else(|e| panic!("{e}"))
}

/// The toy's reward model in `f32` on each backend (flex included) against the hand-written
/// `f64` MLP: reward, `∇_y r`, `||∇_φ r||²` and its input gradient, 1e-4 relative.
#[test]
fn toy_reward_model_matches_the_hand_written_f64_on_every_backend() {
    let shape = MlpShape {
        input: 10,
        hidden: 32,
    };
    let mlp = Mlp::init(shape, 0.5, &mut ChaCha8Rng::seed_from_u64(3));
    let y: Vec<f64> = (0..10).map(|i| 0.37 * i as f64 - 1.5).collect();
    let mut act = Activations::new(shape);
    let r = mlp.forward(&y, &mut act);
    let mut d_y = vec![0.0; 10];
    mlp.input_gradient(&act, &mut d_y);
    let p = mlp.grad_norm_sq(&y, &act);
    let mut d_p = vec![0.0; 10];
    mlp.grad_norm_sq_input_gradient(&y, &mut act, &mut d_p);

    let host = |t: Tensor<3>| -> Vec<f64> {
        t.into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .unwrap()
    };
    let close = |kind: BackendKind, what: &str, got: &[f64], want: &[f64]| {
        for (a, b) in got.iter().zip(want) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{}: {what}: {a} vs {b}",
                kind.name()
            );
        }
    };
    for kind in std::iter::once(BackendKind::Flex).chain(others()) {
        let dev = device(kind, true).unwrap();
        let model = ToyMlps::from_flat(&[mlp.params()], 10, 32, &dev, DType::F32);
        let yt = || {
            Tensor::<3>::from_data(TensorData::new(y.clone(), [1, 1, 10]), (&dev, DType::F32))
                .require_grad()
        };
        let y1 = yt();
        let f = model.forward(y1.clone());
        let grads = f.reward.backward();
        close(kind, "r", &host(f.reward.clone()), &[r]);
        close(kind, "∇y r", &host(y1.grad(&grads).unwrap()), &d_y);
        let y2 = yt();
        let pt = model.grad_norm_sq(y2.clone(), &model.forward(y2.clone()));
        let grads = pt.backward();
        close(kind, "||∇φ r||²", &host(pt), &[p]);
        close(kind, "∇y ||∇φ r||²", &host(y2.grad(&grads).unwrap()), &d_p);
    }
}

/// Both toy suites as tensor programs (`fpo::toy::tensor`) on each backend, every variant,
/// against the hand-written `f64` kernels' trajectories (the same seeds draw the same noise):
/// the linear toy (60 iterations, finite differences, 3 seeds) and the neural-network toy (30
/// outer iterations of 5 steps, a 12-entry buffer that wraps, 2 seeds). Relative tolerance on
/// every logged number and the final actions: 1e-8 on the host backends (they compute in `f64`;
/// measured 1.9e-9), 1e-4 on a GPU (`f32`, whose rounding the policy's steps carry along the
/// trajectory; measured on lavapipe 1.7e-6).
#[test]
fn toy_suites_follow_the_host_kernels_on_every_backend() {
    use fpo::toy::linear::{LinearToy, LinearToyConfig};
    use fpo::toy::nn::{NnToy, NnToyConfig};
    use fpo::toy::{ToyRun, tensor};
    use fpo::{Penalty, Variant};

    let mut linear_cfg = LinearToyConfig::paper();
    linear_cfg.policy.iterations = 60;
    let linear = LinearToy::new(&linear_cfg).unwrap();
    let mut nn_cfg = NnToyConfig::paper();
    nn_cfg.policy.outer_iterations = 30;
    nn_cfg.policy.inner_steps = 5;
    nn_cfg.rm.buffer_size = 12;
    let nn = NnToy::new(&nn_cfg).unwrap();
    let worst = |got: &[ToyRun], want: &[ToyRun]| -> f64 {
        let mut worst = 0.0f64;
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.seed, g.records.len()), (w.seed, w.records.len()));
            for (a, b) in g.records.iter().zip(&w.records) {
                for (x, y) in [
                    (a.signal, b.signal),
                    (a.noise, b.noise),
                    (a.true_utility, b.true_utility),
                    (a.proxy_reward, b.proxy_reward),
                    (a.penalty, b.penalty),
                ] {
                    worst = worst.max((x - y).abs() / (1.0 + y.abs()));
                }
            }
            for (x, y) in g.final_action.iter().zip(&w.final_action) {
                worst = worst.max((x - y).abs() / (1.0 + y.abs()));
            }
        }
        worst
    };
    for kind in std::iter::once(BackendKind::Flex).chain(others()) {
        let dev = device(kind, false).unwrap();
        let tol = if kind.is_cpu() { 1e-8 } else { 1e-4 };
        for v in Variant::ALL {
            let p = Penalty::new(v, if v == Variant::Standard { 0.0 } else { 0.1 });
            let seeds = [0, 1, 2];
            let want: Vec<ToyRun> = seeds.iter().map(|&s| linear.run(p, s, None)).collect();
            let got = tensor::run_linear(&linear, p, &seeds, &dev).unwrap();
            let diff = worst(&got, &want);
            eprintln!(
                "{}: linear toy, {v}: max relative diff {diff:.2e}",
                kind.name()
            );
            assert!(diff <= tol, "{}: linear toy, {v}: {diff}", kind.name());

            let p = Penalty::new(v, if v == Variant::Standard { 0.0 } else { 0.05 });
            let seeds = [3, 4];
            let want: Vec<ToyRun> = seeds
                .iter()
                .map(|&s| nn.run(p, s, 4, None).unwrap())
                .collect();
            let got = tensor::run_nn(&nn, p, &seeds, 4, &dev).unwrap();
            let diff = worst(&got, &want);
            eprintln!("{}: NN toy, {v}: max relative diff {diff:.2e}", kind.name());
            assert!(diff <= tol, "{}: NN toy, {v}: {diff}", kind.name());
        }
    }
}
