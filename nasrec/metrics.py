"""Ranking metrics for next-item recommendation (see DESIGN.md, "Evaluation protocol").

Every protocol reduces to the 0-based rank of the single target among a set of candidates:

- ``full``: all items (column 0 is padding and never a candidate); history items are excluded only
  when asked for.
- ``uni100`` / ``pop100``: the target plus 100 negatives drawn uniformly / proportionally to item
  popularity, never from the user's history, never the target, never padding.

Ties are counted pessimistically (a candidate with the same score as the target ranks above it), so a
model that scores everything alike gets the worst rank instead of free hits. A score of ``-inf`` means
"not a candidate" and is never counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from nasrec.data.batching import history_matrix
from nasrec.errors import ConfigError

PROTOCOLS = ("full", "uni100", "pop100")
DEFAULT_KS = (10, 20)

# Number of negatives of the sampled protocols, keyed by protocol name.
_SAMPLED_NEGATIVES = {"uni100": 100, "pop100": 100}


def rank_of_target(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of ``targets`` (column indices) in ``scores`` [B, C], ties pessimistic, -inf excluded."""
    _check_scores_targets(scores, targets)
    target_scores = scores.gather(1, targets.unsqueeze(1))
    # The target never competes with itself, even when its own score is -inf.
    others = torch.ones_like(scores, dtype=torch.bool)
    others.scatter_(1, targets.unsqueeze(1), False)
    above = (scores >= target_scores) & (scores > -math.inf) & others
    return above.sum(dim=1)


