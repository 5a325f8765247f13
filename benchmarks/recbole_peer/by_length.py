#!/usr/bin/env python
"""Validation and test NDCG@10 by users' history length: nasrec runs beside RecBole runs' saved models.

    .venv/bin/python benchmarks/recbole_peer/by_length.py \\
        --recbole benchmarks/out/recbole_peer_ml1m_resumed/recbole_eval_ranks.json \\
        benchmarks/out/recbole_peer_ml1m_resumed/nasrec-bert-init-seed{0,1,2,3}

Where one tool is ahead on test and behind on validation, this shows which users carry the difference.
Users are grouped by the length of their test input (every interaction but the last); the first group is
the users whose test input is shorter than max_len, so that their window is padded. RecBole's side is
`recbole_eval_ranks.py`'s output (its best model's per-user ranks on both splits); nasrec's runs are scored
from their saved models on both splits (full ranking, history kept, as RecBole ranks). nasrec's row is the
runs' per-user mean; each run is printed too. `--recbole` repeated (RecBole seeds) averages them per user the
same way, so that seed means are compared rather than one RecBole run. Prints a markdown table, then paired
tests over the users (`nasrec.compare.paired_test`) of nasrec minus RecBole on validation, on test, and of the
change of that difference from validation to test (does one tool gain on test what it lost on validation?).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from nasrec.api import DataOptions
from nasrec.compare import paired_test, run_metric
from nasrec.data.split import leave_one_out
from nasrec.metrics import row_metrics
from nasrec.models.export import load_model
from nasrec.train import arch_ranks


def length_groups(test_input_lengths: np.ndarray, edges: list[int]) -> list[tuple[str, np.ndarray]]:
    """(label, boolean mask) per group of [0, e1), [e1, e2), ..., [e_last, inf) test-input lengths."""
    if sorted(set(edges)) != edges or not edges or edges[0] < 1:
        raise SystemExit(f"--edges {edges}: expected increasing positive integers")
    bounds = [0, *edges, None]
    groups = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        mask = test_input_lengths >= lo if hi is None else (test_input_lengths >= lo) & (test_input_lengths < hi)
        groups.append((f"{lo}+" if hi is None else f"{lo}-{hi - 1}", mask))
    return groups


def grouped(per_user: np.ndarray, groups: list[tuple[str, np.ndarray]]) -> list[float]:
    return [float(per_user[mask].mean()) if mask.any() else float("nan") for _, mask in groups]


def runs_mean(runs: list[tuple[str, dict[str, np.ndarray]]]) -> dict[str, np.ndarray]:
    """Per-user mean over runs of each split's scores (the one run's own when there is one)."""
    return {s: np.mean([r[s] for _, r in runs], axis=0) for s in ("valid", "test")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="nasrec run directories (with model/)")
    p.add_argument("--recbole", type=Path, action="append", required=True,
                   help="RUN/recbole_eval_ranks.json of recbole_eval_ranks.py; repeat it for several RecBole runs")
    p.add_argument("--edges", default=None,
                   help="comma-separated test-input lengths between groups (default: max_len,100,200)")
    args = p.parse_args()
    config = json.loads((args.runs[0] / "config.json").read_text())
    max_len = int(json.loads((args.runs[0] / "result.json").read_text())["max_len"])
    edges = [int(e) for e in args.edges.split(",")] if args.edges else [max_len, 100, 200]
    data = DataOptions(**config["data"]).load()
    splits = leave_one_out(data)
    user_ids = [data.user_ids[u] for u in splits.test.users.tolist()]
    groups = length_groups(np.array([len(h) for h in splits.test.inputs]), edges)

    recbole_runs = []
    for path in args.recbole:
        recbole = json.loads(path.read_text())
        per_split = {}
        for split in ("valid", "test"):
            ranks = recbole[split]
            if set(ranks) != set(user_ids):
                raise SystemExit(f"{path}: its {split} users are not nasrec's: the runs must share their users")
            per_split[split] = np.asarray(row_metrics(torch.tensor([ranks[u] for u in user_ids]), 10)["ndcg@10"])
        recbole_runs.append((f"RecBole ({path.parent.name})" if len(args.recbole) > 1 else "RecBole", per_split))
    nasrec_runs = []
    for run in args.runs:
        if json.loads((run / "result.json").read_text())["metrics"].get("exclude_history", False):
            raise SystemExit(f"{run}: trained with --exclude-history; RecBole's ranks keep history items")
        # run_metric checks the run's data fingerprint and that its model gives back its reported test metric
        test = run_metric(run, "ndcg@10", data, splits.test).per_user
        model = load_model(run / "model")
        valid = row_metrics(arch_ranks(model, model.arch, splits.valid, data.n_items, max_len)["full"], 10)["ndcg@10"]
        nasrec_runs.append((run.name, {"valid": np.asarray(valid), "test": np.asarray(test)}))
    recbole_scores, nasrec = runs_mean(recbole_runs), runs_mean(nasrec_runs)
    rows: list[tuple[str, dict[str, np.ndarray]]] = []
    for tool, runs, mean in (("RecBole", recbole_runs, recbole_scores), ("nasrec", nasrec_runs, nasrec)):
        if len(runs) > 1:
            rows.append((f"{tool}, mean of {len(runs)} runs", mean))
        rows.extend(runs)

    header = ["model", "split", "all", *(f"{label} ({int(mask.sum()):,} users)" for label, mask in groups)]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, scores in rows:
        for split in ("valid", "test"):
            values = [float(scores[split].mean()), *grouped(scores[split], groups)]
            print(f"| {name} | {split} | " + " | ".join(f"{v:.4f}" for v in values) + " |")

    diff = {split: nasrec[split] - recbole_scores[split] for split in ("valid", "test")}
    print()
    for label, a, b in (("valid", nasrec["valid"], recbole_scores["valid"]),
                        ("test", nasrec["test"], recbole_scores["test"]),
                        ("test minus valid", diff["test"], diff["valid"])):
        t = paired_test(a, b)
        print(f"nasrec - RecBole, {label}: {t.difference:+.4f}, 95% interval [{t.ci_low:+.4f}, {t.ci_high:+.4f}], "
              f"sign-flip p {t.p_value:.4f} ({t.n:,} users)")


if __name__ == "__main__":
    main()
