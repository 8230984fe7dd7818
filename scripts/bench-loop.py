#!/usr/bin/env python3
"""The LLM loop's wall time against an older commit, on this machine (`just bench-loop`).

Usage: bench-loop.py NEW_FPO OLD_FPO OLD_TREE ITERATIONS ROUNDS

The workload is frozen: `fpo run experiments/truthfulqa.toml` at the paper's sizes (3 variants,
best-of-8, 32 new tokens, LoRA r=16 on q/k/v/o), ITERATIONS iterations, a warm start of 40 RM
pairs and no evaluation. The old binary runs in its own tree (its own experiment file); the new
one trains on the same prompts (the file's first ones, `train.shuffle = false`) without the
held-out probe (`train.probe.prompts = 0`) and without the capability tasks (`eval.tasks =
[]`), which the old code has none of. Old and new alternate for ROUNDS rounds; each round
prints both wall times and their ratio. Then the new code's per-stage breakdown (its last
round), the kernel path, and a check that the two computed the same run up to the first
policy update: the same winners and texts, and oracle utilities within 1e-4 (exit 1
otherwise); after it, how many iterations sample another candidate (the host policy step's
gradients equal burn's autodiff's up to rounding only).
"""

import json
import os
import subprocess
import sys
import tempfile
import time



def workload(iterations):
    return [
        "run", "experiments/truthfulqa.toml",
        "--set", f"train.iterations={iterations}",
        "--set", "train.rm.pairs_limit=40",
        "--set", "eval.metrics=[]",
        "--no-report",
    ]


# What the new code does beyond the old one's workload is switched off: its prompts are the
# file's first ones, no held-out probe, no capability tasks (added to the experiment file's
# evaluation after the old commit; with `eval.metrics=[]` the old code evaluates nothing).
SAME_PROMPTS = ["--set", "train.shuffle=false", "--set", "train.probe.prompts=0",
                "--set", "eval.tasks=[]"]
VARIANTS = ["standard", "relaxed", "practical"]


def run(binary, cwd, args, out):
    t = time.perf_counter()
    subprocess.run([binary, *args, "--out", out], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def logs(out, variant):
    with open(os.path.join(out, f"{variant}-seed0", "log.jsonl")) as f:
        return [json.loads(line) for line in f]


def main():
    new, old, old_tree, iterations, rounds = sys.argv[1:6]
    iterations, rounds = int(iterations), int(rounds)
    root = os.getcwd()
    tmp = tempfile.mkdtemp(prefix="bench-loop-")
    print(f"workload: 3 variants x {iterations} iterations at the paper's sizes, no evaluation; "
          f"{rounds} rounds, old and new alternating")
    print("| round | old: s | new: s | old / new |")
    print("|---|---|---|---|")
    ratios = []
    for r in range(rounds):
        old_out, new_out = (os.path.join(tmp, f"{k}{r}") for k in ("old", "new"))
        t_old = run(old, old_tree, workload(iterations), old_out)
        t_new = run(new, root, workload(iterations) + SAME_PROMPTS, new_out)
        ratios.append(t_old / t_new)
        print(f"| {r + 1} | {t_old:.1f} | {t_new:.1f} | {t_old / t_new:.2f} |", flush=True)
    print(f"\nold / new: min {min(ratios):.2f}, max {max(ratios):.2f} over {rounds} rounds")

    report(old_out, new_out, ratios)


def report(old_out, new_out, ratios):
    """The new run's breakdown beside the ratio, and the check that both computed the same."""
    with open(os.path.join(new_out, "run.json")) as f:
        info = json.load(f)
    print(f"kernel path (new): {info['machine'].get('cpu_kernels', '?')}, "
          f"threads: {info['machine'].get('threads', '?')}")
    variants = info["llm"]["variants"]
    n = sum(v["iterations"] for v in variants.values())
    stages = {}
    for v in variants.values():
        for name, s in v.get("stages", {}).items():
            stages[name] = stages.get(name, 0.0) + s
    total = sum(v["seconds"] for v in variants.values())
    mean = sum(ratios) / len(ratios)
    print(f"\nwhere a variant's iteration goes (new, last round; the work the variants share in "
          f"equal shares): {total / n:.2f} s per iteration; old / new wall time {mean:.2f} "
          f"(mean of {len(ratios)} rounds; the old code records no stages)")
    print("| stage | s per iteration | share |")
    print("|---|---|---|")
    for name, s in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {s / n:.3f} | {100 * s / total:.0f}% |")
    probes = [v for v in variants.values() if v.get("probes")]
    if not probes:
        print("| probe | not run (the old code has none; `just bench-loop` keeps the workload) | |")

    # Until the first policy update both codes compute the same thing from the same numbers:
    # the same winners and texts, utilities within 1e-4. After it the adapters differ by the
    # policy step's rounding (burn's autodiff against the host step: other summation orders,
    # ~1e-7 of each gradient), which can flip a sampled token; those iterations are counted.
    worst, same, flipped, total = 0.0, True, 0, 0
    for v in VARIANTS:
        a, b = logs(old_out, v), logs(new_out, v)
        same &= len(a) == len(b)
        first_step = next((x["iteration"] for x in a if x["step"]), len(a))
        for x, y in zip(a, b):
            agree = x["winners"] == y["winners"] and x["winner_text"] == y["winner_text"]
            close = all(abs(x[k] - y[k]) <= 1e-4 for k in
                        ("winner_utility", "reference_utility", "mean_candidate_utility"))
            if x["iteration"] <= first_step:
                same &= agree
                for k in ("winner_utility", "reference_utility", "mean_candidate_utility"):
                    worst = max(worst, abs(x[k] - y[k]))
            else:
                total += 1
                flipped += not (agree and close)
    print(f"\nold and new runs up to the first policy update: winners and winner texts the same: "
          f"{'yes' if same else 'NO'}; max |oracle utility difference| {worst:.1e} (bound 1e-4)")
    print(f"after it (adapters differing by the policy step's rounding): {flipped} of {total} "
          f"variant-iterations sample another candidate (a different winner, text, or a "
          f"candidate utility off by more than 1e-4)")
    if not same or worst > 1e-4:
        sys.exit(1)

if __name__ == "__main__":
    if sys.argv[1] == "--report":  # the analysis of a finished run: OLD_OUT NEW_OUT RATIO...
        report(sys.argv[2], sys.argv[3], [float(r) for r in sys.argv[4:]])
    else:
        main()