def full_ranking_ranks(
    scores: torch.Tensor, targets: torch.Tensor, *, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """Rank of each target among all items; padding (column 0) and ``exclude`` (except the target) dropped."""
    _check_scores_targets(scores, targets)
    if bool((targets == 0).any()):
        raise ValueError("a target is the padding index 0; targets must be item indices >= 1")
    drop = torch.zeros_like(scores, dtype=torch.bool)
    if exclude is not None:
        if exclude.shape != scores.shape or exclude.dtype != torch.bool:
            raise ValueError(
                f"exclude must be a bool tensor of shape {tuple(scores.shape)}, "
                f"got {exclude.dtype} {tuple(exclude.shape)}"
            )
        drop |= exclude.to(scores.device)
        drop.scatter_(1, targets.unsqueeze(1), False)
    drop[:, 0] = True
    return rank_of_target(scores.masked_fill(drop, -math.inf), targets)


def sample_negatives(
    history: torch.Tensor,
    targets: torch.Tensor,
    n: int,
    *,
    weights: torch.Tensor | None,
    generator: torch.Generator,
) -> torch.Tensor:
    """Draw ``n`` distinct negatives per row: not padding, not the target, not in ``history``.

    ``history`` is bool [B, n_items + 1]. ``weights`` None samples uniformly; otherwise it is a popularity
    vector [n_items + 1] and an item is drawn with probability proportional to its weight among the allowed
    items (zero-weight items are never drawn).
    """
    if history.dim() != 2 or history.dtype != torch.bool:
        raise ValueError(f"history must be a 2-D bool tensor, got {history.dtype} {tuple(history.shape)}")
    if targets.shape != (history.shape[0],):
        raise ValueError(f"targets must have shape ({history.shape[0]},), got {tuple(targets.shape)}")
    if n < 1:
        raise ConfigError(f"the number of negatives must be >= 1, got {n}")
    allowed = ~history
    allowed[:, 0] = False
    allowed.scatter_(1, targets.unsqueeze(1), False)
    if weights is None:
        row_weights = allowed.to(torch.float64)
    else:
        _check_weights(weights, history.shape[1])
        row_weights = weights.to(torch.float64).unsqueeze(0) * allowed
    available = (row_weights > 0).sum(dim=1)
    short = torch.nonzero(available < n).flatten()
    if short.numel() > 0:
        row = int(short[0])
        raise ConfigError(
            f"cannot sample {n} negatives: row {row} has only {int(available[row])} candidate items "
            f"(of {history.shape[1] - 1}) outside its history and target"
            + ("" if weights is None else " with positive popularity")
        )
    return torch.multinomial(row_weights, n, replacement=False, generator=generator)


def sampled_ranks(scores: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Rank of each target among itself and its ``negatives`` [B, n] (item indices into ``scores``)."""
    _check_scores_targets(scores, targets)
    if negatives.dim() != 2 or negatives.shape[0] != scores.shape[0]:
        raise ValueError(f"negatives must have shape ({scores.shape[0]}, n), got {tuple(negatives.shape)}")
    candidates = torch.cat([targets.unsqueeze(1), negatives.to(targets.device)], dim=1)
    candidate_scores = scores.gather(1, candidates)
    return rank_of_target(candidate_scores, torch.zeros_like(targets))


def row_metrics(ranks: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """Recall@k, MRR@k and NDCG@k of each row (float64), from its 0-based target rank: one target per row,
    so Recall@k is the hit indicator, MRR@k = 1 / (rank + 1) and NDCG@k = 1 / log2(rank + 2) within the top k."""
    _check_ks((k,))
    ranks = ranks.to(torch.float64).cpu()
    hit = ranks < k
    zero = torch.zeros_like(ranks)
    return {
        f"recall@{k}": hit.to(torch.float64),
        f"mrr@{k}": torch.where(hit, 1.0 / (ranks + 1.0), zero),
        f"ndcg@{k}": torch.where(hit, 1.0 / torch.log2(ranks + 2.0), zero),
    }


def metrics_from_ranks(ranks: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Mean Recall@K, MRR@K and NDCG@K over rows, from 0-based target ranks."""
    _check_ks(ks)
    if ranks.dim() != 1 or ranks.numel() == 0:
        raise ValueError(f"ranks must be a non-empty 1-D tensor, got shape {tuple(ranks.shape)}")
    return {name: float(values.mean()) for k in ks for name, values in row_metrics(ranks, k).items()}


@dataclass
class RankingAccumulator:
    """Collects ranks per protocol batch by batch; ``result`` gives the per-protocol metric means."""

    ks: tuple[int, ...] = DEFAULT_KS
    # Ranks are small ints, so keeping them all is cheap and makes the means exact over the whole set.
    _ranks: dict[str, list[torch.Tensor]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.ks = tuple(self.ks)
        _check_ks(self.ks)

    def add(self, protocol: str, ranks: torch.Tensor) -> None:
        _check_protocol(protocol)
        if ranks.dim() != 1:
            raise ValueError(f"ranks must be 1-D, got shape {tuple(ranks.shape)}")
        self._ranks.setdefault(protocol, []).append(ranks.detach().to("cpu", torch.int64))

    def ranks(self) -> dict[str, torch.Tensor]:
        """Every row's rank so far, per protocol, in the order added."""
        return {protocol: torch.cat(parts) for protocol, parts in self._ranks.items()}

    def result(self) -> dict[str, dict[str, float]]:
        return {protocol: metrics_from_ranks(ranks, self.ks) for protocol, ranks in self.ranks().items()}


def evaluate(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    histories: list[np.ndarray],
    n_items: int,
    *,
    protocols: Sequence[str] = ("full",),
    ks: Sequence[int] = DEFAULT_KS,
    exclude_history: bool = False,
    popularity: np.ndarray | None = None,
    seed: int = 0,
    batch_size: int = 256,
) -> dict[str, dict[str, float]]:
    """Score ``inputs`` in batches and return ``{protocol: {metric@k: mean}}`` for the requested protocols.

    ``histories[i]`` is the full item history of row i: excluded from the full ranking when
    ``exclude_history`` is set, and never drawn as a negative by the sampled protocols (always).
    """
    _check_ks(ks)
    ranks = evaluate_ranks(score_fn, inputs, targets, histories, n_items, protocols=protocols,
                           exclude_history=exclude_history, popularity=popularity, seed=seed, batch_size=batch_size)
    return {protocol: metrics_from_ranks(r, ks) for protocol, r in ranks.items()}


def evaluate_ranks(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    histories: list[np.ndarray],
    n_items: int,
    *,
    protocols: Sequence[str] = ("full",),
    exclude_history: bool = False,
    popularity: np.ndarray | None = None,
    seed: int = 0,
    batch_size: int = 256,
) -> dict[str, torch.Tensor]:
    """`evaluate`'s 0-based target rank of every row, ``{protocol: ranks [rows]}``: per-user metrics
    (`row_metrics`) for paired comparisons of two models on the same rows."""
    protocols = tuple(protocols)
    for protocol in protocols:
        _check_protocol(protocol)
    if not protocols:
        raise ConfigError(f"no evaluation protocol requested; choose from {', '.join(PROTOCOLS)}")
    if batch_size < 1:
        raise ConfigError(f"evaluation batch_size must be >= 1, got {batch_size}")
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    _check_eval_rows(inputs, targets, histories, n_items)
    weights = None
    if "pop100" in protocols:
        if popularity is None:
            raise ConfigError("protocol 'pop100' needs item popularity counts; none were given")
        weights = torch.as_tensor(np.asarray(popularity), dtype=torch.float64)
        _check_weights(weights, n_items + 1)

    generator = torch.Generator().manual_seed(seed)
    accumulator = RankingAccumulator()
    for start in range(0, inputs.shape[0], batch_size):
        rows = slice(start, start + batch_size)
        scores = score_fn(inputs[rows])
        batch_targets = targets[rows]
        if scores.shape != (batch_targets.shape[0], n_items + 1):
            expected = (batch_targets.shape[0], n_items + 1)
            raise ValueError(f"score_fn returned shape {tuple(scores.shape)}, expected {expected}")
        batch_targets = batch_targets.to(scores.device)
        history = history_matrix(histories[rows], n_items)
        for protocol in protocols:
            if protocol == "full":
                exclude = history.to(scores.device) if exclude_history else None
                ranks = full_ranking_ranks(scores, batch_targets, exclude=exclude)
            else:
                negatives = sample_negatives(
                    history,
                    batch_targets.cpu(),
                    _SAMPLED_NEGATIVES[protocol],
                    weights=weights if protocol == "pop100" else None,
                    generator=generator,
                )
                ranks = sampled_ranks(scores, batch_targets, negatives.to(scores.device))
            accumulator.add(protocol, ranks)
    return accumulator.ranks()


def _check_scores_targets(scores: torch.Tensor, targets: torch.Tensor) -> None:
    if scores.dim() != 2:
        raise ValueError(f"scores must be 2-D [batch, candidates], got shape {tuple(scores.shape)}")
    if targets.shape != (scores.shape[0],) or targets.dtype != torch.int64:
        raise ValueError(
            f"targets must be int64 of shape ({scores.shape[0]},), got {targets.dtype} {tuple(targets.shape)}"
        )
    if targets.numel() > 0:
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= scores.shape[1]:
            raise ValueError(f"targets must lie in [0, {scores.shape[1]}), got [{low}, {high}]")
    # A NaN compares false with everything and would silently turn into a perfect rank.
    if bool(torch.isnan(scores).any()):
        raise ValueError("scores contain NaN; the model diverged or score_fn is broken")


def _check_weights(weights: torch.Tensor, size: int) -> None:
    if weights.shape != (size,):
        raise ConfigError(
            f"popularity must have one entry per item index (length {size}), got {tuple(weights.shape)}"
        )
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ConfigError("popularity weights must be finite and non-negative")


def _check_ks(ks: Sequence[int]) -> None:
    if len(ks) == 0 or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in ks):
        raise ConfigError(f"metric cut-offs K must be a non-empty list of positive integers, got {list(ks)}")


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown evaluation protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")


def _check_eval_rows(
    inputs: torch.Tensor, targets: torch.Tensor, histories: list[np.ndarray], n_items: int
) -> None:
    if inputs.dim() != 2:
        raise ValueError(f"inputs must be 2-D [rows, max_len], got shape {tuple(inputs.shape)}")
    n = inputs.shape[0]
    if targets.shape != (n,) or targets.dtype != torch.int64:
        raise ValueError(f"targets must be int64 of shape ({n},), got {targets.dtype} {tuple(targets.shape)}")
    if len(histories) != n:
        raise ValueError(f"got {len(histories)} histories for {n} evaluation rows")
    if n == 0:
        raise ValueError("no evaluation rows")
    low, high = int(targets.min()), int(targets.max())
    if low < 1 or high > n_items:
        raise ValueError(f"targets must be item indices in [1, {n_items}], got [{low}, {high}]")
    if sum(len(h) for h in histories) > 0:
        items = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories])
        low, high = int(items.min()), int(items.max())
        if low < 0 or high > n_items:
            raise ValueError(f"history item indices must lie in [0, {n_items}], got [{low}, {high}]")
