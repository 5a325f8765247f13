"""RecNAS: a softmax mixture with an annealed temperature, progressive pruning, a hard FLOPs budget.

Relaxation. Every choice's weights are softmax(alpha / T) over its surviving candidates: pruned
candidates have their logits masked with -inf, so their weight is exactly 0. The temperature of search
epoch e (0-based, of E) is geometric from `temperature_start` to `temperature_end`:

    T_e = T_start * (T_end / T_start) ** (e / (E - 1))        (T_0 = T_start, T_{E-1} = T_end)

so alpha's weights are driven toward one-hot. The weight steps (search-train windows) and the arch steps
(arch-validation rows, after the warm-up) are the first-order bilevel loop of `_differentiable`. A pruned
hidden width or attention kind costs nothing: in weight steps its weight is a 0 without grad, and in
arch steps the hidden and attention weights are handed over per candidate (`per_candidate`), a pruned
one as a constant 0 that the mixture skips. There is no soft resource term.

Pruning rounds happen at the end of every `prune_every`-th epoch after the warm-up, and always at the
end of the last epoch. A choice is the hidden width, the depth, the attention kind and the inner width
of each block (one shared inner choice when the space shares it). Each round, with the weights at the
epoch's temperature:

1. weak candidates: in every choice with two or more survivors, the weakest survivor whose weight is
   below `prune_threshold` is pruned (at most one per choice per round, never the last one);
2. hard budget, in the rounds whose temperature is at most `budget_temperature` (and always in the last
   one): while the arch A of the surviving argmax candidates costs more than the budget B, candidates are
   pruned by `budget_rule`.
   - `band` (default): the target is the surviving arch the weights prefer most (`arch_preference`, the
     pipeline's projection score) among those costing `projection_fill` (the pipeline's band, 0.8) to 1x
     the budget, ties going to more FLOPs (every surviving arch within the budget when none lies in the
     band). In every choice of the target (the inner widths of its blocks only), the survivors ranked above
     the target's option are pruned, so the argmax becomes the target. The pipeline's budget guarantee
     (`nasrec.budget.enforce_budget`, over the surviving archs), applied while the search can still train
     the survivors. With `budget_defer` d > 0, in the budget rounds before the last, a choice whose largest
     surviving weight is below (1 + d) / (its survivors) is left whole that round (a `budget_deferred` event):
     on ML-1M one seed's first budget round met flat depth weights (0.21 / 0.20 / 0.28 / 0.31) and pruned
     depths 4, 3 and 1 at once toward a two-block target, chosen by the other choices' weights. The last round
     never defers, so the budget is met as without it. Off by default: with d = 0.3 that seed's next round,
     its depth weights no longer flat, pruned toward the same target (docs/benchmarks.md).
   - `greedy` (sessions 11-14): one candidate at a time. A *move* makes a cheaper survivor s of a choice c
     the argmax of c (FLOPs of A with c set to s below FLOPs(A)); it saves F(A) - F(A[c:=s]) FLOPs and costs
     the weight of the survivors of c ranked above s (all of them must go). If some move brings A within B,
     the one of them with the least weight lost wins (ties: fewer FLOPs saved, then the earlier choice, then
     the earlier option); otherwise the move with the most FLOPs saved per unit of weight lost wins (ties:
     more FLOPs saved, then the earlier choice, then the earlier option). The current argmax of the winning
     move's choice - the first candidate that must go - is pruned; A is re-derived and the rule repeats.
     The ratio alone over-cuts near the budget: 1.6% over it, it dropped a block whose depth weight was
     0.74 (saving half the FLOPs) rather than narrow one FFN (saving 6%), because the block saved more
     FLOPs per unit of weight. Per move it still prefers dropping blocks, which save the most FLOPs.

   Why the temperature gate: at T_start = 5 the weights are softmax(alpha / 5), near uniform whatever the
   arch steps learned, and the first budget round pruned on noise: on ML-1M (max_len 50, a third of the max
   FLOPs) every seed lost depth 4 (weight 0.25) in the round after the warm-up, and five of six depth 3
   (0.34 of the three left) too: uniform weights. From T <= 1 on they are at least as sharp as the logits.

Feasibility guard (both steps): a candidate is never pruned if the cheapest arch built from the
survivors would then exceed the budget. The cheapest arch is exact: FLOPs grow with hidden width,
depth and every inner width, so it takes the smallest surviving hidden, depth and per-block inner
width, and the cheapest surviving attention kind for that hidden width. While A is over budget some
choice's argmax differs from that cheapest arch, moving that choice to the cheapest arch's option
saves FLOPs, and pruning its argmax keeps the cheapest arch alive, so a move passing the guard always
exists (`greedy`); the band target is a surviving arch within the budget, and only candidates ranked above
its options go, so it stays alive (`band`). Hence when the space has an arch within the budget (the
pipeline checks this before the search), the surviving argmax arch after the last round is within budget
and the pipeline's projection never has to step in.

Derive: the surviving candidate with the largest weight in every choice. The masks and the temperature
are checkpointed (`--resume`), and every epoch's trace row holds them, the candidates pruned that round
and the weights, expected FLOPs and argmax after pruning.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from nasrec.arch import Arch, SearchSpace
from nasrec.budget import enforce_budget
from nasrec.strategies._differentiable import COMMON_PARAMS, ArchLogits, DifferentiableStrategy, weights_snapshot
from nasrec.strategies.base import HyperParam, SearchContext, SearchResult, register_strategy
from nasrec.strategies.mixture import (
    CandidateMask,
    ChoiceWeights,
    arch_preference,
    argmax_arch,
    expected_flops,
    n_inner_options,
)
from nasrec.strategies.proxyless import per_candidate

Choice = tuple[str, int | None]  # ("hidden" | "depth" | "attention" | "inner", block row or None)


@register_strategy
class RecNAS(DifferentiableStrategy):
    name = "recnas"
    summary = (
        "softmax mixture with geometrically annealed temperature, progressive pruning of weak "
        "candidates and of costly ones until the argmax arch meets the FLOPs budget; surviving argmax"
    )
    hyperparams: ClassVar[tuple[HyperParam, ...]] = COMMON_PARAMS + (
        HyperParam(
            "temperature_start",
            "float",
            5.0,
            0.01,
            100.0,
            log=True,
            help="softmax temperature of the first search epoch",
            tune=(1.0, 10.0),
        ),
        HyperParam(
            "temperature_end",
            "float",
            0.1,
            0.001,
            10.0,
            log=True,
            help="softmax temperature of the last search epoch (geometric annealing in between)",
            tune=(0.01, 0.5),
        ),
        HyperParam(
            "prune_every", "int", 1, 1, 100, help="epochs between pruning rounds (after the warm-up)", tune=(1, 3)
        ),
        HyperParam(
            "prune_threshold",
            "float",
            0.05,
            0.0,
            0.5,
            help="a candidate whose weight in its choice falls below this is pruned "
            "(at most one per choice per round, never the last one)",
            tune=(0.01, 0.2),
        ),
        HyperParam(
            "budget_rule",
            "categorical",
            "band",
            choices=("band", "greedy"),
            help="hard-budget pruning: band = prune toward the most preferred surviving arch costing "
            "projection_fill to 1x the budget (the pipeline's guarantee rule); greedy = one move at a time, "
            "the least weight lost among single moves that fit, else the most FLOPs saved per weight lost",
        ),
        HyperParam(
            "budget_temperature",
            "float",
            1.0,
            0.001,
            100.0,
            log=True,
            help="hard-budget pruning starts at the first pruning round whose temperature is at most this "
            "(always in the last epoch): hotter weights are near uniform, pruning on them is noise",
            tune=(0.3, 5.0),
        ),
        HyperParam(
            "budget_defer",
            "float",
            0.0,
            0.0,
            3.0,
            help="band rule, budget rounds before the last: a choice whose largest surviving weight is below "
            "(1 + budget_defer) x uniform over its survivors is not pruned that round (too flat to commit on); "
            "0 = never defer",
            tune=(0.0, 1.0),
        ),
    )

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self._space: SearchSpace | None = None
        self._epochs = 1
        self._temperature = float(self.params["temperature_start"])
        self._masks: dict[str, torch.Tensor] = {}

    # -- schedule and masks --------------------------------------------------------------------------
    def temperature(self, epoch: int) -> float:
        """T of search epoch `epoch` (0-based): geometric from temperature_start to temperature_end."""
        start, end = float(self.params["temperature_start"]), float(self.params["temperature_end"])
        if self._epochs <= 1:
            return start
        return start * (end / start) ** (epoch / (self._epochs - 1))

    def is_pruning_round(self, epoch: int) -> bool:
        after_warmup = epoch + 1 - self.params["warmup_epochs"]
        return epoch == self._epochs - 1 or (after_warmup > 0 and after_warmup % self.params["prune_every"] == 0)

    def is_budget_round(self, epoch: int) -> bool:
        """Whether a pruning round at `epoch` also prunes to the budget (see the module doc)."""
        return epoch == self._epochs - 1 or self.temperature(epoch) <= self.params["budget_temperature"]

    def _init_masks(self, space: SearchSpace) -> None:
        self._masks = {
            "hidden": torch.ones(len(space.hiddens), dtype=torch.bool),
            "depth": torch.ones(len(space.depths), dtype=torch.bool),
            "attention": torch.ones(len(space.attentions), dtype=torch.bool),
            "inner": torch.ones(space.depths[-1], n_inner_options(space), dtype=torch.bool),
        }

    def masked_weights(self, logits: ArchLogits, temperature: float) -> ChoiceWeights:
        """softmax(alpha / T) per choice with pruned candidates at exactly 0."""

        def sm(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return torch.softmax(t.masked_fill(~mask, float("-inf")) / temperature, dim=-1)

        m = self._masks
        return ChoiceWeights(
            sm(logits.hidden, m["hidden"]),
            sm(logits.inner, m["inner"]),
            sm(logits.depth, m["depth"]),
            sm(logits.attention, m["attention"]),
        )

    def candidate_mask(self, space: SearchSpace) -> CandidateMask:
        m = self._masks
        return CandidateMask(m["hidden"], m["inner"], m["depth"], m["attention"])

    # -- hooks of the bilevel loop -------------------------------------------------------------------
    def search(self, ctx: SearchContext) -> SearchResult:
        self._space = ctx.space
        self._epochs = ctx.epochs
        self._temperature = self.temperature(0)
        self._init_masks(ctx.space)
        return super().search(ctx)  # restores masks and temperature when resuming

    def relax(self, logits: ArchLogits, epoch: int, *, arch_step: bool) -> ChoiceWeights:
        self._temperature = self.temperature(epoch)
        w = self.masked_weights(logits, self._temperature)
        if not arch_step:
            return w
        # per candidate, so that a pruned width/kind is skipped although the others carry grad
        return ChoiceWeights(
            per_candidate(w.hidden, self._masks["hidden"].tolist()),  # type: ignore[arg-type]
            w.inner,
            w.depth,
            per_candidate(w.attention, self._masks["attention"].tolist()),
        )  # type: ignore[arg-type]

    def final_weights(self, logits: ArchLogits) -> ChoiceWeights:
        return self.masked_weights(logits, self._temperature)

    def end_epoch(self, ctx: SearchContext, logits: ArchLogits, epoch: int) -> dict[str, Any]:
        self._temperature = self.temperature(epoch)
        events: list[dict[str, Any]] = []
        if self.is_pruning_round(epoch):
            with torch.no_grad():
                events += self._prune_weak(ctx, logits)
                if self.is_budget_round(epoch):
                    events += self._prune_to_budget(ctx, logits, last=epoch == self._epochs - 1)
        with torch.no_grad():
            w = self.final_weights(logits)
            arch = argmax_arch(ctx.space, w, self.n_gates())
            return {  # the weights / expected FLOPs / argmax of the row are replaced by the pruned ones
                "temperature": self._temperature,
                "pruning_round": self.is_pruning_round(epoch),
                "budget_round": self.is_pruning_round(epoch) and self.is_budget_round(epoch),
                "pruned": events,
                "masks": self.masks_snapshot(),
                "weights": weights_snapshot(ctx.space, w),
                "expected_flops": float(expected_flops(ctx.space, w, ctx.n_items, ctx.max_len, self.n_gates())),
                "argmax": arch.to_dict(),
                "argmax_flops": ctx.flops(arch),
                "cheapest_surviving_flops": self._cheapest_flops(ctx),
            }

    def strategy_state(self) -> dict[str, Any]:
        return {"masks": {k: v.tolist() for k, v in self._masks.items()}, "temperature": self._temperature}

    def load_strategy_state(self, state: dict[str, Any]) -> None:
        self._masks = {k: torch.tensor(v, dtype=torch.bool) for k, v in state["masks"].items()}
        self._temperature = float(state["temperature"])

    # -- choices -------------------------------------------------------------------------------------
    def _choices(self) -> list[Choice]:
        assert self._space is not None
        rows: list[Choice] = [("hidden", None), ("depth", None), ("attention", None)]
        if self._space.inner_per_block:
            return rows + [("inner", b) for b in range(self._space.depths[-1])]
        return [*rows, ("inner", None)]

    def _alive(self, choice: Choice) -> list[int]:
        key, row = choice
        m = self._masks[key]
        if key == "inner":
            m = m[row] if row is not None else m.all(0)
        return [int(k) for k in torch.nonzero(m).flatten()]

    def _set_pruned(self, choice: Choice, k: int, pruned: bool = True) -> None:
        key, row = choice
        if key != "inner":
            self._masks[key][k] = not pruned
        elif row is not None:
            self._masks[key][row, k] = not pruned
        else:
            self._masks[key][:, k] = not pruned

    @staticmethod
    def _choice_weights(w: ChoiceWeights, choice: Choice) -> torch.Tensor:
        """Weights of one choice; a shared inner choice uses the rows' sum (as `argmax_arch`) / rows."""
        key, row = choice
        if key != "inner":
            return getattr(w, key)
        return w.inner[row] if row is not None else w.inner.sum(0) / w.inner.shape[0]

    def _label(self, choice: Choice, k: int) -> dict[str, Any]:
        assert self._space is not None
        key, row = choice
        space = self._space
        if key == "hidden":
            return {"choice": "hidden", "option": space.hiddens[k]}
        if key == "depth":
            return {"choice": "depth", "option": space.depths[k]}
        if key == "attention":
            return {"choice": "attention", "option": space.attentions[k]}
        label = {"choice": "inner", "option": space.inner_widths(space.hiddens[0])[k]}
        return label if row is None else {**label, "block": row + 1}

    def masks_snapshot(self) -> dict[str, Any]:
        assert self._space is not None
        space = self._space

        def row(m: torch.Tensor, labels: tuple[Any, ...]) -> dict[str, bool]:
            return {str(k): bool(v) for k, v in zip(labels, m, strict=True)}

        inner_labels = space.inner_widths(space.hiddens[0])
        return {
            "hidden": row(self._masks["hidden"], space.hiddens),
            "depth": row(self._masks["depth"], space.depths),
            "attention": row(self._masks["attention"], space.attentions),
            "inner": [row(m, inner_labels) for m in self._masks["inner"]],
        }

    # -- costs ---------------------------------------------------------------------------------------
    def _arch(self, sel: dict[Choice, int]) -> Arch:
        assert self._space is not None
        space = self._space
        h = space.hiddens[sel[("hidden", None)]]
        d = space.depths[sel[("depth", None)]]
        widths = space.inner_widths(h)
        if space.inner_per_block:
            inner = tuple(widths[sel[("inner", b)]] for b in range(d))
        else:
            inner = (widths[sel[("inner", None)]],) * d
        return Arch(
            d,
            h,
            inner,
            space.embedding_widths(h)[0],
            space.heads[0],
            space.attentions[sel[("attention", None)]],
            gates=self.n_gates(),
        )

    def _cheapest_flops(self, ctx: SearchContext) -> float:
        """FLOPs of the cheapest arch built from surviving candidates (exact; see the module doc)."""
        space = ctx.space
        best = math.inf
        for hi in self._alive(("hidden", None)):
            h = space.hiddens[hi]
            widths = space.inner_widths(h)
            for di in self._alive(("depth", None)):
                d = space.depths[di]
                if space.inner_per_block:
                    inner = tuple(min(widths[k] for k in self._alive(("inner", b))) for b in range(d))
                else:
                    inner = (min(widths[k] for k in self._alive(("inner", None))),) * d
                for ai in self._alive(("attention", None)):
                    arch = Arch(
                        d,
                        h,
                        inner,
                        space.embedding_widths(h)[0],
                        space.heads[0],
                        space.attentions[ai],
                        gates=self.n_gates(),
                    )
                    best = min(best, float(ctx.flops(arch)))
        return best

    def _may_prune(self, ctx: SearchContext, choice: Choice, k: int) -> bool:
        """Never the last survivor; never so that the cheapest surviving arch goes over budget."""
        if len(self._alive(choice)) < 2:
            return False
        before = self._cheapest_flops(ctx)
        self._set_pruned(choice, k)
        after = self._cheapest_flops(ctx)
        self._set_pruned(choice, k, pruned=False)
        return after <= max(ctx.budget_flops, before)

    # -- pruning -------------------------------------------------------------------------------------
    def _prune_weak(self, ctx: SearchContext, logits: ArchLogits) -> list[dict[str, Any]]:
        threshold = self.params["prune_threshold"]
        w = self.masked_weights(logits, self._temperature)
        events = []
        for choice in self._choices():
            alive = self._alive(choice)
            if len(alive) < 2:
                continue
            cw = self._choice_weights(w, choice).tolist()
            for k in sorted((k for k in alive if cw[k] < threshold), key=lambda k: (cw[k], -k)):
                if self._may_prune(ctx, choice, k):
                    self._set_pruned(choice, k)
                    events.append({**self._label(choice, k), "reason": "weak", "weight": round(cw[k], 6)})
                    break
        return events

    def _prune_to_budget(self, ctx: SearchContext, logits: ArchLogits, *, last: bool) -> list[dict[str, Any]]:
        if self.params["budget_rule"] == "band":
            return self._prune_to_band(ctx, logits, defer=0.0 if last else float(self.params["budget_defer"]))
        return self._prune_greedy(ctx, logits)

    def _option(self, choice: Choice, arch: Arch) -> int:
        """The index of `arch`'s option in `choice`."""
        assert self._space is not None
        space = self._space
        key, row = choice
        if key == "hidden":
            return space.hiddens.index(arch.hidden)
        if key == "depth":
            return space.depths.index(arch.depth)
        if key == "attention":
            return space.attentions.index(arch.attention)
        return space.inner_widths(arch.hidden).index(arch.inner[row or 0])

    def _survives(self, arch: Arch) -> bool:
        """Whether no option of `arch` is pruned (inner widths: of its own blocks; the space has one
        embedding width per hidden width and one head count, `check_mixable`)."""
        own = (c for c in self._choices() if c[1] is None or c[1] < arch.depth)
        return all(self._option(c, arch) in self._alive(c) for c in own)

    def _prune_to_band(self, ctx: SearchContext, logits: ArchLogits, *, defer: float = 0.0) -> list[dict[str, Any]]:
        assert self._space is not None
        space = self._space
        w = self.masked_weights(logits, self._temperature)
        # The pipeline's guarantee over the surviving archs (the others prefer -inf); nothing if A fits.
        target, info = enforce_budget(argmax_arch(space, w, self.n_gates()), space, ctx.budget_flops, ctx.flops,
                                      lambda a: arch_preference(space, w, a) if self._survives(a) else -math.inf,
                                      ctx.projection_fill)
        if not info["projected"]:
            return []
        if not self._survives(target):  # cannot happen when an arch of the space fits (the feasibility guard)
            return [{"reason": "budget_unmet", "argmax_flops": info["derived_flops"], "budget": ctx.budget_flops}]
        events: list[dict[str, Any]] = []
        for choice in self._choices():
            key, row = choice
            if row is not None and row >= target.depth:  # blocks past the target's depth: free
                continue
            cw = self._choice_weights(w, choice).tolist()
            keep = self._option(choice, target)
            alive = self._alive(choice)
            if defer > 0 and keep != max(alive, key=lambda k, cw=cw: (cw[k], -k)) \
                    and max(cw[k] for k in alive) < (1 + defer) / len(alive):
                events.append({**self._label(choice, keep), "reason": "budget_deferred", "rule": "band",
                               "weights": {str(self._label(choice, k)["option"]): round(cw[k], 6) for k in alive}})
                continue
            for k in sorted(alive, key=lambda k, cw=cw: (-cw[k], k)):
                if k == keep:
                    break
                self._set_pruned(choice, k)
                events.append({**self._label(choice, k), "reason": "budget", "rule": "band",
                               "weight": round(cw[k], 6), "argmax_flops": info["derived_flops"],
                               "target": target.to_dict(), "target_flops": ctx.flops(target),
                               "band_empty": info["fill_band_empty"]})
        return events

    def _prune_greedy(self, ctx: SearchContext, logits: ArchLogits) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        budget = ctx.budget_flops
        while True:
            w = self.masked_weights(logits, self._temperature)
            weights = {c: self._choice_weights(w, c).tolist() for c in self._choices()}
            ranking = {c: sorted(self._alive(c), key=lambda k, c=c: (-weights[c][k], k)) for c in weights}
            sel = {c: r[0] for c, r in ranking.items()}  # the argmax of every choice (first on ties)
            arch = self._arch(sel)
            flops = float(ctx.flops(arch))
            if flops <= budget:
                return events
            # (rank, choice, candidate to prune, FLOPs after the move, weight lost), per rule
            best: tuple[tuple[float, float, int, int], Choice, int, float, float] | None = None
            best_fit: tuple[tuple[float, float, int, int], Choice, int, float, float] | None = None
            for ci, choice in enumerate(self._choices()):
                key, row = choice
                order = ranking[choice]
                if len(order) < 2 or (row is not None and row >= arch.depth):  # blocks past A's depth: free
                    continue
                if not self._may_prune(ctx, choice, order[0]):
                    continue
                lost = 0.0
                for pos in range(1, len(order)):
                    lost += weights[choice][order[pos - 1]]
                    s = order[pos]
                    saved = flops - float(ctx.flops(self._arch({**sel, choice: s})))
                    if saved <= 0 or lost <= 0:
                        continue
                    rank = (saved / lost, saved, -ci, -s)
                    if best is None or rank > best[0]:
                        best = (rank, choice, order[0], flops - saved, lost)
                    fit_rank = (-lost, -saved, -ci, -s)
                    if flops - saved <= budget and (best_fit is None or fit_rank > best_fit[0]):
                        best_fit = (fit_rank, choice, order[0], flops - saved, lost)
            if best is None:  # cannot happen when an arch of the space fits (see the module doc)
                events.append({"reason": "budget_unmet", "argmax_flops": flops, "budget": budget})
                return events
            rule, (_, choice, k, target, lost) = ("fit", best_fit) if best_fit is not None else ("ratio", best)
            self._set_pruned(choice, k)
            events.append(
                {
                    **self._label(choice, k),
                    "reason": "budget",
                    "rule": rule,
                    "weight": round(weights[choice][k], 6),
                    "argmax_flops": flops,
                    "move_flops": target,
                    "weight_lost": round(lost, 6),
                    "flops_per_weight": (flops - target) / lost,
                }
            )
