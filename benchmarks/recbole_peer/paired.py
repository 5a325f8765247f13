#!/usr/bin/env python
"""Paired test of nasrec runs against RecBole's run over the shared test users (the peer benchmark).

    .venv/bin/python benchmarks/recbole_peer/paired.py --recbole benchmarks/out/recbole_peer/recbole_test_ranks.json \\
        benchmarks/out/recbole_peer/nasrec-stride5-lr3e-3-cosine40-seed{0,1,2}

RecBole's side is OUT/recbole_test_ranks.json, written by run_recbole.py: each test user's full-ranking rank
(history kept, ties counted against the target, as nasrec counts them), keyed by the raw user id; `--recbole`
given more than once (RecBole's seeds) averages them per user. nasrec's
side is each run's per-user metric as `nasrec compare` computes it (`nasrec.compare.run_metric`: re-scored
from the saved model or read from RUN/test_ranks.json); several runs are averaged per user, like
`nasrec compare`'s groups. The test is `nasrec.compare.paired_test` (bootstrap interval and sign-flip
p-value of the per-user difference). Stops with an error when the users differ, a run kept history items
out of the ranking, or RecBole's ranks do not give back the test metric RecBole reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from nasrec.api import DataOptions
from nasrec.compare import check_metric, paired_test, run_metric
from nasrec.data.split import leave_one_out
from nasrec.metrics import row_metrics

# RecBole reports metrics rounded to 6 decimals; ties are the only other way ranks could differ from its own.
REPORTED_TOLERANCE = 2e-6


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="nasrec run directories (the --out of `nasrec train`)")
    p.add_argument("--recbole", type=Path, action="append", required=True,
                   help="OUT/recbole_test_ranks.json of run_recbole.py; repeat for several RecBole runs "
                        "(averaged per user)")
    p.add_argument("--metric", default="ndcg@10", help="recall@K, mrr@K or ndcg@K (full ranking)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and sign-flip resamples")
    p.add_argument("--json", type=Path, help="also write the result here")
    return p.parse_args()


def recbole_per_user(path: Path, user_ids: list[str], metric: str) -> tuple[np.ndarray, float]:
    """RecBole's per-user `metric` in the order of `user_ids` and the value RecBole reported for it."""
    kind, k = check_metric(metric)
    saved = json.loads(path.read_text())
    if saved.get("protocol") != "full" or saved.get("exclude_history") is not False:
        raise SystemExit(f"{path}: expected full-ranking ranks with history kept")
    ranks: dict[str, int] = saved["ranks"]
    missing, extra = set(user_ids) - set(ranks), set(ranks) - set(user_ids)
    if missing or extra:
        raise SystemExit(f"{path}: {len(missing)} nasrec test users without a RecBole rank, {len(extra)} RecBole "
                         "users not in nasrec's data: the runs must share their test users")
    per_user = row_metrics(torch.tensor([ranks[u] for u in user_ids]), k)[f"{kind}@{k}"].numpy()
    reported = float(saved["reported_test"][f"{kind}@{k}"])
    if abs(float(per_user.mean()) - reported) > REPORTED_TOLERANCE:
        raise SystemExit(f"{path}: the ranks give {kind}@{k} {per_user.mean():.6f}, RecBole reported "
                         f"{reported:.6f}: ranks and report do not belong together")
    return per_user, reported


def recbole_side(paths: list[Path], user_ids: list[str], metric: str
                 ) -> tuple[np.ndarray, list[tuple[Path, np.ndarray, float]]]:
    """RecBole's runs averaged per user (its seeds, as nasrec's runs are), and each run as recbole_per_user
    gives it."""
    runs = [(path, *recbole_per_user(path, user_ids, metric)) for path in paths]
    return np.mean([per_user for _, per_user, _ in runs], axis=0), runs


def check_history_kept(runs: list[Path]) -> None:
    """RecBole ranks with history items kept; a nasrec run that dropped them is not comparable."""
    for run in runs:
        if json.loads((run / "result.json").read_text())["metrics"].get("exclude_history", False):
            raise SystemExit(f"{run}: trained with --exclude-history; RecBole's ranks keep history items")


def main() -> None:
    args = parse_args()
    check_history_kept(args.runs)
    config = json.loads((args.runs[0] / "config.json").read_text())
    data = DataOptions(**config["data"]).load()
    test = leave_one_out(data).test
    scored = [run_metric(run, args.metric, data, test) for run in args.runs]
    nasrec = np.mean([s.per_user for s in scored], axis=0)
    user_ids = [data.user_ids[u] for u in test.users.tolist()]
    recbole, recbole_runs = recbole_side(args.recbole, user_ids, args.metric)
    result = {"metric": f"{args.metric.lower()} (full ranking, test)", "data": data.name, "users": len(nasrec),
              "nasrec": [{"run": s.run, "mean": s.mean, "source": s.source} for s in scored],
              "recbole": [{"ranks": str(path), "mean": float(per_user.mean()), "reported": reported}
                          for path, per_user, reported in recbole_runs],
              "test": asdict(paired_test(nasrec, recbole, seed=args.seed))}
    for s in scored:
        print(f"nasrec  {s.mean:.4f}  {s.run} ({s.source})")
    for path, per_user, reported in recbole_runs:
        print(f"RecBole {per_user.mean():.4f}  {path} (reported {reported:.6f})")
    t = result["test"]
    print(f"{result['metric']} over {t['n']:,} users, nasrec ({len(scored)} run(s), per-user mean) minus "
          f"RecBole ({len(recbole_runs)} run(s), per-user mean): {t['difference']:+.4f} "
          f"({t['difference'] / t['mean_b']:+.1%}), {t['confidence']:.0%} "
          f"interval [{t['ci_low']:+.4f}, {t['ci_high']:+.4f}], sign-flip p {t['p_value']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
