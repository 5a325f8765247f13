from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from nasrec.errors import ConfigError
from nasrec.metrics import (
    DEFAULT_KS,
    PROTOCOLS,
    RankingAccumulator,
    evaluate,
    full_ranking_ranks,
    metrics_from_ranks,
    rank_of_target,
    sample_negatives,
    sampled_ranks,
)

NEG_INF = -math.inf


# ---------------------------------------------------------------- slow, obviously-correct reference


def reference_rank(scores: list[float], target: int, candidates: list[int]) -> int:
    """Sort candidates best first, putting tied others before the target; return the target's position."""
    kept = [c for c in candidates if c == target or scores[c] != NEG_INF]
    kept.sort(key=lambda c: (-scores[c], 1 if c == target else 0))
    return kept.index(target)


def reference_full(scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None) -> list[int]:
    out = []
    for b in range(scores.shape[0]):
        row = scores[b].tolist()
        target = int(targets[b])
        candidates = [
            c for c in range(1, len(row)) if c == target or exclude is None or not bool(exclude[b, c])
        ]
        out.append(reference_rank(row, target, candidates))
    return out


def reference_metrics(ranks: list[int], k: int) -> tuple[float, float, float]:
    recall = sum(1.0 for r in ranks if r < k) / len(ranks)
    mrr = sum(1.0 / (r + 1) for r in ranks if r < k) / len(ranks)
    ndcg = sum(1.0 / math.log2(r + 2) for r in ranks if r < k) / len(ranks)
    return recall, mrr, ndcg


def tied_scores(rows: int, cols: int, seed: int) -> torch.Tensor:
    # Rounding to one decimal makes ties frequent.
    g = torch.Generator().manual_seed(seed)
    return torch.round(torch.rand(rows, cols, generator=g) * 10) / 10


# ---------------------------------------------------------------- hand-computed cases


def test_rank_of_target_hand_cases() -> None:
    scores = torch.tensor(
        [
            [0.9, 0.5, 0.1, 0.3],  # target 0 is best -> 0
            [0.9, 0.5, 0.1, 0.3],  # target 3: only 0.9 and 0.5 above -> 2
            [0.5, 0.5, 0.5, 0.5],  # all tied: every other counts -> 3
            [0.2, NEG_INF, 0.7, 0.2],  # target 0: 0.7 above, tie 0.2 counts, -inf ignored -> 2
            [NEG_INF, 0.1, NEG_INF, 0.3],  # target at -inf: every finite other is above -> 2
        ]
    )
    targets = torch.tensor([0, 3, 1, 0, 0])
    assert rank_of_target(scores, targets).tolist() == [0, 2, 3, 2, 2]


def test_full_ranking_padding_and_exclusion() -> None:
    # Column 0 (padding) has the highest score but never counts.
    scores = torch.tensor([[100.0, 0.2, 0.9, 0.5, 0.9], [100.0, 0.2, 0.9, 0.5, 0.9]])
    targets = torch.tensor([3, 2])
    assert full_ranking_ranks(scores, targets).tolist() == [2, 1]  # row 1: tie with item 4 counts
    exclude = torch.tensor([[False, False, True, True, False], [True, False, True, False, True]])
    # Row 0: item 2 excluded, the target (3) is in the mask but never excluded -> only item 4 above.
    # Row 1: the tied item 4 is excluded -> the target is first.
    assert full_ranking_ranks(scores, targets, exclude=exclude).tolist() == [1, 0]
    # The input is not modified.
    assert scores[0, 2] == 0.9


