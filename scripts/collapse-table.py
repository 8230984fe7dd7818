#!/usr/bin/env python3
"""The collapse-regime search's table (docs/collapse.md) from finished `fpo run` directories.

Usage: scripts/collapse-table.py RUN_DIR [RUN_DIR ...] [--variant standard] [--fraction 0.5]

One row per run directory (one setting), over its seeds of the variant (standard by default):
- widening: the probe's proxy-minus-true gap, last probe minus first (the first is 0 by
  construction: the policy and the base model sample with the same random numbers), mean and
  95% Student-t interval across seeds;
- proxy and utility gains at the last probe (RM score under the current head, the paper's
  utility; both over the base model's samples), means across seeds;
- the follower: the head's mean |change| of its winners' scores per optimiser step, over the
  mean reward gap |r_win - r_ref|;
- penalty-to-gap: mean gamma <g, g - g_ref> over mean |r_win - r_ref| at the run's gamma (logged
  for standard too), and the gamma at which the penalty is `fraction` of the gap;
- the final probe KL(policy || base) per token, mean across seeds;
- wall minutes of the run (run.json);
- the smallest true mean widening that this many seeds detect (interval above 0) with about 80%
  power at the observed spread, (t_.975 + t_.80) s / sqrt(n).
"""

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

# Two-sided 95% Student-t quantiles by degrees of freedom.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
T80 = {1: 1.376, 2: 1.061, 3: 0.978, 4: 0.941, 5: 0.920, 6: 0.906, 7: 0.896, 8: 0.889, 9: 0.883}


def detectable(xs):
    """The mean detected with 80% power by a 95% two-sided t interval over len(xs) seeds."""
    n = len(xs)
    if n < 2:
        return math.nan
    return (T975.get(n - 1, 1.96) + T80.get(n - 1, 0.842)) * statistics.stdev(xs) / math.sqrt(n)


def interval(xs):
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, math.nan, math.nan
    h = T975.get(len(xs) - 1, 1.96) * statistics.stdev(xs) / math.sqrt(len(xs))
    return m, m - h, m + h


def jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def row(run, variant, fraction):
    config = json.loads((run / "config.json").read_text())
    gamma = config["fpo"]["gamma"]
    seeds = sorted(run.glob(f"{variant}-seed*"), key=lambda p: int(p.name.rsplit("seed", 1)[1]))
    if not seeds:
        sys.exit(f"{run}: no {variant}-seed* folder")
    widening, proxy, utility, kl, follower, ratio = [], [], [], [], [], []
    for d in seeds:
        probe = jsonl(d / "probe.jsonl")
        first, last = probe[0], probe[-1]
        widening.append(last["gap"] - first["gap"])
        proxy.append(last["reward"] - last["base_reward"])
        utility.append(last["utility"] - last["base_utility"])
        kl.append(last["kl"])
        log = jsonl(d / "log.jsonl")
        steps = [l["follower"]["delta_reward"] for l in log if l.get("follower")]
        gap = statistics.fmean(l["reward_gap"] for l in log)
        follower.append(statistics.fmean(abs(s) for s in steps) / gap)
        ratio.append(gamma * statistics.fmean(l["grad_term"] for l in log) / gap)
    m, lo, hi = interval(widening)
    r = statistics.fmean(ratio)
    wall = json.loads((run / "run.json").read_text())["wall_time_s"] / 60
    names = ",".join(d.name.rsplit("seed", 1)[1] for d in seeds)
    return (
        f"| {run.name} | {names} | {m:+.3f} [{lo:+.3f}, {hi:+.3f}] | "
        f"{statistics.fmean(proxy):+.3f} | {statistics.fmean(utility):+.3f} | "
        f"{statistics.fmean(follower):.1e} | {r:.2f} (γ {gamma:g}) -> γ {fraction * gamma / r:.3g} | "
        f"{statistics.fmean(kl):.3f} | {detectable(widening):.3f} | {wall:.0f} |"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--variant", default="standard")
    ap.add_argument("--fraction", type=float, default=0.5)
    a = ap.parse_args()
    print(
        "| setting | seeds | gap widening, mean [95% CI] | proxy gain | utility gain | "
        f"follower / gap per step | penalty / gap -> γ for {a.fraction:g} | probe KL | "
        "detectable widening (80%) | wall min |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in a.runs:
        print(row(run, a.variant, a.fraction))


if __name__ == "__main__":
    main()
