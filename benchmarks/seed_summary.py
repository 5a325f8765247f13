"""Runs grouped by seed: per-seed archs and test NDCG@10, means against a reference group, time against the
reference run of the same seed, and exact permutation tests over the seeds between groups.

For runs whose weights did not come back (the lent GPU returns results without model files), where
`nasrec compare` cannot re-score the test users: the unit here is the seed, not the user, so the tests are far
weaker than `nasrec compare`'s paired ones.

    .venv/bin/python benchmarks/seed_summary.py --reference max='OUT/*-seed*/max_arch' \\
        --group darts='OUT/*-seed*/darts_weight_step_sandwich__9.74e_07' --compare darts:max
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import random
import statistics
from dataclasses import dataclass
from math import comb
from pathlib import Path

from nasrec.compare import arch_label

EXACT_LIMIT = 20_000  # splits enumerated exactly up to this many, sampled beyond


@dataclass(frozen=True)
class Run:
    seed: int
    arch: str
    flops: float
    ndcg: float
    seconds: float  # search + retrain, or training for a reference arch


def load_run(directory: Path) -> Run:
    path = directory / "result.json"
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"{path}: {err}") from err
    if "search_seconds" in result:
        seconds = result["search_seconds"] + result["retrain_seconds"]
    else:
        seconds = result["train"]["seconds"]
    return Run(int(result["seed"]), arch_label(result["arch"]), float(result["flops"]),
               float(result["metrics"]["test"]["full"]["ndcg@10"]), float(seconds))


def load_group(pattern: str) -> list[Run]:
    dirs = sorted(Path(p).parent for p in glob.glob(f"{pattern}/result.json"))
    if not dirs:
        raise SystemExit(f"{pattern}: no finished run (no result.json)")
    runs = sorted((load_run(d) for d in dirs), key=lambda r: r.seed)
    seeds = [r.seed for r in runs]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"{pattern}: more than one run per seed ({seeds})")
    return runs


def permutation_p(a: list[float], b: list[float], seed: int = 0) -> float:
    """Two-sided p of the difference of means under exchangeable labels (exact when the splits are few)."""
    observed = abs(statistics.fmean(a) - statistics.fmean(b))
    pool, n = a + b, len(a)
    total = sum(pool)

    def at_least(chosen: tuple[int, ...] | list[int]) -> bool:
        s = sum(pool[i] for i in chosen)
        return abs(s / n - (total - s) / len(b)) >= observed - 1e-12

    splits = list(itertools.combinations(range(len(pool)), n)) if comb(len(pool), n) <= EXACT_LIMIT else None
    if splits is not None:
        return sum(at_least(c) for c in splits) / len(splits)
    rng = random.Random(seed)
    draws = [rng.sample(range(len(pool)), n) for _ in range(EXACT_LIMIT)]
    return (1 + sum(at_least(d) for d in draws)) / (1 + len(draws))


def parse_named(text: str) -> tuple[str, str]:
    name, sep, pattern = text.partition("=")
    if not sep or not name or not pattern:
        raise SystemExit(f"expected NAME=GLOB, got {text!r}")
    return name, pattern


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, help="NAME=GLOB of run directories (e.g. the max arch's seeds)")
    parser.add_argument("--group", action="append", default=[], help="NAME=GLOB of run directories; repeatable")
    parser.add_argument("--compare", action="append", default=[], help="A:B, two group names; repeatable")
    parser.add_argument("--json", help="also write the summary here")
    args = parser.parse_args()

    ref_name, ref_pattern = parse_named(args.reference)
    groups = {ref_name: load_group(ref_pattern)}
    for text in args.group:
        name, pattern = parse_named(text)
        if name in groups:
            raise SystemExit(f"--group {name}: the name is used twice")
        groups[name] = load_group(pattern)
    reference = groups[ref_name]
    ref_mean = statistics.fmean(r.ndcg for r in reference)
    ref_seconds = {r.seed: r.seconds for r in reference}
    max_flops = max(r.flops for r in reference)

    print(f"NDCG / ref against {ref_name}'s {len(reference)}-seed mean test NDCG@10 {ref_mean:.4f}; "
          f"time against {ref_name}'s run of the same seed.\n")
    print("| group | seed | arch | x ref FLOPs | NDCG@10 | NDCG / ref | time / ref |")
    print("|---|---|---|---|---|---|---|")
    summary: dict[str, dict] = {}
    for name, runs in groups.items():
        for r in runs:
            time_ratio = f"{r.seconds / ref_seconds[r.seed]:.2f}" if r.seed in ref_seconds else "-"
            print(f"| {name} | {r.seed} | {r.arch} | {r.flops / max_flops:.3f} | {r.ndcg:.4f} | "
                  f"{r.ndcg / ref_mean:.3f} | {time_ratio} |")
        values = [r.ndcg for r in runs]
        summary[name] = {"seeds": [r.seed for r in runs], "ndcg": values, "mean": statistics.fmean(values),
                         "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                         "ratio": statistics.fmean(values) / ref_mean}
    print("\n| group | seeds | mean NDCG@10 | sd | mean / ref |")
    print("|---|---|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {len(s['seeds'])} | {s['mean']:.4f} | {s['sd']:.4f} | {s['ratio']:.3f} |")
    tests = []
    if args.compare:
        print("\n| comparison | difference of means | permutation p (over seeds) |")
        print("|---|---|---|")
    for text in args.compare:
        a, sep, b = text.partition(":")
        if not sep or a not in groups or b not in groups:
            raise SystemExit(f"--compare {text!r}: expected A:B with A, B among {', '.join(groups)}")
        va, vb = summary[a]["ndcg"], summary[b]["ndcg"]
        diff, p = statistics.fmean(va) - statistics.fmean(vb), permutation_p(va, vb)
        tests.append({"a": a, "b": b, "difference": diff, "p_value": p})
        print(f"| {a} vs {b} | {diff:+.4f} | {p:.2g} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"reference": ref_name, "groups": summary, "tests": tests}, indent=2))


if __name__ == "__main__":
    main()