def test_metrics_from_ranks_exact_values() -> None:
    ranks = torch.tensor([0, 1, 5, 30])
    m = metrics_from_ranks(ranks, ks=(1, 2, 10))
    assert m["recall@1"] == pytest.approx(1 / 4)
    assert m["mrr@1"] == pytest.approx(1 / 4)
    assert m["ndcg@1"] == pytest.approx(1 / 4)
    assert m["recall@2"] == pytest.approx(2 / 4)
    assert m["mrr@2"] == pytest.approx((1 + 1 / 2) / 4)
    assert m["ndcg@2"] == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert m["recall@10"] == pytest.approx(3 / 4)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 6) / 4)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(7)) / 4)
    assert list(m) == [f"{name}@{k}" for k in (1, 2, 10) for name in ("recall", "mrr", "ndcg")]
    names = ("recall", "mrr", "ndcg")
    assert set(metrics_from_ranks(ranks)) == {f"{n}@{k}" for k in DEFAULT_KS for n in names}


def test_metrics_from_ranks_rejects_bad_ks() -> None:
    with pytest.raises(ConfigError):
        metrics_from_ranks(torch.tensor([0]), ks=(0,))
    with pytest.raises(ConfigError):
        metrics_from_ranks(torch.tensor([0]), ks=())


def test_nan_scores_are_an_error() -> None:
    with pytest.raises(ValueError, match="NaN"):
        rank_of_target(torch.tensor([[0.1, math.nan]]), torch.tensor([0]))


# ---------------------------------------------------------------- against the reference


@pytest.mark.parametrize("with_exclude", [False, True])
def test_full_ranking_matches_reference(with_exclude: bool) -> None:
    rows, n_items = 40, 30
    scores = tied_scores(rows, n_items + 1, seed=1)
    scores[3] = 0.5  # a constant row
    g = torch.Generator().manual_seed(2)
    targets = torch.randint(1, n_items + 1, (rows,), generator=g)
    exclude = torch.rand(rows, n_items + 1, generator=g) < 0.3 if with_exclude else None
    if exclude is not None:
        exclude[5, targets[5]] = True  # the target in the history is still ranked
    ranks = full_ranking_ranks(scores, targets, exclude=exclude)
    expected = reference_full(scores, targets, exclude)
    assert ranks.tolist() == expected
    if exclude is None:
        assert ranks[3] == n_items - 1  # the constant row ranks last
    for k in (1, 2, 10):
        m = metrics_from_ranks(ranks, ks=(k,))
        got = (m[f"recall@{k}"], m[f"mrr@{k}"], m[f"ndcg@{k}"])
        assert got == pytest.approx(reference_metrics(expected, k))


def test_sampled_ranks_match_reference() -> None:
    rows, n_items, n = 30, 50, 10
    scores = tied_scores(rows, n_items + 1, seed=3)
    g = torch.Generator().manual_seed(4)
    targets = torch.randint(1, n_items + 1, (rows,), generator=g)
    history = torch.zeros(rows, n_items + 1, dtype=torch.bool)
    negatives = sample_negatives(history, targets, n, weights=None, generator=g)
    ranks = sampled_ranks(scores, targets, negatives)
    for b in range(rows):
        candidates = [int(targets[b])] + negatives[b].tolist()
        assert ranks[b] == reference_rank(scores[b].tolist(), int(targets[b]), candidates)


# ---------------------------------------------------------------- negative sampling


