"""`run_trials`: the Optuna search space from the declarations, the options, failing trials, ASHA reports."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from nasrec.api import DataOptions
from nasrec.errors import ConfigError
from nasrec.orchestration import (
    LR_RANGE,
    METRIC,
    TrialsConfig,
    default_point,
    load_search,
    param_space,
    pinned_params,
    run_trials,
)
from nasrec.search import SearchConfig
from nasrec.strategies.base import get_strategy, list_strategies

# --- the search space, without Ray ---------------------------------------------------------------


def test_param_space_follows_the_hyperparam_declaration():
    space = param_space("darts")
    declared = {p.name: p for p in get_strategy("darts").hyperparams}
    assert set(space) == set(declared) | {"lr"}
    # the declared tuning range when there is one (the validity range [low, high] otherwise)
    assert space["arch_lr"] == FloatDistribution(*declared["arch_lr"].tune, log=True)
    assert space["warmup_epochs"] == IntDistribution(*(int(v) for v in declared["warmup_epochs"].tune))
    assert space["lr"] == FloatDistribution(*LR_RANGE, log=True)

    easrec = param_space("easrec")
    assert easrec["constraint"] == CategoricalDistribution(["dynamic", "static", "none"])
    assert easrec["per_block_width"] == CategoricalDistribution([False, True])  # bool

    # Fixed (--set) and effort parameters are not searched; random then only tunes the learning rate.
    assert "arch_lr" not in param_space("darts", fixed=["arch_lr"])
    assert set(param_space("random")) == {"lr"}
    assert set(param_space("optuna")) == {"lr"}
    assert set(param_space("darts", lr=False)) == set(declared)


@pytest.mark.parametrize("name", sorted(list_strategies()))
def test_defaults_are_a_point_of_every_strategy_space(name):
    space = param_space(name)
    point = default_point(name, space, lr=1e-3)
    assert set(point) == set(space)
    for key, value in point.items():
        assert space[key]._contains(space[key].to_internal_repr(value)), (key, value)
    assert default_point(name, space, lr=1.0)["lr"] == LR_RANGE[1]  # clipped into the tuned range


def test_set_values_go_to_the_strategies_that_declare_them():
    pinned = pinned_params(("darts", "random"), {"arch_lr": 0.01, "n_candidates": 3})
    assert pinned == {"darts": {"arch_lr": 0.01}, "random": {"n_candidates": 3}}
    with pytest.raises(ConfigError, match="no_such"):
        pinned_params(("darts",), {"no_such": 1})


def test_trials_config_is_checked_and_all_expands():
    cfg = TrialsConfig(strategies=("all",), budgets=(2e5, 2e5, 1e5)).resolved()
    assert cfg.strategies == tuple(sorted(list_strategies())) and cfg.budgets == (2e5, 1e5)
    assert TrialsConfig(strategies=("darts,random",), budgets=(1.0,)).resolved().strategies == ("darts", "random")
    bad = [dict(trials=0), dict(concurrency=0), dict(cpus_per_trial=0), dict(objective="acc"),
           dict(max_failures=-1), dict(budgets=(-1.0,)), dict(budgets=()), dict(strategies=("nope",))]
    for change in bad:
        with pytest.raises(ConfigError):
            TrialsConfig(**{"strategies": ("darts",), "budgets": (1e5,), **change}).resolved()


def test_impossible_budget_fails_before_anything_starts(data_file, tmp_path, tracker):
    base = SearchConfig(strategy="darts", budget_flops=1.0, space="tiny", max_len=12)
    with pytest.raises(ConfigError, match="below the smallest arch"):
        run_trials(data_file, base, TrialsConfig(strategies=("darts",), budgets=(10.0,)), tmp_path / "s",
                   tracker=tracker)
    assert not (tmp_path / "s" / "search.json").exists()
    assert tracker.calls == 0


# --- with Ray ----------------------------------------------------------------------------------------


def test_failing_trials_are_logged_as_failed_and_the_search_goes_on(ray_cluster, quick_strategy, helper, data_file,
                                                                    budget, tmp_path, tracker):
    """x < 0.505 diverges (TrainingDiverged, what a NaN loss raises) on every attempt: failed after its one
    retry (max_failures=1). x > 0.6 fails on the first attempt only: the retry succeeds, in the same run
    dir. ASHA is on, so each trial reports validation NDCG@10 per retrain epoch."""
    base = replace(helper.quick_base(fail_below=0.505, flaky_above=0.6), retrain_epochs=2)
    trials = TrialsConfig(strategies=(helper.STRATEGY,), budgets=(budget,), trials=3, concurrency=2,
                          max_failures=1, early_stop=True, seed=3)
    seen: list[dict] = []
    rows = run_trials(data_file, base, trials, tmp_path / "search", tracker=tracker, on_trial=seen.append)

    assert len(rows) == 3 and sorted(r["trial_id"] for r in seen) == [r["trial_id"] for r in rows]
    x = {r["trial_id"]: r["config"]["x"] for r in rows}
    assert 0.5 in x.values()  # the first point is the strategy's defaults
    diverged = {t for t, v in x.items() if v < 0.505}
    flaky = {t for t, v in x.items() if v > 0.6}
    assert diverged and flaky and len(diverged | flaky) < 3, x  # one of each kind, and a plain one
    for row in rows:
        if row["trial_id"] in diverged:
            assert row["status"] == "failed" and row["flops"] is None
            assert row["error"].startswith("TrainingDiverged: loss is nan"), row["error"]
        else:
            assert row["status"] in ("ok", "stopped") and row["error"] is None  # ASHA may stop one
    assert set(tracker.failed) == diverged
    assert {e["error"] for e in tracker.failed.values()} == {r["error"] for r in rows if r["status"] == "failed"}
    assert set(tracker.ok) == {r["trial_id"] for r in rows if r["status"] == "ok"}
    for entry in tracker.ok.values():  # the pinned values are held, not tuned
        assert set(entry["config"]) == {"strategy", "budget_flops", "seed", "x", "lr"}
        assert entry["result"]["strategy_params"]["fail_below"] == 0.505
        assert (entry["run_dir"] / "result.json").is_file() and (entry["run_dir"] / "model").is_dir()

    cell = tmp_path / "search" / "tune" / f"{helper.STRATEGY}-b0"
    searches = (cell / "runs" / "searches.log").read_text().split()
    for trial_id in x:  # attempts: 2 for the diverging and the flaky trials, 1 for the plain one
        assert searches.count(trial_id) == (2 if trial_id in diverged | flaky else 1)
        assert (cell / "runs" / trial_id / "flaky.marker").is_file() == (trial_id in flaky)
    for row in (r for r in rows if r["status"] == "ok"):
        reported = [json.loads(line) for line in (cell / f"trial_{row['trial_id']}" / "result.json").read_text()
                    .splitlines()]
        epochs = [r for r in reported if r.get("phase") == "retrain"]
        assert [r["epoch"] for r in epochs] == [1, 2] and all(METRIC in r for r in epochs)
        assert reported[-1]["pipeline_done"] and Path(row["run_dir"], "result.json").is_file()

    saved = json.loads((tmp_path / "search" / "search.json").read_text())
    assert saved["cells"] == [{"name": f"{helper.STRATEGY}-b0", "strategy": helper.STRATEGY, "budget": budget}]
    loaded = load_search(tmp_path / "search")  # what `nasrec search --resume OUT` continues with
    assert (loaded["data"], loaded["base"], loaded["trials"]) == (DataOptions(source=data_file), base, trials)
    with pytest.raises(ConfigError, match="already holds a search"):
        run_trials(data_file, base, trials, tmp_path / "search", tracker=tracker)
    with pytest.raises(ConfigError, match="other options"):
        run_trials(data_file, base, replace(trials, trials=5), tmp_path / "search", tracker=tracker, resume=True)
