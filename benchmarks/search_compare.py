"""Strategies side by side at one FLOPs budget, next to the space's max and min archs.

Every run uses the same data, split, max_len, retrain epochs and seed. The max and min archs are
trained from scratch with `nasrec train`; each strategy runs `nasrec search` (search, derive, budget
guarantee, retrain, test once). A finished run (its result.json) is reused when the script is rerun,
so an interrupted benchmark continues where it stopped.

    .venv/bin/python benchmarks/search_compare.py --data ../shared/data/ml-1m/ml-1m_sasrec5.txt \\
        --space sasrec-ml1m --max-len 50 --budget-fraction 0.333 --search-epochs 5 --retrain-epochs 30
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from nasrec import api, cost
from nasrec.arch import get_space
from nasrec.search import SearchConfig, run_search
from nasrec.train import TrainConfig


def run_reference(name: str, arch: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    config = TrainConfig(epochs=args.retrain_epochs, patience=args.patience, seed=args.seed,
                         all_windows=not args.last_window_only)
    return api.train(args.data, space=args.space, arch=arch, out=out, max_len=args.max_len, config=config)


def run_strategy(name: str, budget: float, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    params = dict(p.split("=", 1) for p in args.set if p.startswith(f"{name}.")) if args.set else {}
    params = {k.split(".", 1)[1]: v for k, v in params.items()}
    config = SearchConfig(strategy=name, budget_flops=budget, space=args.space, params=params, max_len=args.max_len,
                          search_epochs=args.search_epochs, retrain_epochs=args.retrain_epochs,
                          patience=args.patience, seed=args.seed, all_windows=not args.last_window_only)
    return run_search(args.data, config, out)


def row(name: str, r: dict[str, Any], max_ndcg: float | None, max_flops: int) -> str:
    full, pop = r["metrics"]["test"]["full"], r["metrics"]["test"]["pop100"]
    rel = f"{full['ndcg@10'] / max_ndcg:.3f}" if max_ndcg else "-"
    lat = r.get("latency_ms") or {}
    return (f"| {name} | `{r['arch_id']}` {_label(r['arch'])} | {r['flops']:.3g} | {r['flops'] / max_flops:.3f} | "
            f"{r['params']:,} | {lat.get('batch_1', 0):.1f} / {lat.get('batch_256', 0):.0f} | "
            f"{full['recall@10']:.4f} | {full['ndcg@10']:.4f} | {full['mrr@10']:.4f} | {rel} | "
            f"{pop['recall@10']:.4f} | {pop['ndcg@10']:.4f} | {r.get('search_seconds', 0):.0f} | "
            f"{r.get('retrain_seconds', r.get('train', {}).get('seconds', 0)):.0f} | "
            f"{'yes' if r.get('projected') else 'no' if 'projected' in r else '-'} |")


def _label(arch: dict[str, Any]) -> str:
    inner = ".".join(str(i) for i in arch["inner"])
    gates = f" g{arch['gates']}" if arch.get("gates") else ""
    return f"L{arch['depth']} h{arch['hidden']} i{inner} {arch['attention']}{gates}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/ml-1m/ml-1m_sasrec5.txt")
    parser.add_argument("--space", default="sasrec-ml1m")
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--budget-fraction", type=float, default=1 / 3, help="budget = this x the space's max FLOPs")
    parser.add_argument("--budget-flops", type=float, default=None, help="an absolute budget instead")
    parser.add_argument("--strategies", default="darts,proxyless,recnas,random")
    parser.add_argument("--references", default="max,min", help="archs trained from scratch for comparison")
    parser.add_argument("--search-epochs", type=int, default=5)
    parser.add_argument("--retrain-epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--last-window-only", action="store_true", help="one training window per user")
    parser.add_argument("--set", action="append", default=[], help="STRATEGY.key=value")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="benchmarks/out/search_compare")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = api.DataOptions(source=args.data).load()
    space = get_space(args.space)
    rng = cost.flops_range(space, data.n_items, args.max_len)
    max_flops = cost.flops(space.max_arch(), data.n_items, args.max_len)
    budget = args.budget_flops or args.budget_fraction * max_flops
    print(f"{space.name}: max arch {max_flops:,} FLOPs, space range {rng.min_flops:,}..{rng.max_flops:,}; "
          f"budget {budget:,.0f}", flush=True)

    results: dict[str, dict[str, Any]] = {}
    jobs = [(f"{r} arch", "ref", r) for r in args.references.split(",") if r]
    jobs += [(s, "search", s) for s in args.strategies.split(",") if s]
    for name, kind, what in jobs:
        target = out / name.replace(" ", "_")
        if (target / "result.json").is_file():
            results[name] = json.loads((target / "result.json").read_text())
            print(f"{name}: reused {target / 'result.json'}", flush=True)
            continue
        start = time.perf_counter()
        results[name] = run_reference(name, what, args, target) if kind == "ref" else run_strategy(what, budget,
                                                                                                  args, target)
        print(f"{name}: done in {time.perf_counter() - start:.0f}s, test full ndcg@10 "
              f"{results[name]['metrics']['test']['full']['ndcg@10']:.4f}", flush=True)

    max_ndcg = results.get("max arch", {}).get("metrics", {}).get("test", {}).get("full", {}).get("ndcg@10")
    lines = [
        f"Data `{data.name}` ({data.n_users:,} users, {data.n_items:,} items), space `{space.name}`, "
        f"max_len {args.max_len}, budget {budget:.4g} FLOPs ({budget / max_flops:.3f} x max arch), "
        f"search epochs {args.search_epochs}, retrain epochs {args.retrain_epochs} (patience {args.patience}), "
        f"seed {args.seed}, {'last window per user' if args.last_window_only else 'all windows'}; "
        f"test = leave-one-out last item; full ranking unless marked pop100 (100 popularity-sampled negatives).",
        "",
        "| run | arch | FLOPs | x max | params | latency ms b1 / b256 | R@10 | NDCG@10 | MRR@10 | NDCG / max | "
        "pop100 R@10 | pop100 NDCG@10 | search s | retrain s | projected |",
        "|" + "---|" * 15,
    ]
    lines += [row(name, r, max_ndcg, max_flops) for name, r in results.items()]
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    (out / "summary.json").write_text(json.dumps({"budget": budget, "max_flops": max_flops, "args": vars(args),
                                                  "results": results}, indent=2, default=str))
    print(table)


if __name__ == "__main__":
    main()