def _random_history(rows: int, n_items: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(rows, n_items + 1, generator=g) < 0.3


def test_sample_negatives_constraints_and_determinism() -> None:
    rows, n_items, n = 64, 300, 100
    history = _random_history(rows, n_items, seed=5)
    targets = torch.randint(1, n_items + 1, (rows,), generator=torch.Generator().manual_seed(6))
    first = sample_negatives(history, targets, n, weights=None, generator=torch.Generator().manual_seed(7))
    again = sample_negatives(history, targets, n, weights=None, generator=torch.Generator().manual_seed(7))
    other = sample_negatives(history, targets, n, weights=None, generator=torch.Generator().manual_seed(8))
    assert first.shape == (rows, n) and first.dtype == torch.int64
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not bool((first == 0).any())
    assert not bool((first == targets.unsqueeze(1)).any())
    assert not bool(history.gather(1, first).any())
    for b in range(rows):
        assert len(set(first[b].tolist())) == n
    # The caller's history is not modified.
    assert torch.equal(history, _random_history(rows, n_items, seed=5))


def test_sample_negatives_popularity() -> None:
    rows, n_items = 2000, 100
    weights = torch.ones(n_items + 1)
    weights[7] = 50.0  # popular
    weights[8] = 0.5  # rare
    history = torch.zeros(rows, n_items + 1, dtype=torch.bool)
    targets = torch.full((rows,), 1, dtype=torch.int64)
    g = torch.Generator().manual_seed(9)
    negatives = sample_negatives(history, targets, 1, weights=weights, generator=g)
    popular, rare = int((negatives == 7).sum()), int((negatives == 8).sum())
    # Expected ~ 2000 * 50 / 148.5 = 673 vs ~ 7.
    assert popular > 400 and rare < 40 and popular > 10 * rare
    # Zero-popularity items are never drawn.
    weights[10:] = 0.0
    negatives = sample_negatives(history, targets, 5, weights=weights, generator=g)
    assert int(negatives.max()) < 10 and not bool((negatives == 1).any())


def test_sample_negatives_too_few_items() -> None:
    n_items = 10
    history = torch.zeros(2, n_items + 1, dtype=torch.bool)
    history[1, 1:6] = True  # row 1 keeps items 6..10 minus the target -> 4 allowed
    targets = torch.tensor([1, 7])
    with pytest.raises(ConfigError, match="row 1 has only 4"):
        sample_negatives(history, targets, 5, weights=None, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------- accumulator and evaluate()


def test_accumulator_concatenates_batches() -> None:
    acc = RankingAccumulator(ks=(1, 5))
    acc.add("full", torch.tensor([0, 3]))
    acc.add("pop100", torch.tensor([2]))
    acc.add("full", torch.tensor([7]))
    result = acc.result()
    assert list(result) == ["full", "pop100"]
    assert result["full"] == metrics_from_ranks(torch.tensor([0, 3, 7]), ks=(1, 5))
    with pytest.raises(ConfigError, match="full, uni100, pop100"):
        acc.add("uni50", torch.tensor([0]))


EvalData = tuple[torch.Tensor, torch.Tensor, list[np.ndarray], np.ndarray]


def _eval_data(n: int, n_items: int, seed: int) -> EvalData:
    rng = np.random.default_rng(seed)
    targets = torch.from_numpy(rng.integers(1, n_items + 1, size=n))
    # The last input column holds the target so an oracle can read it; histories avoid the target.
    inputs = torch.zeros(n, 5, dtype=torch.int64)
    inputs[:, -1] = targets
    histories = []
    for t in targets.tolist():
        h = rng.choice(np.arange(1, n_items + 1), size=int(rng.integers(0, 20)), replace=False)
        histories.append(h[h != t])
    popularity = rng.integers(1, 100, size=n_items + 1).astype(np.float64)
    return inputs, targets, histories, popularity


def test_evaluate_oracle_and_constant() -> None:
    n_items = 200
    inputs, targets, histories, popularity = _eval_data(100, n_items, seed=10)

    def oracle(batch: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(batch[:, -1], n_items + 1).float()

    def constant(batch: torch.Tensor) -> torch.Tensor:
        return torch.zeros(batch.shape[0], n_items + 1)

    result = evaluate(
        oracle, inputs, targets, histories, n_items, protocols=PROTOCOLS, popularity=popularity, batch_size=32
    )
    assert list(result) == list(PROTOCOLS)
    for protocol in PROTOCOLS:
        assert all(value == 1.0 for value in result[protocol].values()), protocol
    flat = evaluate(constant, inputs, targets, histories, n_items, protocols=PROTOCOLS, popularity=popularity)
    assert all(value == 0.0 for value in flat["full"].values())
    # With 100 negatives a constant model ranks last (100) among 101 candidates.
    assert all(value == 0.0 for value in flat["uni100"].values())


def test_evaluate_seeded_and_exclude_history() -> None:
    n_items = 300
    inputs, targets, histories, popularity = _eval_data(120, n_items, seed=11)
    table = torch.rand(120, n_items + 1, generator=torch.Generator().manual_seed(12))
    inputs[:, 0] = torch.arange(120)  # the row id, so the score table is looked up per row

    def lookup(batch: torch.Tensor) -> torch.Tensor:
        return table[batch[:, 0]]

    kwargs = dict(protocols=("uni100", "pop100", "full"), popularity=popularity, seed=3)
    a = evaluate(lookup, inputs, targets, histories, n_items, **kwargs)
    b = evaluate(lookup, inputs, targets, histories, n_items, **kwargs)
    c = evaluate(lookup, inputs, targets, histories, n_items, **{**kwargs, "seed": 4})
    assert a == b
    assert a["uni100"] != c["uni100"] and a["full"] == c["full"]

    # One user whose history item outranks the target: excluding the history turns a miss into a hit.
    one_input = torch.tensor([[0, 0, 0, 0, 5]])
    one_target = torch.tensor([5])
    one_history = [np.array([1, 2, 3])]

    def history_first(batch: torch.Tensor) -> torch.Tensor:
        scores = torch.zeros(batch.shape[0], n_items + 1)
        scores[:, 1:4] = 2.0
        scores[:, 5] = 1.0
        scores[:, 0] = 9.0  # padding never counts
        return scores

    plain = evaluate(history_first, one_input, one_target, one_history, n_items, ks=(1, 5))
    excluded = evaluate(
        history_first, one_input, one_target, one_history, n_items, ks=(1, 5), exclude_history=True
    )
    assert plain["full"]["recall@1"] == 0.0 and plain["full"]["mrr@5"] == pytest.approx(1 / 4)
    assert excluded["full"]["recall@1"] == 1.0


def test_evaluate_config_errors() -> None:
    n_items = 200
    inputs, targets, histories, _ = _eval_data(10, n_items, seed=13)

    def fn(batch: torch.Tensor) -> torch.Tensor:
        return torch.zeros(batch.shape[0], n_items + 1)

    def small_fn(batch: torch.Tensor) -> torch.Tensor:
        return torch.zeros(batch.shape[0], 51)

    with pytest.raises(ConfigError, match="full, uni100, pop100"):
        evaluate(fn, inputs, targets, histories, n_items, protocols=("full", "hr"))
    with pytest.raises(ConfigError, match="pop100"):
        evaluate(fn, inputs, targets, histories, n_items, protocols=("pop100",))
    small_inputs, small_targets, small_histories, _ = _eval_data(10, 50, seed=13)
    with pytest.raises(ConfigError, match="only"):
        evaluate(small_fn, small_inputs, small_targets, small_histories, 50, protocols=("uni100",))
    with pytest.raises(ValueError, match="score_fn returned shape"):
        evaluate(lambda b: torch.zeros(b.shape[0], 7), inputs, targets, histories, n_items)


def test_evaluate_full_ranking_speed_ml1m_size() -> None:
    n_users, n_items, max_len = 6040, 3417, 50
    rng = np.random.default_rng(14)
    targets = torch.from_numpy(rng.integers(1, n_items + 1, size=n_users))
    inputs = torch.zeros(n_users, max_len, dtype=torch.int64)
    inputs[:, 0] = torch.arange(n_users)
    # ML-1M-like history lengths (mean ~165 items).
    histories = [rng.integers(1, n_items + 1, size=int(rng.integers(20, 310))) for _ in range(n_users)]
    table = torch.rand(n_users, n_items + 1, generator=torch.Generator().manual_seed(15))

    def lookup(batch: torch.Tensor) -> torch.Tensor:
        return table[batch[:, 0]]

    start = time.perf_counter()
    result = evaluate(lookup, inputs, targets, histories, n_items, exclude_history=True)
    elapsed = time.perf_counter() - start
    print(f"evaluate full ranking, {n_users} users x {n_items} items: {elapsed:.2f} s")
    assert elapsed < 10.0
    # Random scores: Recall@10 is about 10 / n_items.
    assert 0.0 <= result["full"]["recall@10"] < 0.02
