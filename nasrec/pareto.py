"""Pareto front of (quality up, cost down) points, and its plot.

Pure functions, no MLflow: `nasrec.tracking` feeds them (NDCG@10, FLOPs) of every architecture of a
search or an experiment.

Dominance: point `a` dominates point `b` when `a` is no worse in both objectives (quality >=, cost <=)
and strictly better in at least one. The front is every point that no other point dominates.
Consequences, which the tests pin down:

* Equal quality, different cost: only the cheaper point is on the front.
* Equal cost, different quality: only the better point is on the front.
* Exact duplicates (same quality and same cost) do not dominate each other, so they are **all kept**:
  two trials that found the same architecture both appear, each with its own run.
* A point whose quality or cost is NaN (or None) is never on the front and dominates nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path


def _finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether `a` = (quality, cost) dominates `b`: no worse in both, strictly better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def pareto_front(points: Sequence[tuple[float | None, float | None]]) -> list[int]:
    """Indices (ascending) of the non-dominated points of `points`, each `(quality, cost)`.

    Quality is maximised, cost minimised; see the module docstring for ties and duplicates.
    O(n log n): sweep the points by increasing cost, keeping the best quality seen at a strictly lower
    cost; among equal costs only the best quality can survive, and only if it beats that."""
    valid = [i for i, (q, c) in enumerate(points) if _finite(q) and _finite(c)]
    valid.sort(key=lambda i: (points[i][1], -points[i][0]))  # type: ignore[operator]
    front: list[int] = []
    best_cheaper = -math.inf  # best quality among points strictly cheaper than the current group
    start = 0
    while start < len(valid):
        cost = points[valid[start]][1]
        end = start
        while end < len(valid) and points[valid[end]][1] == cost:
            end += 1
        group_best = points[valid[start]][0]  # sorted by quality descending within a cost
        if group_best > best_cheaper:  # type: ignore[operator]
            front.extend(i for i in valid[start:end] if points[i][0] == group_best)
            best_cheaper = group_best  # type: ignore[assignment]
        start = end
    return sorted(front)


def plot_front(points: Sequence[tuple[float | None, float | None]], path: str | Path, *,
               front: Sequence[int] | None = None, labels: Sequence[str] | None = None,
               quality_label: str = "NDCG@10", cost_label: str = "FLOPs per sequence",
               title: str | None = None) -> Path:
    """Write a PNG of every point (grey) and the front (red, with its staircase) to `path`.

    Cost is on the x axis (log scale when it spans more than a factor of 20), quality on the y axis;
    front points are annotated with `labels` when given. Uses the Agg canvas directly, so it never
    touches pyplot's global backend and works without a display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    front = pareto_front(points) if front is None else list(front)
    on_front = set(front)
    fig = Figure(figsize=(7.0, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    finite = [i for i, (q, c) in enumerate(points) if _finite(q) and _finite(c)]
    others = [i for i in finite if i not in on_front]
    if others:
        ax.scatter([points[i][1] for i in others], [points[i][0] for i in others], s=18, color="0.6",
                   label=f"dominated ({len(others)})", zorder=2)
    if front:
        ordered = sorted(front, key=lambda i: (points[i][1], -points[i][0]))  # type: ignore[operator]
        xs = [points[i][1] for i in ordered]
        ys = [points[i][0] for i in ordered]
        ax.step(xs, ys, where="post", color="tab:red", linewidth=1.2, zorder=3)
        ax.scatter(xs, ys, s=30, color="tab:red", label=f"Pareto front ({len(front)})", zorder=4)
        if labels is not None:
            for i in ordered:
                ax.annotate(str(labels[i]), (points[i][1], points[i][0]), textcoords="offset points",  # type: ignore[arg-type]
                            xytext=(4, 4), fontsize=6, color="tab:red")
    costs = [points[i][1] for i in finite]
    if costs and min(costs) > 0 and max(costs) / min(costs) > 20:  # type: ignore[operator]
        ax.set_xscale("log")
    ax.set_xlabel(f"{cost_label} (lower is better)")
    ax.set_ylabel(f"{quality_label} (higher is better)")
    ax.set_title(title or f"Pareto front: {quality_label} vs {cost_label}")
    ax.grid(True, alpha=0.3)
    if finite:
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no finished trials", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
