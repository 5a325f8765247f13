from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from nasrec.pareto import dominates, pareto_front, plot_front


def brute_force(points: list[tuple[float, float]]) -> list[int]:
    """O(n^2): a point is on the front when no other point dominates it (NaN points never are)."""
    ok = [i for i, (q, c) in enumerate(points) if not (math.isnan(q) or math.isnan(c))]
    return [i for i in ok if not any(dominates(points[j], points[i]) for j in ok if j != i)]


@pytest.mark.parametrize("seed", range(30))
def test_matches_brute_force_with_ties_and_duplicates(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(0, 60)
    # Few distinct values so equal qualities, equal costs and exact duplicates are common.
    points = [(float(rng.randint(0, 8)), float(rng.randint(0, 8))) for _ in range(n)]
    points += [points[rng.randrange(n)] for _ in range(n // 5)] if n else []
    if n and seed % 3 == 0:
        points[rng.randrange(len(points))] = (math.nan, 1.0)
    assert pareto_front(points) == brute_force(points)


def test_continuous_random_points() -> None:
    rng = random.Random(7)
    points = [(rng.random(), rng.random() * 1e9) for _ in range(300)]
    assert pareto_front(points) == brute_force(points)


def test_hand_cases() -> None:
    assert pareto_front([]) == []
    assert pareto_front([(0.3, 100.0)]) == [0]
    # quality up, cost down: (0.5, 10) beats (0.4, 20); (0.6, 30) trades off.
    assert pareto_front([(0.4, 20.0), (0.5, 10.0), (0.6, 30.0)]) == [1, 2]
    # equal quality: only the cheaper one; equal cost: only the better one.
    assert pareto_front([(0.5, 10.0), (0.5, 20.0)]) == [0]
    assert pareto_front([(0.4, 10.0), (0.5, 10.0)]) == [1]
    # exact duplicates do not dominate each other: all are kept.
    assert pareto_front([(0.5, 10.0), (0.5, 10.0), (0.2, 50.0)]) == [0, 1]
    # NaN / None never on the front and dominate nothing.
    assert pareto_front([(math.nan, 1.0), (0.1, 5.0), (None, 0.0)]) == [1]
    assert dominates((0.5, 10.0), (0.5, 11.0)) and not dominates((0.5, 10.0), (0.5, 10.0))


def test_plot_writes_png(tmp_path: Path) -> None:
    points = [(0.1, 1e6), (0.2, 5e6), (0.15, 8e6), (0.3, 4e7)]
    out = plot_front(points, tmp_path / "sub" / "front.png", labels=["a", "b", "c", "d"])
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    empty = plot_front([], tmp_path / "empty.png")
    assert empty.read_bytes()[:4] == b"\x89PNG"
