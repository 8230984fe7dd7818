# Recipes of the alignment-collapse workspace. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Build artefacts live outside the clone so that CI and later clones reuse them.
export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", env_var("HOME") / ".cache/fpo-target")
# Data sets: point FPO_DATA_DIR at a copy (CI uses ../shared/datasets).
export FPO_DATA_DIR := env_var_or_default("FPO_DATA_DIR", justfile_directory() / "../shared/datasets")

fpo := CARGO_TARGET_DIR / "release/fpo"

# List the recipes.
default:
    @just --list

# Build the `fpo` binary (release).
build:
    cargo build --release -p fpo-runner

# Train and evaluate every suite under every variant (profile: smoke, cpu or paper).
reproduce profile="cpu": build
    {{fpo}} reproduce --profile {{profile}}

# Run one experiment file, e.g. `just run experiments/toy-nn.toml --seeds 0..5`.
run +args: build
    {{fpo}} run {{args}}

# The test suite (release mode: the toy claims run thousands of iterations).
test:
    cargo test --release --workspace

# The cheapest checks first: formatting, lints, then the tests.
check:
    cargo fmt --all -- --check
    cargo clippy --release --workspace --all-targets -- -D warnings
    just test

# Throughput of the toys' inner loops and of one RM step on burn's CPU backends against the
# hand-written MLP (criterion), then the whole-suite timings.
bench: build
    cargo bench -p fpo --bench toys
    cargo bench -p fpo-model --bench backends
    just bench-suite

# Wall time of the toy-nn suite (3 variants x 5 seeds) against the authors' PyTorch code (about 15
# minutes on this 2-core machine), and of the linear toy against their NumPy notebook.
bench-suite: build
    #!/usr/bin/env bash
    set -euo pipefail
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
    t0=$(date +%s.%N)
    {{fpo}} run experiments/toy-nn.toml --seeds 0..5 --out "$out/nn" > /dev/null
    t1=$(date +%s.%N)
    {{fpo}} run experiments/toy-linear.toml --seeds 0 --out "$out/lin" > /dev/null
    t2=$(date +%s.%N)
    python3 - "$t0" "$t1" "$t2" <<'PY'
    import sys
    t0, t1, t2 = map(float, sys.argv[1:])
    nn, lin, ref = t1 - t0, t2 - t1, 15 * 60
    print(f"toy-nn, 3 variants x 5 seeds x 4000 x 15 steps: {nn:.2f} s; authors' PyTorch ~{ref} s: {ref / nn:.0f}x faster (target >= 100x, < 9 s)")
    print(f"toy-linear, 3 variants x 300 iterations (finite differences), whole process: {lin * 1000:.0f} ms; authors' NumPy 58-150 ms per variant")
    PY
