"""`just bench-model-compare`: fpo's LLM benchmark and Hugging Face transformers side by side.

Each round runs both engines at 1 and at 2 threads, one after the other (which goes first
alternates between rounds), so that a busy moment on a shared machine weighs on both; it prints
every measurement, the ratio fpo / transformers per round, and how many rounds meet issue #8's
targets (decoding at least 2x transformers at the same thread count, prefill at least 1x).

Usage: bench-compare.py ROUNDS MODEL.gguf  (run by the recipe with the bench venv's Python)
"""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = {"prefill": 1.0, "decode_b1": 2.0, "decode_b8": 2.0}
LABELS = {"prefill": "prefill", "decode_b1": "decode b1", "decode_b8": "decode b8 total"}


def last_json(out: str, what: str) -> dict:
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    sys.exit(f"{what} printed no JSON line:\n{out}")


def ours(threads: int) -> dict:
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), FPO_BENCH_JSON="1")
    cmd = ["cargo", "bench", "-q", "--workspace", "--bench", "llm"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return last_json(run.stdout, "cargo bench --bench llm")


def transformers(threads: int, model: str) -> dict:
    script = os.path.join(HERE, "bench-transformers.py")
    cmd = [sys.executable, script, str(threads), model]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return last_json(run.stdout, "bench-transformers.py")


def main() -> None:
    rounds, model = int(sys.argv[1]), sys.argv[2]
    ratios = {(t, k): [] for t in (1, 2) for k in TARGETS}
    print("| round | threads | engine | prefill tok/s | decode tok/s, b1 | decode tok/s total, b8 | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for r in range(rounds):
        for t in (1, 2):
            pair = [("fpo", lambda: ours(t)), ("transformers", lambda: transformers(t, model))]
            if r % 2:
                pair.reverse()
            got = {name: run() for name, run in pair}
            for name in ("fpo", "transformers"):
                g = got[name]
                print(
                    f"| {r + 1} | {t} | {g['engine']} | {g['prefill']:.0f} | {g['decode_b1']:.1f} "
                    f"| {g['decode_b8']:.1f} | {g['rss_gb']:.2f} GB |"
                )
            cells = []
            for k, want in TARGETS.items():
                x = got["fpo"][k] / got["transformers"][k]
                ratios[(t, k)].append(x)
                cells.append(f"{x:.2f}x {'met' if x >= want else 'NOT met'}")
            print(f"| {r + 1} | {t} | fpo / transformers | " + " | ".join(cells) + " | |", flush=True)
    print()
    print("| threads | measure | target | fpo / transformers, per round | rounds met |")
    print("|---|---|---|---|---|")
    for (t, k), xs in ratios.items():
        met = sum(x >= TARGETS[k] for x in xs)
        listed = ", ".join(f"{x:.2f}" for x in xs)
        print(f"| {t} | {LABELS[k]} | >= {TARGETS[k]:.0f}x | {listed} | {met} of {len(xs)} |")


if __name__ == "__main__":
    main()
