"""Trials on a 2-node Ray cluster (loopback): several strategies, both nodes used, results back in the driver;
cluster addresses that cannot be reached fail fast with one line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from nasrec.errors import NasrecError
from nasrec.orchestration import FLOPS, METRIC, TEST_METRIC, TrialsConfig, check_address, run_trials
from nasrec.search import SearchConfig


def test_strategies_share_data_and_budget_and_trials_run_on_both_nodes(ray_cluster, data_file, budget, tmp_path,
                                                                       tracker):
    import ray

    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2
    base = SearchConfig(strategy="darts", budget_flops=1.0, space="tiny", max_len=12, search_epochs=1,
                        retrain_epochs=1, batch_size=64, params={"n_candidates": 2})  # random's, held fixed
    trials = TrialsConfig(strategies=("darts", "random"), budgets=(budget,), trials=2, concurrency=2,
                          cpus_per_trial=1, objective="pareto", address=ray_cluster)
    seen: list[str] = []
    rows = run_trials(data_file, base, trials, tmp_path / "search", tracker=tracker,
                      on_trial=lambda row: seen.append(row["trial_id"]))

    assert [(r["strategy"], r["status"]) for r in rows] == [("darts", "ok")] * 2 + [("random", "ok")] * 2
    assert sorted(seen) == sorted(r["trial_id"] for r in rows) == sorted(tracker.ok)
    assert {r["node_id"] for r in rows} == nodes  # 2 concurrent 1-CPU trials: one per node, per strategy
    fingerprints = set()
    for row in rows:
        entry = tracker.ok[row["trial_id"]]
        result = entry["result"]
        assert entry["run_dir"] == Path(row["run_dir"]) and (entry["run_dir"] / "model").is_dir()
        assert json.loads((entry["run_dir"] / "result.json").read_text()) == result
        assert row[FLOPS] == result["flops"] <= budget == row["budget"] == result["budget_flops"]
        assert row[METRIC] == result["metrics"]["valid"]["full"]["ndcg@10"]
        assert row[TEST_METRIC] == result["metrics"]["test"]["full"]["ndcg@10"]
        assert entry["config"]["strategy"] == result["strategy"] == row["strategy"]
        assert entry["config"]["lr"] == row["config"]["lr"]
        fingerprints.add(result["data"]["fingerprint"])
        assert result["seed"] == base.seed  # one pipeline seed: the same splits for every trial
    assert len(fingerprints) == 1
    random_rows = [tracker.ok[r["trial_id"]]["result"] for r in rows if r["strategy"] == "random"]
    assert all(res["strategy_params"]["n_candidates"] == 2 for res in random_rows)
    random_configs = [r["config"] for r in rows if r["strategy"] == "random"]
    assert all(set(c) == {"strategy", "budget_flops", "seed", "lr"} for c in random_configs)  # only lr is tuned
    darts = [r["config"] for r in rows if r["strategy"] == "darts"]
    assert {"arch_lr", "warmup_epochs", "lr"} <= set(darts[0]) and darts[0] != darts[1]


def test_unreachable_addresses_fail_fast_on_one_line(data_file, budget, tmp_path, tracker):
    for address in ("127.0.0.1:1", "ray://127.0.0.1:1", "localhost:1"):
        start = time.monotonic()
        with pytest.raises(NasrecError, match="cannot reach the Ray cluster") as info:
            check_address(address)
        assert time.monotonic() - start < 3 and "\n" not in str(info.value)
    start = time.monotonic()
    with pytest.raises(NasrecError, match="at most 0.5s"):
        check_address("192.0.2.123:6379", timeout=0.5)  # TEST-NET: nothing answers, the timeout bounds it
    assert time.monotonic() - start < 2
    with pytest.raises(NasrecError, match="port"):
        check_address("ray://host:port")
    # run_trials checks it before anything is written, started or logged.
    base = SearchConfig(strategy="darts", budget_flops=1.0, space="tiny", max_len=12)
    with pytest.raises(NasrecError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        run_trials(data_file, base, TrialsConfig(strategies=("darts",), budgets=(budget,), address="127.0.0.1:1"),
                   tmp_path / "search", tracker=tracker)
    assert not (tmp_path / "search").exists() and tracker.calls == 0


def test_auto_finds_the_running_cluster(ray_cluster):
    assert check_address("auto") == ray_cluster
