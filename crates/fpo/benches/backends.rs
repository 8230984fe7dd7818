//! One reward-model step of the neural-network toy (forward of one input, then the gradient with
//! respect to every parameter) on each CPU backend burn offers, against the hand-written `f64`
//! MLP the toys use: `cargo bench -p fpo-model --bench backends` (part of `just bench`).

use burn::tensor::{DType, Tensor, TensorData};
use criterion::{Criterion, criterion_group, criterion_main};
use fpo::toy::mlp::{Activations, Mlp, MlpShape};
use fpo_model::{BackendKind, device, toy_mlp::ToyMlps};
use rand::SeedableRng;

fn step(c: &mut Criterion) {
    let shape = MlpShape {
        input: 10,
        hidden: 32,
    };
    let mlp = Mlp::init(shape, 0.1, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
    let y: Vec<f64> = (0..10).map(|i| 0.1 * i as f64).collect();
    let mut group = c.benchmark_group("rm_step");
    for kind in [BackendKind::Flex, BackendKind::Ndarray] {
        let dev = device(kind, true).unwrap();
        let base = ToyMlps::from_flat(&[mlp.params()], 10, 32, &dev, DType::F64);
        group.bench_function(format!("burn-{}", kind.name()), |b| {
            b.iter(|| {
                let m = ToyMlps::from_params(base.params().map(|p| p.require_grad()));
                let yt = Tensor::<3>::from_data(
                    TensorData::new(y.clone(), [1, 1, 10]),
                    (&dev, DType::F64),
                );
                let grads = m.forward(yt).reward.backward();
                m.w1t.grad(&grads).unwrap().into_data()
            })
        });
    }
    group.bench_function("hand-written-f64", |b| {
        let mut act = Activations::new(shape);
        let mut g = vec![0.0; shape.num_params()];
        b.iter(|| {
            mlp.forward(&y, &mut act);
            g.fill(0.0);
            mlp.add_param_gradient(&y, &act, 1.0, &mut g);
            g[0]
        })
    });
    group.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
