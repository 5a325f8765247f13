#!/usr/bin/env python
"""Per-user validation and test ranks of a finished RecBole peer run's saved (best) model.

    ../recbole-venv/bin/python benchmarks/recbole_peer/recbole_eval_ranks.py benchmarks/out/recbole_peer_ml1m_resumed

run_recbole.py keeps only the test ranks (`recbole_test_ranks.json`); this rebuilds the run's dataset with the
run's own config, loads the checkpoint RecBole saved (its best validation epoch) and writes
RUN/recbole_eval_ranks.json: {"valid": {user: rank}, "test": {user: rank}, "checkpoint": ..., "ndcg@10": {...}},
ranks 0-based under RecBole's full-sort scores (padding masked, history kept, ties against the target), as
run_recbole.py counts them. Stops with an error when the test ranks differ from the run's recorded ones (the
checkpoint is then not the model the run reported). Runs in the RecBole venv (setup_venv.sh).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
from pathlib import Path

PEER = Path(__file__).resolve().parent


def load_run_recbole():
    spec = importlib.util.spec_from_file_location("run_recbole", PEER / "run_recbole.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # sets RecBole's environment (one thread, torch.load without weights_only)
    return module


def ndcg_at_10(ranks: dict[str, int]) -> float:
    return sum(1.0 / math.log2(r + 2) for r in ranks.values() if r < 10) / len(ranks)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a run_recbole.py --out directory (holds recbole.json, recbole_work/saved)")
    args = p.parse_args()
    run = args.run.resolve()
    report = json.loads((run / "recbole.json").read_text())
    saved = sorted((run / "recbole_work" / "saved").glob("*.pth"))
    if len(saved) != 1:
        raise SystemExit(f"{run}/recbole_work/saved: expected one RecBole checkpoint, found {len(saved)}")
    recorded = json.loads((run / "recbole_test_ranks.json").read_text())["ranks"]

    rr = load_run_recbole()
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    src = Path(report["data"]["file"])
    run_args = argparse.Namespace(seed=report["config"]["seed"], epochs=report["config"]["epochs"],
                                  max_len=report["config"]["MAX_ITEM_LIST_LENGTH"])
    work = run / "recbole_work"
    os.chdir(work)  # RecBole writes ./log
    config = Config(model="SASRec", dataset=rr.dataset_name(src),
                    config_dict=rr.recbole_config(run_args, run / "data", work))
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    torch.set_num_threads(1)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = SASRec(config, train_data._dataset)
    model.load_state_dict(torch.load(saved[0], map_location="cpu")["state_dict"])
    trainer = Trainer(config, model)
    trainer.tot_item_num = dataset.item_num  # set by Trainer.evaluate, which this bypasses
    ranks = {"valid": rr.test_ranks(trainer, valid_data), "test": rr.test_ranks(trainer, test_data)}
    if ranks["test"] != recorded:
        differ = sum(ranks["test"].get(u) != r for u, r in recorded.items())
        raise SystemExit(f"{saved[0]}: test ranks differ from recbole_test_ranks.json for {differ} users")
    out = {**ranks, "checkpoint": str(saved[0]), "ndcg@10": {k: ndcg_at_10(v) for k, v in ranks.items()}}
    (run / "recbole_eval_ranks.json").write_text(json.dumps(out))
    print(f"valid NDCG@10 {out['ndcg@10']['valid']:.4f}  test NDCG@10 {out['ndcg@10']['test']:.4f}  "
          f"-> {run / 'recbole_eval_ranks.json'}")


if __name__ == "__main__":
    main()
