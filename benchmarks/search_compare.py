"""Strategies side by side at FLOPs budgets, next to reference archs of the space trained from scratch.

Every run uses the same data, split, max_len, retrain epochs and seed. References (`max`, `min`,
`max-linear`, `max-softmax`: the space's largest arch with that attention kind; any arch with `--arch JSON`)
are trained with `nasrec train`; each search runs the whole pipeline (search, derive, budget guarantee, retrain, test
once). A finished run (its result.json) is reused and an interrupted one resumed when the script is
rerun, so the benchmark continues where it stopped. `--only` runs some jobs (so several processes can
share one output directory, e.g. on a GPU); the table holds every finished run of the directory.

    .venv/bin/python benchmarks/search_compare.py --data ../shared/data/ml-1m/ml-1m_sasrec5.txt \\
        --space sasrec-ml1m --max-len 50 --budget 0.333x --budget 2e8 --search-epochs 5 --retrain-epochs 30 \\
        --strategy darts --strategy easrec --strategy easrec:gates=none

A budget is absolute FLOPs (`2e8`) or a share of the max arch's FLOPs (`0.333x`). A strategy entry is
`NAME` or `NAME:key=value,key=value` (an ablation, e.g. `easrec:constraint=static`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nasrec import api, cost
from nasrec.arch import Arch, SearchSpace, get_space, parse_arch
from nasrec.errors import NasrecError
from nasrec.search import PROJECTION_FILL, SearchConfig, run_search
from nasrec.train import EpochLog, TrainConfig, TrainState

DEFAULT_STRATEGIES = ["darts", "proxyless", "recnas", "random", "easrec"]


@dataclasses.dataclass(frozen=True)
class Job:
    name: str  # table row and directory
    kind: str  # "ref" or "search"
    arch: Arch | None = None
    strategy: str = ""
    params: dict[str, str] = dataclasses.field(default_factory=dict)
    budget: float = 0.0

    @property
    def directory(self) -> str:
        return "".join(c if c.isalnum() or c in "-." else "_" for c in self.name)


def reference_arch(space: SearchSpace, name: str) -> Arch:
    size, _, kind = name.partition("-")
    if size not in ("max", "min") or (kind and kind not in space.attentions):
        raise SystemExit(f"--references: {name!r}; expected max, min, max-ATTENTION or min-ATTENTION "
                         f"({', '.join(space.attentions)})")
    pick = space.max_arch if size == "max" else space.min_arch
    return pick(kind or None)  # type: ignore[arg-type]


def parse_budget(text: str, max_flops: int) -> float:
    return float(text[:-1]) * max_flops if text.endswith("x") else float(text)


def parse_strategy(entry: str) -> tuple[str, dict[str, str]]:
    name, _, rest = entry.partition(":")
    params = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
    return name, params


def make_jobs(args: argparse.Namespace, space: SearchSpace, max_flops: int) -> list[Job]:
    jobs = [Job(f"{r} arch", "ref", arch=reference_arch(space, r)) for r in args.references.split(",") if r]
    for text in args.arch or []:  # any arch of the space, e.g. what a strategy might have found
        arch = parse_arch(text, space)
        jobs.append(Job(f"{arch.label} arch", "ref", arch=arch))
    for text in args.budget or ["0.333x"]:
        budget = parse_budget(text, max_flops)
        for entry in args.strategy or DEFAULT_STRATEGIES:
            if not entry:  # --strategy "": references only
                continue
            name, params = parse_strategy(entry)
            jobs.append(Job(f"{entry} @{budget:.3g}", "search", strategy=name, params=params, budget=budget))
    return jobs


def run_job(job: Job, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    resume = (out / "config.json").is_file()  # started before: continue from its checkpoints
    if job.kind == "ref":
        config = TrainConfig(epochs=args.retrain_epochs, patience=args.patience, min_epochs=args.min_epochs,
                             seed=args.seed, all_windows=not args.last_window_only)
        if resume and not (out / "checkpoint.pt").is_file():
            resume = False
        return api.train(args.data, space=args.space, arch=job.arch, out=out, max_len=args.max_len, config=config,
                         resume=resume, device=args.device, on_epoch=_log_epoch("train"))
    config = SearchConfig(strategy=job.strategy, budget_flops=job.budget, space=args.space, params=job.params,
                          max_len=args.max_len, search_epochs=args.search_epochs, retrain_epochs=args.retrain_epochs,
                          patience=args.patience, min_epochs=args.min_epochs, seed=args.seed,
                          all_windows=not args.last_window_only, device=args.device,
                          projection_fill=args.projection_fill)
    return run_search(args.data, config, out, resume=resume, on_search_epoch=_log_search_epoch,
                      on_retrain_epoch=_log_epoch("retrain"))


# One flushed line per epoch, so a job's log shows where a long run stands.
def _log_search_epoch(epoch: int, row: dict[str, Any]) -> None:
    loss = row.get("weight_loss")
    loss_text = f"loss {loss:.4f}  " if loss is not None else ""
    print(f"search step {epoch}: {loss_text}arch {row.get('argmax') or row.get('arch')}", flush=True)


def _log_epoch(stage: str) -> Callable[[EpochLog, TrainState], None]:
    def log(epoch: EpochLog, state: TrainState) -> None:
        print(f"{stage} epoch {epoch.epoch}: loss {epoch.loss:.4f}  valid ndcg@10 {epoch.valid['ndcg@10']:.4f}  "
              f"best {state.best_score:.4f}@{state.best_epoch}  {epoch.seconds:.0f}s", flush=True)

    return log


def row(name: str, r: dict[str, Any], max_ndcg: float | None, max_flops: int) -> str:
    full, pop = r["metrics"]["test"]["full"], r["metrics"]["test"]["pop100"]
    rel = f"{full['ndcg@10'] / max_ndcg:.3f}" if max_ndcg else "-"
    lat = r.get("latency_ms") or {}
    budget = f"{r['budget_flops']:.3g}" if "budget_flops" in r else "-"
    search_s = r.get("search_seconds", 0)
    retrain_s = r.get("retrain_seconds", r.get("train", {}).get("seconds", 0))
    return (f"| {name} | {budget} | `{r['arch_id']}` {_label(r['arch'])} | {r['flops']:.3g} | "
            f"{r['flops'] / max_flops:.3f} | {r['params']:,} | {lat.get('batch_1', 0):.2f} / "
            f"{lat.get('batch_256', 0):.1f} | {full['recall@10']:.4f} | {full['ndcg@10']:.4f} | {full['mrr@10']:.4f} | "
            f"{rel} | {pop['recall@10']:.4f} | {pop['ndcg@10']:.4f} | {search_s:.0f} | {retrain_s:.0f} | "
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
    parser.add_argument("--budget", action="append", help="FLOPs (2e8) or share of the max arch (0.333x); "
                        "repeatable (default 0.333x)")
    parser.add_argument("--strategy", action="append", help=f"NAME or NAME:key=value,...; repeatable "
                        f"(default {', '.join(DEFAULT_STRATEGIES)}; \"\" for none)")
    parser.add_argument("--references", default="max,min", help="archs trained from scratch: max, min, max-linear, ...")
    parser.add_argument("--arch", action="append", help="a JSON arch of the space trained from scratch as a "
                        "reference; repeatable")
    parser.add_argument("--only", action="append", help="run only the jobs of these names (see --list)")
    parser.add_argument("--list", action="store_true", help="print the job names and exit")
    parser.add_argument("--table-only", action="store_true", help="run nothing: the table of the finished runs")
    parser.add_argument("--search-epochs", type=int, default=5)
    parser.add_argument("--retrain-epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--min-epochs", type=int, default=0, help="patience may not stop a retrain before this epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--projection-fill", type=float, default=PROJECTION_FILL,
                        help="budget guarantee: least share of the budget a projected arch keeps (0: the rule "
                             "before session 13)")
    parser.add_argument("--last-window-only", action="store_true", help="one training window per user")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="benchmarks/out/search_compare")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    out = Path(args.out)
    data = api.DataOptions(source=args.data).load()
    space = get_space(args.space)
    rng = cost.flops_range(space, data.n_items, args.max_len)
    max_flops = cost.flops(space.max_arch(), data.n_items, args.max_len)
    jobs = make_jobs(args, space, max_flops)
    if args.list:
        print("\n".join(job.name for job in jobs))
        return
    unknown = set(args.only or []) - {job.name for job in jobs}
    if unknown:
        raise SystemExit(f"--only: no job named {', '.join(sorted(unknown))}; see --list")
    print(f"{space.name}: max arch {max_flops:,} FLOPs, space range {rng.min_flops:,}..{rng.max_flops:,}",
          flush=True)
    out.mkdir(parents=True, exist_ok=True)

    results: dict[str, dict[str, Any]] = {}
    for job in jobs:
        target = out / job.directory
        if (target / "result.json").is_file():
            results[job.name] = json.loads((target / "result.json").read_text())
            continue
        if args.table_only or (args.only and job.name not in args.only):
            continue
        start = time.perf_counter()
        results[job.name] = run_job(job, args, target)
        print(f"{job.name}: done in {time.perf_counter() - start:.0f}s, test full ndcg@10 "
              f"{results[job.name]['metrics']['test']['full']['ndcg@10']:.4f}", flush=True)

    max_ndcg = results.get("max arch", {}).get("metrics", {}).get("test", {}).get("full", {}).get("ndcg@10")
    device = next(iter(results.values()), {}).get("machine", {}).get("device", "?")
    lines = [
        f"Data `{data.name}` ({data.n_users:,} users, {data.n_items:,} items), space `{space.name}`, "
        f"max_len {args.max_len}, max arch {max_flops:.4g} FLOPs, search epochs {args.search_epochs}, "
        f"retrain epochs {args.retrain_epochs} (patience {args.patience}, min epochs {args.min_epochs}), "
        f"seed {args.seed}, "
        f"{'last window per user' if args.last_window_only else 'all windows'}, device {device}; "
        f"test = leave-one-out last item; full ranking unless marked pop100 (100 popularity-sampled negatives).",
        "",
        "| run | budget | arch | FLOPs | x max | params | latency ms b1 / b256 | R@10 | NDCG@10 | MRR@10 | "
        "NDCG / max | pop100 R@10 | pop100 NDCG@10 | search s | retrain s | projected |",
        "|" + "---|" * 16,
    ]
    lines += [row(name, r, max_ndcg, max_flops) for name, r in results.items()]
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    (out / "summary.json").write_text(json.dumps({"max_flops": max_flops, "args": vars(args), "results": results},
                                                 indent=2, default=str))
    print(table)


if __name__ == "__main__":
    try:
        main()
    except NasrecError as err:  # bad data, space or setting: one line, as the CLI reports it
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
