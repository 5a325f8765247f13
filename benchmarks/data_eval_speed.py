"""Loading the real datasets, and full-ranking evaluation of every ML-1M user.

    .venv/bin/python benchmarks/data_eval_speed.py

Reads ../shared/data in place (never copied). Times are best of 3 on this machine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from nasrec.data import eval_inputs, leave_one_out, load_data
from nasrec.metrics import evaluate
from nasrec.models import ElasticSASRec, ModelDims

DATA = Path("../shared/data")
FILES = ["ml-1m/ml-1m_sasrec5.txt", "amazon-beauty/Beauty.txt", "ml-100k/ml-100k.inter"]


def best_of(fn, repeats: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    report: dict[str, object] = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    for rel in FILES:
        seconds, data = best_of(lambda rel=rel: load_data(DATA / rel))
        report[rel] = {"seconds": seconds, "users": data.n_users, "items": data.n_items,
                       "interactions": data.n_interactions}
    data = load_data(DATA / FILES[0])
    splits = leave_one_out(data)
    model = ElasticSASRec(ModelDims(data.n_items, 200, 64, (64, 64), 64, 1)).eval()
    inputs = eval_inputs(splits.test.inputs, 200)
    targets = torch.as_tensor(splits.test.targets)

    def run(protocols: tuple[str, ...]) -> dict:
        with torch.no_grad():
            return evaluate(model.score_last, inputs, targets, splits.test.inputs, data.n_items,
                            protocols=protocols, popularity=splits.item_popularity)

    for protocols in (("full",), ("full", "uni100", "pop100")):
        seconds, _ = best_of(lambda p=protocols: run(p))
        report["evaluate " + "+".join(protocols)] = {"users": data.n_users, "seconds": seconds,
                                                     "model": "SASRec d64, 2 blocks, max_len 200"}
    print(json.dumps(report, indent=2))
    Path("benchmarks/out").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/out/data_eval_speed.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
