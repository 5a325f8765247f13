"""The `random` strategy: uniform sample within the budget, each candidate trained from scratch."""

from __future__ import annotations

from typing import Any

import pytest

from nasrec import cost
from nasrec.arch import Arch
from nasrec.errors import ConfigError
from nasrec.strategies.base import create_strategy, get_strategy
from nasrec.strategies.random_search import RandomSearch

MAX_LEN = 12  # the max_len of conftest.make_ctx


def test_registered_with_declared_hyperparams():
    cls = get_strategy("random")
    assert cls is RandomSearch
    assert cls.trains_supernet is False
    declared = {p.name: p for p in cls.hyperparams}
    assert (declared["n_candidates"].type, declared["n_candidates"].default) == ("int", 8)
    assert (declared["n_candidates"].low, declared["n_candidates"].high) == (1, 1000)
    assert (declared["epochs_per_candidate"].type, declared["epochs_per_candidate"].default) == ("int", 1)
    assert (declared["epochs_per_candidate"].low, declared["epochs_per_candidate"].high) == (1, 100)
    assert create_strategy("random", {"n_candidates": "3"}).params == {"n_candidates": 3, "epochs_per_candidate": 1}
    with pytest.raises(ConfigError, match="n_candidates"):
        create_strategy("random", {"n_candidates": 0})


def test_runs_within_budget_and_keeps_the_best(splits, space, make_ctx, budget_at):
    n_items = splits.data.n_items
    budget = budget_at(space, n_items, 0.5)
    ctx = make_ctx(splits, space, budget)
    result = create_strategy("random", {"n_candidates": 3}).search(ctx)

    assert len(result.trace) == 3
    archs = [Arch.from_dict(row["arch"]) for row in result.trace]
    assert len(set(archs)) == 3  # distinct
    for arch, row in zip(archs, result.trace, strict=True):
        space.validate(arch)
        assert row["flops"] == cost.flops(arch, n_items, MAX_LEN) <= budget
        assert 0.0 <= row["ndcg@10"] <= 1.0 and row["seconds"] >= 0
    assert cost.flops(result.arch, n_items, MAX_LEN) <= budget
    best = max(result.trace, key=lambda r: r["ndcg@10"])
    assert result.trace[archs.index(result.arch)]["ndcg@10"] == best["ndcg@10"]
    # The preference ranks archs by their arch-valid NDCG@10; unseen archs come last.
    for arch, row in zip(archs, result.trace, strict=True):
        assert result.preference(arch) == row["ndcg@10"]
    unseen = next(a for a in space if a not in archs)
    assert result.preference(unseen) == float("-inf")
    # Only weights stepped, only on search-train windows; the supernet itself was not trained.
    assert ctx.source.steps and set(ctx.source.steps) == {("weights", "search_train")}


def test_all_candidates_within_budget_and_fewer_feasible_takes_all(splits, space, make_ctx, budget_at):
    n_items = splits.data.n_items
    budget = budget_at(space, n_items, 0.3)
    ctx = make_ctx(splits, space, budget)
    strategy = create_strategy("random", {"n_candidates": 1000})
    feasible = {a for a in space if cost.flops(a, n_items, MAX_LEN) <= budget}
    assert 1 < len(feasible) < len(space)
    picked = strategy.candidates(ctx)
    assert len(picked) == len(set(picked)) and set(picked) == feasible


def test_deterministic_for_a_seed_and_seeds_differ(splits, space, make_ctx, budget_at, timeless):
    budget = budget_at(space, splits.data.n_items, 0.6)
    params = {"n_candidates": 2}
    first = create_strategy("random", params).search(make_ctx(splits, space, budget, seed=5))
    second = create_strategy("random", params).search(make_ctx(splits, space, budget, seed=5))
    assert first.arch == second.arch
    assert timeless(first.trace) == timeless(second.trace)

    strategy = create_strategy("random", {"n_candidates": 3})
    samples = {tuple(strategy.candidates(make_ctx(splits, space, budget, seed=s))) for s in range(6)}
    assert len(samples) > 1  # different seeds sample different candidates


class Interrupt(Exception):
    pass


def test_resume_skips_finished_candidates(splits, space, tmp_path, monkeypatch, make_ctx, budget_at, timeless):
    budget = budget_at(space, splits.data.n_items, 0.6)
    params = {"n_candidates": 3}
    reference = create_strategy("random", params).search(make_ctx(splits, space, budget, seed=1))

    def stop_after_two(done: int, _row: dict[str, Any]) -> None:
        if done == 2:
            raise Interrupt

    checkpoint = tmp_path / "search_checkpoint.pt"
    with pytest.raises(Interrupt):
        create_strategy("random", params).search(
            make_ctx(splits, space, budget, seed=1, checkpoint=checkpoint, on_epoch=stop_after_two))
    assert checkpoint.is_file()

    trained: list[int] = []
    original = RandomSearch.evaluate_candidate

    def counting(self, ctx, arch, index):
        trained.append(index)
        return original(self, ctx, arch, index)

    monkeypatch.setattr(RandomSearch, "evaluate_candidate", counting)
    seen: list[int] = []
    resumed = create_strategy("random", params).search(
        make_ctx(splits, space, budget, seed=1, checkpoint=checkpoint, resume=True,
                 on_epoch=lambda done, _row: seen.append(done)))
    assert trained == [2] and seen == [3]  # only the third candidate was trained
    assert resumed.arch == reference.arch
    assert timeless(resumed.trace) == timeless(reference.trace)

    # A checkpoint of another sample (another budget) is not silently reused.
    with pytest.raises(ConfigError, match="resume"):
        create_strategy("random", params).search(
            make_ctx(splits, space, budget_at(space, splits.data.n_items, 0.2), seed=1, checkpoint=checkpoint,
                     resume=True))
