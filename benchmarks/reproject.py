"""Project a finished search again with another budget-guarantee rule, without training anything.

    .venv/bin/python benchmarks/reproject.py RUN_DIR [RUN_DIR ...] [--fill 0.8] [--changed-only]

RUN_DIR is a `nasrec search` output (search.json with the strategy's preference over the feasible archs,
result.json). Prints, per run, the derived arch, the arch its result.json holds and the arch
`nasrec.budget.enforce_budget` takes now with `--fill`. With `--changed-only` the exit code says whether any
run would get another arch (0: yes, 1: none), for benchmarks/cpu_runs.sh's reproject-PHASE (one run at a time).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nasrec import cost
from nasrec.arch import Arch, get_space
from nasrec.search import PROJECTION_FILL, enforce_budget, table_preference


def reproject(run: Path, fill: float) -> tuple[Arch, Arch, Arch, float]:
    """(derived, arch in result.json, arch chosen now, its share of the budget) of one finished search."""
    result = json.loads((run / "result.json").read_text())
    done = json.loads((run / "search.json").read_text())
    n_items, max_len = result["data"]["items"], result["max_len"]
    old = Arch.from_dict(result["arch"])
    if cost.flops(old, n_items, max_len) != result["flops"]:  # the FLOPs model or the data changed since
        raise SystemExit(f"{run}: result.json's FLOPs {result['flops']:,} differ from nasrec.cost's now")
    derived = Arch.from_dict(done["derived"])
    preference = None if done["preference"] is None else table_preference(done["preference"])
    chosen, _ = enforce_budget(derived, get_space(result["space"]), result["budget_flops"],
                               lambda a: cost.flops(a, n_items, max_len), preference, fill)
    return derived, old, chosen, cost.flops(chosen, n_items, max_len) / result["budget_flops"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--fill", type=float, default=PROJECTION_FILL)
    parser.add_argument("--changed-only", action="store_true")
    args = parser.parse_args()
    changed = False
    for run in args.runs:
        if not ((run / "search.json").is_file() and (run / "result.json").is_file()):
            print(f"{run}: not a finished search (no search.json and result.json), skipped")
            continue
        derived, old, chosen, share = reproject(run, args.fill)
        changed = changed or chosen != old
        print(f"{run}: derived {derived.label}; result.json {old.label}; now (fill {args.fill:g}) {chosen.label} "
              f"at {share:.2f}x the budget{'' if chosen != old else ', unchanged'}")
    if args.changed_only:
        sys.exit(0 if changed else 1)


if __name__ == "__main__":
    main()
