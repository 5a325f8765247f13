"""The `optuna` strategy: NSGA-II over the space's choices, only archs within the budget trained."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from nasrec import cost
from nasrec.arch import Arch
from nasrec.errors import ConfigError
from nasrec.strategies import optuna_search
from nasrec.strategies.base import create_strategy, get_strategy
from nasrec.strategies.optuna_search import OptunaSearch, arch_params, pareto_indices, sample_arch

MAX_LEN = 12  # the max_len of conftest.make_ctx


def test_registered_with_declared_hyperparams():
    cls = get_strategy("optuna")
    assert cls is OptunaSearch and cls.trains_supernet is False
    declared = {p.name: (p.type, p.default, p.low, p.high) for p in cls.hyperparams}
    assert declared == {"n_trials": ("int", 8, 1, 1000), "epochs_per_candidate": ("int", 1, 1, 100),
                        "population_size": ("int", 8, 2, 1000)}
    assert create_strategy("optuna", {"n_trials": "3"}).params["n_trials"] == 3
    with pytest.raises(ConfigError, match="population_size"):
        create_strategy("optuna", {"population_size": 1})


def test_every_arch_of_the_space_is_a_point_of_the_study(space):
    archs = list(space)
    for arch in archs:
        assert sample_arch(optuna.trial.FixedTrial(arch_params(space, arch)), space) == arch
    # Parameters depending on the hidden width are separate per width: each keeps one set of choices.
    names = {name for arch in archs for name in arch_params(space, arch)}
    assert {"hidden", "attention", "depth", "inner0@32", "inner0@16", "inner1@32"} <= names


def test_pareto_indices():
    assert pareto_indices([(0.1, 5), (0.2, 5), (0.2, 3), (0.05, 1)]) == [2, 3]


def test_searches_within_budget_and_keeps_the_best(splits, space, make_ctx, budget_at):
    n_items = splits.data.n_items
    budget = budget_at(space, n_items, 0.5)
    ctx = make_ctx(splits, space, budget)
    result = create_strategy("optuna", {"n_trials": 5, "population_size": 3}).search(ctx)

    assert len(result.trace) == 5 and result.extra["evaluated"] == 5
    archs = [Arch.from_dict(row["arch"]) for row in result.trace]
    assert len(set(archs)) == 5  # a repeated proposal is not trained again
    for arch, row in zip(archs, result.trace, strict=True):
        space.validate(arch)
        assert row["flops"] == cost.flops(arch, n_items, MAX_LEN) <= budget
        assert 0.0 <= row["ndcg@10"] <= 1.0
        assert result.preference(arch) == row["ndcg@10"]
    best = max(result.trace, key=lambda r: (r["ndcg@10"], -r["flops"]))
    assert result.arch == Arch.from_dict(best["arch"])
    assert result.extra["proposals"] == 5 + result.extra["over_budget"] + result.extra["repeated"]
    front = [r for r in result.trace if r["candidate"] in result.extra["front"]]
    assert best in front
    assert result.preference(next(a for a in space if a not in archs)) == float("-inf")
    assert ctx.source.steps and set(ctx.source.steps) == {("weights", "search_train")}


def test_deterministic_for_a_seed(splits, space, make_ctx, budget_at, timeless):
    budget = budget_at(space, splits.data.n_items, 0.6)
    params = {"n_trials": 3, "population_size": 2}
    first = create_strategy("optuna", params).search(make_ctx(splits, space, budget, seed=4))
    second = create_strategy("optuna", params).search(make_ctx(splits, space, budget, seed=4))
    assert first.arch == second.arch and timeless(first.trace) == timeless(second.trace)


def test_a_stuck_sampler_is_filled_with_untried_archs_within_budget(splits, space, monkeypatch, make_ctx, budget_at):
    n_items = splits.data.n_items
    budget = budget_at(space, n_items, 0.05)  # few archs fit: most proposals are over budget
    feasible = {a for a in space if cost.flops(a, n_items, MAX_LEN) <= budget}
    assert 1 < len(feasible) < len(space) // 2
    monkeypatch.setattr(optuna_search, "MAX_ASKS_PER_CANDIDATE", 1)
    result = create_strategy("optuna", {"n_trials": 1000}).search(make_ctx(splits, space, budget))
    assert {Arch.from_dict(r["arch"]) for r in result.trace} == feasible  # all of them, each once
    assert result.extra["filled"] >= 1 and result.extra["over_budget"] >= 1


class Interrupt(Exception):
    pass


def test_resume_continues_the_study_without_retraining(splits, space, tmp_path, monkeypatch, make_ctx, budget_at,
                                                       timeless):
    budget = budget_at(space, splits.data.n_items, 0.6)
    params = {"n_trials": 3, "population_size": 2}
    reference = create_strategy("optuna", params).search(make_ctx(splits, space, budget, seed=1))

    def stop_after_two(done: int, _row: dict[str, Any]) -> None:
        if done == 2:
            raise Interrupt

    checkpoint = tmp_path / "search_checkpoint.pt"
    with pytest.raises(Interrupt):
        create_strategy("optuna", params).search(
            make_ctx(splits, space, budget, seed=1, checkpoint=checkpoint, on_epoch=stop_after_two))

    trained: list[int] = []
    original = OptunaSearch.evaluate_candidate

    def counting(self, ctx, arch, index):
        trained.append(index)
        return original(self, ctx, arch, index)

    monkeypatch.setattr(OptunaSearch, "evaluate_candidate", counting)
    resumed = create_strategy("optuna", params).search(
        make_ctx(splits, space, budget, seed=1, checkpoint=checkpoint, resume=True))
    assert trained == [2]
    assert resumed.arch == reference.arch and timeless(resumed.trace) == timeless(reference.trace)
    with pytest.raises(ConfigError, match="resume"):
        create_strategy("optuna", params).search(
            make_ctx(splits, space, budget_at(space, splits.data.n_items, 0.3), seed=1, checkpoint=checkpoint,
                     resume=True))
