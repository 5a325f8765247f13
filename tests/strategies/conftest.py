"""Shared set-up of the strategy tests: a small synthetic split, the tiny space, and helpers that build a
`SearchContext` and place a budget inside the space's FLOPs range. Test modules that need other data or
another max_len define their own fixtures of the same names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from nasrec import cost
from nasrec.arch import SearchSpace, get_space
from nasrec.data import Splits, SyntheticConfig, generate_synthetic, leave_one_out
from nasrec.models import ElasticSASRec, ModelDims
from nasrec.strategies.base import SearchContext

MAX_LEN = 12


@pytest.fixture(scope="module")
def splits() -> Splits:
    data = generate_synthetic(SyntheticConfig(n_users=120, n_items=150, mean_len=10, seed=3))
    return leave_one_out(data, seed=0)


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return get_space("tiny")


@pytest.fixture
def budget_at() -> Callable[..., float]:
    """budget_at(space, n_items, fraction): that fraction of the way from the space's cheapest to its
    costliest arch, in FLOPs."""

    def at(space: SearchSpace, n_items: int, fraction: float) -> float:
        rng = cost.flops_range(space, n_items, MAX_LEN)
        return rng.min_flops + fraction * (rng.max_flops - rng.min_flops)

    return at


@pytest.fixture
def make_ctx() -> Callable[..., SearchContext]:
    """make_ctx(splits, space, budget, seed=0, **SearchContext fields): a fresh seeded supernet's context."""

    def make(splits: Splits, space: SearchSpace, budget: float, *, seed: int = 0, **kw: Any) -> SearchContext:
        n_items = splits.data.n_items
        torch.manual_seed(seed)
        supernet = ElasticSASRec(ModelDims.for_space(space, n_items, MAX_LEN))
        return SearchContext(supernet=supernet, space=space, search_train=splits.search_train,
                             arch_valid=splits.arch_valid, n_items=n_items, max_len=MAX_LEN, budget_flops=budget,
                             epochs=1, batch_size=64, lr=1e-3, seed=seed,
                             flops=lambda a: cost.flops(a, n_items, MAX_LEN), **kw)

    return make


@pytest.fixture
def timeless() -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """A search trace without its wall-clock fields (for determinism checks)."""
    return lambda trace: [{k: v for k, v in row.items() if k != "seconds"} for row in trace]
