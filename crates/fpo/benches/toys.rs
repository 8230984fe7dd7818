//! Throughput of the toys' inner loops: `cargo bench -p fpo --bench toys` (or `just bench`).
//!
//! - `linear/<variant>`: one whole 300-iteration run of the linear toy (finite differences, the
//!   shipped config); throughput in policy steps.
//! - `nn/<variant>`: 100 outer iterations (1500 policy steps + 100 RM Adam steps on the buffer)
//!   of the neural-network toy; throughput in policy steps.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fpo::toy::linear::{LinearToy, LinearToyConfig};
use fpo::toy::nn::{NnToy, NnToyConfig};
use fpo::{Penalty, Variant};

fn gamma(v: Variant, g: f64) -> f64 {
    if v == Variant::Standard { 0.0 } else { g }
}

fn linear(c: &mut Criterion) {
    let cfg = LinearToyConfig::paper();
    let toy = LinearToy::new(&cfg).unwrap();
    let mut group = c.benchmark_group("linear");
    group.throughput(Throughput::Elements(cfg.policy.iterations as u64));
    for v in Variant::ALL {
        group.bench_function(v.name(), |b| {
            b.iter(|| toy.run(Penalty::new(v, gamma(v, 0.1)), 1, None))
        });
    }
    group.finish();
}

fn nn(c: &mut Criterion) {
    let mut cfg = NnToyConfig::paper();
    cfg.policy.outer_iterations = 100;
    let toy = NnToy::new(&cfg).unwrap();
    let mut group = c.benchmark_group("nn");
    group.sample_size(20);
    group.throughput(Throughput::Elements((100 * cfg.policy.inner_steps) as u64));
    for v in Variant::ALL {
        group.bench_function(v.name(), |b| {
            b.iter(|| {
                toy.run(Penalty::new(v, gamma(v, 0.005)), 1, 10, None)
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, linear, nn);
criterion_main!(benches);
