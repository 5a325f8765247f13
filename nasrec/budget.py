"""The budget guarantee: a derived arch over the FLOPs budget becomes the arch its strategy prefers most
among those that fit, costing at least a share of the budget (`enforce_budget`). The pipeline
(`nasrec.search`) applies it after every search; RecNAS applies it during its search to choose what
to prune."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from nasrec.arch import Arch, SearchSpace
from nasrec.errors import ConfigError

MAX_PROJECTION_ARCHS = 500_000
# A derived arch over the budget asked for more compute than allowed, so the projection keeps it near the
# budget: it chooses among the feasible archs costing at least this share of the budget (see enforce_budget).
PROJECTION_FILL = 0.8


def space_archs(space: SearchSpace, gates: int = 0) -> Iterator[Arch]:
    """The archs of a space, carrying the gate setting of a strategy that trains gates."""
    return (replace(a, gates=gates) for a in space) if gates else iter(space)


def closeness(derived: Arch) -> Callable[[Arch], float]:
    """Preference for strategies that state none: minus the number of choices differing from `derived`."""

    def score(arch: Arch) -> float:
        diff = sum(getattr(arch, f) != getattr(derived, f)
                   for f in ("depth", "hidden", "embedding", "heads", "attention"))
        diff += sum(a != b for a, b in zip(arch.inner, derived.inner, strict=False))
        return -float(diff + abs(arch.depth - derived.depth))

    return score


def enforce_budget(derived: Arch, space: SearchSpace, budget: float, flops: Callable[[Arch], int],
                   preference: Callable[[Arch], float] | None,
                   fill: float = PROJECTION_FILL) -> tuple[Arch, dict[str, Any]]:
    """The budget guarantee. Keep `derived` if it fits; otherwise take the arch the strategy prefers most
    (its architecture weights' `arch_preference`, or closeness to `derived`) among the archs of the space
    within the budget that cost at least `fill` x the budget, ties going to more FLOPs, then to the
    canonical JSON order. If no arch with a finite preference lies in that band (a budget near the space's
    smallest arch, or a strategy that scored only a few archs), every feasible arch is a candidate.

    Why the band: the derived arch asked for more than the budget, and a strategy's weights rank the options
    of each choice but not their cost, so the most preferred feasible arch can be far below the budget
    (DARTS, which has no resource term, prefers depth 4 and hidden 128; the most preferred feasible arch was
    one block of hidden 128 at 0.6x the budget). The band keeps what the budget allows."""
    info: dict[str, Any] = {"derived": derived.to_dict(), "derived_flops": flops(derived), "projected": False}
    if flops(derived) <= budget:
        return derived, info
    if len(space) > MAX_PROJECTION_ARCHS:
        raise ConfigError(f"space {space.name!r} has {len(space):,} archs, too many to project onto the budget")
    prefer = preference or closeness(derived)
    cost = {a: flops(a) for a in space_archs(space, derived.gates)}
    feasible = [a for a, f in cost.items() if f <= budget]
    band = [a for a in feasible if cost[a] >= fill * budget and math.isfinite(prefer(a))]
    best = max(band or feasible, key=lambda a: (prefer(a), cost[a], a.to_json()))
    info.update(projected=True,
                rule=f"max strategy preference among archs costing {fill:g}x to 1x the budget "
                     "(all archs within budget when none does); ties: more FLOPs",
                preference="strategy" if preference else "closeness to derived",
                fill=fill, fill_band_empty=not band)
    return best, info
