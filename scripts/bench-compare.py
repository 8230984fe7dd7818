"""`just bench-model-compare`: fpo's LLM benchmark and Hugging Face transformers side by side.

For each CPU kernel path asked for (`avx512`, `avx2`, `portable`; default: every one this CPU
has), each round runs both engines at 1 and at 2 threads, one after the other (which goes first
alternates between rounds), so that a busy moment on a shared machine weighs on both; it prints
every measurement, the kernels each engine ran, the ratio fpo / transformers per round, and how
many rounds meet the targets (decoding at least 2x transformers at the same thread count, prefill
at least 1x).

Forcing a path: fpo gets `FPO_CPU=<path>` (its quantised products and attention; burn's f32
gemm, used by neither measure here, keeps its own dispatch). Below AVX-512, transformers is pinned
to AVX2 as well (`ATEN_CPU_CAPABILITY=avx2` for ATen's kernels, `MKL_ENABLE_INSTRUCTIONS=AVX2` and
`ONEDNN_MAX_CPU_ISA=AVX2` for its matrix products), so that on an AVX-512 machine neither engine
uses what the other may not. The portable path is plain loops that the compiler vectorises for
AVX2 where the CPU has it, so it is compared with transformers on AVX2 too.

Usage: bench-compare.py ROUNDS MODEL.gguf [PATHS]  (PATHS: comma-separated, or `all`)
"""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = {"prefill": 1.0, "decode_b1": 2.0, "decode_b8": 2.0}
LABELS = {"prefill": "prefill", "decode_b1": "decode b1", "decode_b8": "decode b8 total"}
PATHS = ("avx512", "avx2", "portable")
TORCH_AVX2 = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


def last_json(out: str, what: str) -> dict:
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    sys.exit(f"{what} printed no JSON line:\n{out}")


def cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def supported() -> list:
    flags = cpu_flags()
    out = []
    if {"avx512f", "avx512bw", "avx512vl", "avx2", "fma"} <= flags:
        out.append("avx512")
    if {"avx2", "fma"} <= flags:
        out.append("avx2")
    return out + ["portable"]


def ours(threads: int, path: str) -> dict:
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), FPO_BENCH_JSON="1", FPO_CPU=path)
    cmd = ["cargo", "bench", "-q", "--workspace", "--bench", "llm"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"cargo bench --bench llm (FPO_CPU={path}) failed:\n{run.stdout}\n{run.stderr}")
    return last_json(run.stdout, "cargo bench --bench llm")


def transformers(threads: int, model: str, path: str) -> dict:
    script = os.path.join(HERE, "bench-transformers.py")
    env = dict(os.environ)
    if path != "avx512":
        env.update(TORCH_AVX2)
    cmd = [sys.executable, script, str(threads), model]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return last_json(run.stdout, "bench-transformers.py")


def main() -> None:
    rounds, model = int(sys.argv[1]), sys.argv[2]
    asked = sys.argv[3] if len(sys.argv) > 3 else "all"
    have = supported()
    paths = have if asked in ("", "all") else [p.strip() for p in asked.split(",")]
    for p in paths:
        if p not in PATHS:
            sys.exit(f"unknown kernel path `{p}` (expected {', '.join(PATHS)})")
        if p not in have:
            sys.exit(f"this CPU lacks the `{p}` path (it has: {', '.join(have)})")
    print(f"kernel paths: {', '.join(paths)} (this CPU has: {', '.join(have)})")
    ratios = {(p, t, k): [] for p in paths for t in (1, 2) for k in TARGETS}
    for path in paths:
        print(f"\n## kernel path {path}\n")
        print(
            "| round | threads | engine | kernels | prefill tok/s | decode tok/s, b1 "
            "| decode tok/s total, b8 | peak RSS |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in range(rounds):
            for t in (1, 2):
                pair = [
                    ("fpo", lambda: ours(t, path)),
                    ("transformers", lambda: transformers(t, model, path)),
                ]
                if r % 2:
                    pair.reverse()
                got = {name: run() for name, run in pair}
                for name in ("fpo", "transformers"):
                    g = got[name]
                    print(
                        f"| {r + 1} | {t} | {g['engine']} | {g.get('kernels', '?')} "
                        f"| {g['prefill']:.0f} | {g['decode_b1']:.1f} | {g['decode_b8']:.1f} "
                        f"| {g['rss_gb']:.2f} GB |"
                    )
                cells = []
                for k, want in TARGETS.items():
                    x = got["fpo"][k] / got["transformers"][k]
                    ratios[(path, t, k)].append(x)
                    cells.append(f"{x:.2f}x {'met' if x >= want else 'NOT met'}")
                print(
                    f"| {r + 1} | {t} | fpo / transformers | | " + " | ".join(cells) + " | |",
                    flush=True,
                )
    print()
    print("| kernel path | threads | measure | target | fpo / transformers, per round | rounds met |")
    print("|---|---|---|---|---|---|")
    for (p, t, k), xs in ratios.items():
        met = sum(x >= TARGETS[k] for x in xs)
        listed = ", ".join(f"{x:.2f}" for x in xs)
        print(f"| {p} | {t} | {LABELS[k]} | >= {TARGETS[k]:.0f}x | {listed} | {met} of {len(xs)} |")


if __name__ == "__main__":
    main()
