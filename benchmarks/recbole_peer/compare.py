#!/usr/bin/env python
"""Compare the RecBole and nasrec SASRec runs of the peer benchmark; write a markdown table.

    .venv/bin/python benchmarks/recbole_peer/compare.py            (from the repo root)

Reads OUT/recbole.json (run_recbole.py) and OUT/nasrec/result.json (run_nasrec.sh), finds RecBole's best
validation NDCG@10 and the training wall time at which each run first reached it, and writes OUT/compare.md.
Wall times: RecBole, from Trainer.fit() start to the end of the epoch's validation; nasrec, the running sum
of its per-epoch `seconds` (training + validation). Both exclude data loading and model construction.
RecBole rounds its metrics to 6 decimals, so nasrec's validation NDCG@10 is rounded the same way before
the comparison. With nasrec importable (the repo's venv) and OUT/recbole_sequences.json present, it also
checks that both tools saw every user's items in the same order.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "benchmarks/out/recbole_peer"
DECIMALS = 6


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recbole", type=Path, default=OUT / "recbole.json")
    p.add_argument("--nasrec", type=Path, default=OUT / "nasrec/result.json")
    p.add_argument("--extra", action="append", default=[], metavar="LABEL=RESULT_JSON",
                   help="another nasrec run to list below the main table (e.g. with --exclude-history)")
    p.add_argument("--sequences", type=Path, default=OUT / "recbole_sequences.json")
    p.add_argument("--data", default="../shared/data/ml-100k/ml-100k.inter", help="for the order check")
    p.add_argument("--out", type=Path, default=OUT / "compare.md")
    p.add_argument("--together", action="store_true",
                   help="the two runs ran at the same time, one core each (default: one after the other)")
    return p.parse_args()


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "never reached"
    if seconds >= 120:
        return f"{seconds:,.0f} s ({seconds / 60:.1f} min)"
    return f"{seconds:.1f} s"


def first_reaching(history: list[dict], target: float) -> dict | None:
    for h in history:
        if round(h["valid_ndcg@10"], DECIMALS) >= target:
            return h
    return None


def recbole_run(path: Path) -> dict:
    r = json.loads(path.read_text())
    hist = [{"epoch": h["epoch"], "valid_ndcg@10": h["valid_ndcg@10"], "cum": h["cumulative_seconds"],
             "cpu": h.get("cumulative_cpu_seconds"), "load": h.get("loadavg_1min")} for h in r["train"]["history"]]
    train = r["train"]
    return {"label": f"RecBole {r['versions']['recbole']} SASRec", "history": hist, "status": r["status"],
            "epochs": len(hist),
            "best_epoch": train.get("best_epoch") or max(hist, key=lambda h: h["valid_ndcg@10"])["epoch"],
            "total": train.get("seconds", hist[-1]["cum"] if hist else 0.0),
            "total_cpu": train.get("cpu_seconds", hist[-1]["cpu"] if hist else None),
            "test": r.get("metrics", {}).get("test"), "stopped_by": train.get("stopped_by", "(still running)"),
            "versions": r["versions"], "params": r.get("params")}


def nasrec_run(path: Path, label: str) -> dict:
    r = json.loads(path.read_text())
    cum, hist = 0.0, []
    sampled: dict[int, dict] = {}
    tsv = path.parent / "epochs.tsv"
    if tsv.is_file():
        with tsv.open() as f:
            sampled = {int(row["epoch"]): row for row in csv.DictReader(f, delimiter="\t")}
    for h in r["train"]["history"]:
        cum += h["seconds"]
        s = sampled.get(h["epoch"], {})
        hist.append({"epoch": h["epoch"], "valid_ndcg@10": h["valid_ndcg@10"], "cum": cum,
                     "cpu": float(s["cpu_seconds_since_process_start"]) if s else None,
                     "load": float(s["loadavg_1min"]) if s else None})
    # CPU at the end of the last epoch (the process's total also holds the test evaluation and the
    # latency measurement that `nasrec train` runs after training).
    total_cpu = hist[-1]["cpu"] if hist and hist[-1]["cpu"] is not None else None
    return {"label": label, "history": hist, "status": "done", "epochs": r["train"]["epochs_run"],
            "best_epoch": r["train"]["best_epoch"], "total": r["train"]["seconds"], "total_cpu": total_cpu,
            "test": r["metrics"]["test"]["full"], "exclude_history": r["metrics"]["exclude_history"],
            "stopped_by": stopped_by(r["train"]),
            "params": r.get("params"), "machine": r.get("machine")}


def stopped_by(train: dict) -> str:
    """nasrec's `train.stopped_by` in the words RecBole's side uses; results written before nasrec recorded
    it stopped on patience or on the epoch count."""
    words = {"patience": "early_stopping", "epochs": "max_epochs", "time": "time_cap"}
    if "stopped_by" in train:
        return words[train["stopped_by"]]
    return "early_stopping" if train["epochs_run"] < train["epochs"] else "max_epochs"


def row(run: dict, target: float) -> list[str]:
    hit = first_reaching(run["history"], target)
    best = max(run["history"], key=lambda h: h["valid_ndcg@10"])
    test = run["test"] or {}
    metric = lambda k: f"{test[k]:.4f}" if k in test else "n/a"  # noqa: E731
    reach = "never reached" if hit is None else f"{fmt_s(hit['cum'])} (epoch {hit['epoch']})"
    return [run["label"], f"{run['epochs']} (best {run['best_epoch']})", reach, fmt_s(run["total"]),
            f"{best['valid_ndcg@10']:.4f}", metric("recall@10"), metric("ndcg@10"), metric("mrr@10"),
            metric("recall@20"), metric("ndcg@20"), metric("mrr@20")]


def cpu_row(run: dict, target: float) -> list[str]:
    hit = first_reaching(run["history"], target)
    to_target = None if hit is None else hit["cpu"]
    loads = [h["load"] for h in run["history"] if h.get("load") is not None]
    return [run["label"], "never reached" if hit is None else fmt_s(to_target) if to_target is not None else "n/a",
            fmt_s(run["total_cpu"]) if run["total_cpu"] is not None else "n/a",
            f"{sum(loads) / len(loads):.1f}" if loads else "n/a"]


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def order_check(sequences: Path, data: str) -> str:
    if not sequences.is_file():
        return "order check: skipped (no recbole_sequences.json)"
    try:
        from nasrec.data import load_data
    except ImportError:
        return "order check: skipped (nasrec not importable; run with the repo's .venv)"
    d = load_data(Path(REPO / data if not Path(data).is_absolute() else data))
    rb = json.loads(sequences.read_text())
    ns = {u: [d.item_ids[i - 1] for i in s] for u, s in zip(d.user_ids, d.sequences, strict=True)}
    differ = sum(ns.get(u) != s for u, s in rb.items())
    same_users = set(ns) == set(rb)
    return (f"order check: {len(ns)} users / {sum(map(len, ns.values()))} interactions in nasrec, "
            f"{len(rb)} / {sum(map(len, rb.values()))} in RecBole; same users: {same_users}; "
            f"users whose item order differs: {differ}")


def main() -> None:
    args = parse_args()
    rb = recbole_run(args.recbole)
    ns = nasrec_run(args.nasrec, "nasrec SASRec")
    if not rb["history"]:
        sys.exit("recbole.json has no epochs yet")
    target = round(max(h["valid_ndcg@10"] for h in rb["history"]), DECIMALS)
    rb_hit, ns_hit = first_reaching(rb["history"], target), first_reaching(ns["history"], target)

    header = ["tool", "epochs", "time to RecBole's best valid NDCG@10", "total train time", "best valid NDCG@10",
              "test Recall@10", "test NDCG@10", "test MRR@10", "test Recall@20", "test NDCG@20", "test MRR@20"]
    schedule = "at the same time, one core each" if args.together else "one after the other"
    out = [f"# RecBole vs nasrec: SASRec on {Path(args.data).name}\n",
           f"RecBole's best validation NDCG@10: **{target:.4f}** (epoch {rb_hit['epoch']}). Full ranking over all "
           f"items, history items NOT excluded (RecBole's behaviour for sequential models; nasrec run with "
           f"--no-exclude-history), leave-one-out, one torch thread each, run {schedule}.\n",
           table(header, [row(rb, target), row(ns, target)]), ""]
    if rb["status"] != "done":
        out.append(f"**RecBole's run is not finished** ({rb['epochs']} epochs so far): numbers are provisional.\n")
    if ns_hit is None:
        out.append(f"nasrec never reached RecBole's best validation NDCG@10 (its best: "
                   f"{max(h['valid_ndcg@10'] for h in ns['history']):.4f}).")
        time_ratio = None
    else:
        time_ratio = ns_hit["cum"] / rb_hit["cum"]
        out.append(f"Time to RecBole's best validation NDCG@10: nasrec {fmt_s(ns_hit['cum'])} vs RecBole "
                   f"{fmt_s(rb_hit['cum'])}: ratio **{time_ratio:.3f}** (RecBole / nasrec = {1 / time_ratio:.1f}x).")
    ns_best = round(max(h["valid_ndcg@10"] for h in ns["history"]), DECIMALS)
    if ns_best < target:
        a, b = first_reaching(ns["history"], ns_best), first_reaching(rb["history"], ns_best)
        out.append(f"For reference, time to nasrec's own best validation NDCG@10 ({ns_best:.4f}): nasrec "
                   f"{fmt_s(a['cum'])} (epoch {a['epoch']}), RecBole {fmt_s(b['cum'])} (epoch {b['epoch']}); "
                   f"ratio {a['cum'] / b['cum']:.3f}.")
    if rb["test"] and ns["test"]:
        r, n = rb["test"]["ndcg@10"], ns["test"]["ndcg@10"]
        out.append(f"Test NDCG@10: nasrec {n:.4f} vs RecBole {r:.4f} ({(n - r) / r:+.1%}).")
        ok = time_ratio is not None and time_ratio <= 1 / 3 and round(n, 4) >= round(r, 4)
        out.append(f"Target (nasrec reaches it in <= 1/3 of RecBole's time, test NDCG@10 >= RecBole's): "
                   f"**{'met' if ok else 'NOT met'}**.")
    out.append(f"Total train time: RecBole {fmt_s(rb['total'])} ({rb['stopped_by']}), nasrec {fmt_s(ns['total'])} "
               f"({ns['stopped_by']}); ratio {ns['total'] / rb['total']:.3f}.\n")
    out.append("CPU time (one compute thread per run; less sensitive to the other jobs sharing the 2 cores than "
               "wall time). RecBole: process CPU from Trainer.fit() start; nasrec: process CPU since the process "
               "started (includes imports and data loading, so slightly against nasrec), sampled when each "
               "epoch's log line appears; total = at the end of the last epoch.\n")
    if ns_hit is not None and ns_hit["cpu"] is not None and rb_hit["cpu"] is not None:
        out.append(f"CPU-time ratio to RecBole's best validation NDCG@10 (nasrec / RecBole): "
                   f"**{ns_hit['cpu'] / rb_hit['cpu']:.3f}**.\n")
    out.append(table(["tool", "CPU time to RecBole's best valid NDCG@10", "total CPU time", "mean 1-min load avg"],
                     [cpu_row(rb, target), cpu_row(ns, target)]))
    for spec in args.extra:
        label, _, path = spec.partition("=")
        extra = nasrec_run(Path(path), label)
        if extra.get("exclude_history"):
            note = (f"Not like-for-like ({label}): history items excluded from the ranking, which RecBole does "
                    f"not do for sequential models, so its metrics are not comparable to RecBole's:\n")
        else:
            note = f"Extra run ({label}): same protocol (history kept), settings as its label says:\n"
        out += ["", note, table(header, [row(extra, target)])]
    out += ["", order_check(args.sequences, args.data)]
    text = "\n".join(out) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
