"""Trial concurrency: N trials as 2 concurrent 1-CPU trials against N sequential 2-CPU trials.

Same N trials in both modes, on one local Ray (started once, 127.0.0.1, `--cpus` CPUs): strategy `random`
(its effort parameters pinned, so only the learning rate varies and every trial does the same work) on
the tiny space over a synthetic data file. Each trial sets torch's thread count to its CPU share, so the
sequential mode runs each trial on 2 threads, the concurrent mode 2 trials on 1 thread each. The figure
is the wall-clock ratio sequential / concurrent (target >= 1.5 on a 2-core machine). A third mode,
sequential 1-CPU trials, separates what the concurrency gains from what 2 threads per small model lose.

    .venv/bin/python benchmarks/trial_concurrency.py [--trials 4] [--out benchmarks/out/trial_concurrency.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from nasrec import cost
from nasrec.arch import get_space
from nasrec.data import SyntheticConfig, generate_synthetic
from nasrec.orchestration import TrialsConfig, ray_session, run_trials
from nasrec.search import SearchConfig

MODES = {  # name: (concurrency, cpus_per_trial)
    "concurrent_1cpu": (2, 1.0),
    "sequential_2cpu": (1, 2.0),
    "sequential_1cpu": (1, 1.0),
}


def write_data(path: Path, users: int, items: int, mean_len: int) -> Path:
    data = generate_synthetic(SyntheticConfig(n_users=users, n_items=items, mean_len=mean_len, seed=0))
    path.write_text("".join(f"{u} {' '.join(map(str, s.tolist()))}\n"
                            for u, s in zip(data.user_ids, data.sequences, strict=True)))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--mean-len", type=int, default=20)
    parser.add_argument("--retrain-epochs", type=int, default=2)
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/trial_concurrency.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="nasrec-bench-") as tmp:
        data = write_data(Path(tmp) / "synthetic.txt", args.users, args.items, args.mean_len)
        space = get_space("tiny")
        rng = cost.flops_range(space, args.items, space.supernet.max_len)
        budget = rng.min_flops + 0.5 * (rng.max_flops - rng.min_flops)
        base = SearchConfig(strategy="random", budget_flops=budget, space="tiny", retrain_epochs=args.retrain_epochs,
                            patience=args.retrain_epochs, params={"n_candidates": 2, "epochs_per_candidate": 1})
        machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__}
        report: dict = {"machine": machine, "trials": args.trials, "ray_cpus": args.cpus,
                        "data": {"users": args.users, "items": args.items, "mean_len": args.mean_len},
                        "retrain_epochs": args.retrain_epochs, "modes": {}}
        with ray_session(num_cpus=args.cpus):
            for name in args.modes.split(","):
                concurrency, cpus = MODES[name]
                trials = TrialsConfig(strategies=("random",), budgets=(budget,), trials=args.trials,
                                      concurrency=concurrency, cpus_per_trial=cpus, seed=0)
                load = os.getloadavg()[0]
                start = time.perf_counter()
                rows = run_trials(str(data), base, trials, Path(tmp) / name, tracker=None)
                wall = time.perf_counter() - start
                results = [json.loads((Path(r["run_dir"]) / "result.json").read_text()) for r in rows]
                pipeline = [r["search_seconds"] + r["retrain_seconds"] for r in results]
                report["modes"][name] = {
                    "concurrency": concurrency, "cpus_per_trial": cpus, "wall_seconds": wall,
                    "statuses": [r["status"] for r in rows], "trial_pipeline_seconds": pipeline,
                    "torch_threads": sorted({r["machine"]["threads"] for r in results}),
                    "load_average_1min_before": load}
                print(f"{name:16s} concurrency {concurrency} x {cpus:g} CPU: {wall:7.1f}s wall, "
                      f"pipeline {sum(pipeline) / len(pipeline):6.1f}s per trial (load {load:.1f})", flush=True)
    modes = report["modes"]
    if {"concurrent_1cpu", "sequential_2cpu"} <= set(modes):
        ratio = modes["sequential_2cpu"]["wall_seconds"] / modes["concurrent_1cpu"]["wall_seconds"]
        report["speedup_concurrent_vs_sequential_2cpu"] = ratio
        print(f"speed-up, 2 concurrent 1-CPU trials vs sequential 2-CPU trials: {ratio:.2f}x (target >= 1.5x)")
    if {"concurrent_1cpu", "sequential_1cpu"} <= set(modes):
        ratio = modes["sequential_1cpu"]["wall_seconds"] / modes["concurrent_1cpu"]["wall_seconds"]
        report["speedup_concurrent_vs_sequential_1cpu"] = ratio
        print(f"speed-up, 2 concurrent 1-CPU trials vs sequential 1-CPU trials: {ratio:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
