"""The bilevel loop shared by the differentiable strategies (DARTS, ProxylessNAS, RecNAS, EASRec).

First-order bilevel optimisation: the supernet's weights step on search-train windows with the
architecture weights fixed; the architecture weights step on arch-validation rows (carved from the
training part) with the supernet fixed. A subclass says how logits become mixture weights
(`relax`), what resource term joins the arch loss, and what happens at the end of an epoch.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, ClassVar

import torch
import torch.nn as nn

from nasrec.arch import Arch, SearchSpace
from nasrec.models.sasrec import ModelDims
from nasrec.strategies.base import HyperParam, SearchContext, SearchResult, Strategy
from nasrec.strategies.mixture import (
    CandidateMask,
    ChoiceWeights,
    arch_preference,
    argmax_arch,
    check_mixable,
    expected_flops,
    mixture_last_loss,
    mixture_loss,
    n_inner_options,
    path_weights,
    sandwich_archs,
)

COMMON_PARAMS: tuple[HyperParam, ...] = (
    HyperParam(
        "arch_lr",
        "float",
        3e-3,
        1e-5,
        1.0,
        log=True,
        help="Adam learning rate of the architecture weights",
        tune=(1e-4, 1e-2),
    ),
    HyperParam(
        "arch_weight_decay", "float", 1e-3, 0.0, 1.0, help="weight decay of the architecture weights", tune=(0.0, 1e-2)
    ),
    HyperParam(
        "warmup_epochs", "int", 1, 0, 1000, help="epochs of weight-only training before arch steps", tune=(0, 2)
    ),
    HyperParam("arch_every", "int", 1, 1, 100, help="one arch step every this many weight steps", tune=(1, 4)),
    HyperParam(
        "weight_step",
        "categorical",
        "mixture",
        choices=("mixture", "sandwich"),
        help="how the supernet's weights train: mixture = the strategy's own relaxation (the method as "
        "published); sandwich = the largest path plus one uniformly drawn path, each on its own loss, so "
        "every slice is trained to predict alone (counters the bias to shallow archs, docs/strategies.md)",
    ),
    HyperParam(
        "sandwich_attention",
        "categorical",
        "uniform",
        choices=("uniform", "weights"),
        help="with weight_step=sandwich, how each path's attention kind is drawn: uniform, or from the current "
        "architecture weights (the kind the search leans to gets more of the shared weights' training)",
    ),
)


class ArchLogits(nn.Module):
    """Architecture logits, one row per choice, in the space's option order."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.hidden = nn.Parameter(torch.zeros(len(space.hiddens)))
        self.inner = nn.Parameter(torch.zeros(space.depths[-1], n_inner_options(space)))
        self.depth = nn.Parameter(torch.zeros(len(space.depths)))
        self.attention = nn.Parameter(torch.zeros(len(space.attentions)))

    def softmax(self, temperature: float = 1.0) -> ChoiceWeights:
        def sm(t: torch.Tensor) -> torch.Tensor:
            return torch.softmax(t / temperature, dim=-1)

        return ChoiceWeights(sm(self.hidden), sm(self.inner), sm(self.depth), sm(self.attention))


def weights_snapshot(space: SearchSpace, w: ChoiceWeights) -> dict[str, Any]:
    """Architecture weights as plain JSON, labelled by option."""

    def row(t: torch.Tensor, labels: tuple[Any, ...]) -> dict[str, float]:
        return {str(k): round(float(v), 5) for k, v in zip(labels, t.detach(), strict=True)}

    inner_labels = space.inner_widths(space.hiddens[0])  # widths at the largest hidden
    return {
        "hidden": row(w.hidden, space.hiddens),
        "depth": row(w.depth, space.depths),
        "attention": row(w.attention, space.attentions),
        "inner": [row(w.inner[b], inner_labels) for b in range(w.inner.shape[0])],
    }


class DifferentiableStrategy(Strategy):
    """Bilevel search over `ArchLogits`; subclasses override the hooks below."""

    hyperparams: ClassVar[tuple[HyperParam, ...]] = COMMON_PARAMS

    # -- hooks -----------------------------------------------------------------------------------
    def n_gates(self) -> int:
        """Data-aware FFN gates the supernet carries and derived archs keep (EASRec); none by default."""
        return 0

    def supernet_dims(self, dims: ModelDims) -> ModelDims:
        return replace(dims, gates=self.n_gates())

    def should_stop(self, trace: list[dict[str, Any]]) -> bool:
        """Early stopping of the search, read after every epoch (never by default)."""
        return False

    def relax(self, logits: ArchLogits, epoch: int, *, arch_step: bool) -> ChoiceWeights:
        """Mixture weights for one step (DARTS: plain softmax)."""
        return logits.softmax()

    def arch_loss(self, ctx: SearchContext, logits: ArchLogits, epoch: int, inputs: torch.Tensor,
                  targets: torch.Tensor) -> tuple[torch.Tensor, ChoiceWeights]:
        """The arch step's task loss on arch-validation rows (its gradient reaches `logits`; its value is
        the trace's `arch_loss`) and the weights the resource term reads. By default: the mixture that
        `relax` gives."""
        weights = self.relax(logits, epoch, arch_step=True)
        return mixture_last_loss(ctx.supernet, ctx.space, inputs, targets, weights, gates=self.n_gates()), weights

    def resource_loss(self, ctx: SearchContext, weights: ChoiceWeights) -> torch.Tensor | None:
        """A term added to the arch loss (none by default)."""
        return None

    def end_epoch(self, ctx: SearchContext, logits: ArchLogits, epoch: int) -> dict[str, Any]:
        """Called after every search epoch; returns extra trace fields."""
        return {}

    def final_weights(self, logits: ArchLogits) -> ChoiceWeights:
        return logits.softmax()

    def candidate_mask(self, space: SearchSpace) -> CandidateMask:
        """Options still in play, for the sandwich weight step (RecNAS: the unpruned ones)."""
        return CandidateMask.everything(space)

    def shares_inner(self, space: SearchSpace) -> bool:
        """Whether derived archs have one inner width for every block."""
        return not space.inner_per_block

    def strategy_state(self) -> dict[str, Any]:
        """Extra state to checkpoint (temperatures, pruning masks, ...)."""
        return {}

    def load_strategy_state(self, state: dict[str, Any]) -> None:
        return None

    # -- the loop --------------------------------------------------------------------------------
    def check_space(self, space: SearchSpace) -> None:
        check_mixable(space)

    def search(self, ctx: SearchContext) -> SearchResult:
        torch.manual_seed(ctx.seed)
        space, model = ctx.space, ctx.supernet
        logits = ArchLogits(space)
        w_opt = torch.optim.Adam(model.parameters(), lr=ctx.lr)
        a_opt = torch.optim.Adam(
            logits.parameters(),
            lr=self.params["arch_lr"],
            betas=(0.5, 0.999),
            weight_decay=self.params["arch_weight_decay"],
        )
        trace: list[dict[str, Any]] = []
        start_epoch = 0
        saved = ctx.load_state()
        if saved is not None:
            start_epoch, state = saved
            logits.load_state_dict(state["logits"])
            w_opt.load_state_dict(state["w_opt"])
            a_opt.load_state_dict(state["a_opt"])
            trace = state["trace"]
            self.load_strategy_state(state["own"])

        for epoch in range(start_epoch, ctx.epochs):
            model.train()
            arch_batches = ctx.arch_batches(epoch)
            w_losses, a_losses = [], []
            for step, (x, y) in enumerate(ctx.train_batches(epoch)):
                with torch.no_grad():  # also with sandwich steps: relax keeps the per-epoch temperature current
                    fixed = self.relax(logits, epoch, arch_step=False)
                fixed = ChoiceWeights(*(t.detach() for t in (fixed.hidden, fixed.inner, fixed.depth, fixed.attention)))
                if self.params["weight_step"] == "sandwich":
                    kinds = None
                    if self.params["sandwich_attention"] == "weights":
                        with torch.no_grad():
                            kinds = self.final_weights(logits).attention
                    paths = tuple(path_weights(space, arch) for arch in sandwich_archs(
                        space, self.candidate_mask(space), shared_inner=self.shares_inner(space),
                        attention_weights=kinds))
                else:
                    paths = (fixed,)
                w_opt.zero_grad(set_to_none=True)
                step_loss = 0.0
                for path in paths:  # one backward per path: the peak memory of one path
                    loss = mixture_loss(model, space, x, y, path, gates=self.n_gates()) / len(paths)
                    self._check_finite(loss, epoch, step, "weight")
                    loss.backward()
                    step_loss += loss.item()
                ctx.step(w_opt, "weights")
                w_losses.append(step_loss)

                if epoch >= self.params["warmup_epochs"] and step % self.params["arch_every"] == 0:
                    xa, ya = next(arch_batches)
                    a_loss, weights = self.arch_loss(ctx, logits, epoch, xa, ya)
                    extra = self.resource_loss(ctx, weights)
                    total = a_loss if extra is None else a_loss + extra
                    self._check_finite(total, epoch, step, "architecture")
                    a_opt.zero_grad(set_to_none=True)
                    model.zero_grad(set_to_none=True)
                    total.backward()
                    ctx.step(a_opt, "arch")
                    model.zero_grad(set_to_none=True)  # the supernet never steps on arch-validation rows
                    a_losses.append(a_loss.item())

            with torch.no_grad():
                final = self.final_weights(logits)
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "weight_loss": _mean(w_losses),
                "arch_loss": _mean(a_losses),
                "weights": weights_snapshot(space, final),
                "expected_flops": float(expected_flops(space, final, ctx.n_items, ctx.max_len, self.n_gates())),
                "argmax": argmax_arch(space, final, self.n_gates()).to_dict(),
            }
            row.update(self.end_epoch(ctx, logits, epoch))
            trace.append(row)
            ctx.save_state(
                epoch + 1,
                {
                    "logits": logits.state_dict(),
                    "w_opt": w_opt.state_dict(),
                    "a_opt": a_opt.state_dict(),
                    "trace": trace,
                    "own": self.strategy_state(),
                },
            )
            if ctx.on_epoch is not None:
                ctx.on_epoch(epoch + 1, row)
            if self.should_stop(trace):
                break

        final = self.final_weights(logits)
        with torch.no_grad():
            frozen = ChoiceWeights(
                *(t.detach().clone() for t in (final.hidden, final.inner, final.depth, final.attention))
            )
        return SearchResult(
            arch=self.derive(ctx, frozen), preference=lambda arch: arch_preference(space, frozen, arch), trace=trace
        )

    def derive(self, ctx: SearchContext, weights: ChoiceWeights) -> Arch:
        return argmax_arch(ctx.space, weights, self.n_gates())

    @staticmethod
    def _check_finite(loss: torch.Tensor, epoch: int, step: int, what: str) -> None:
        from nasrec.train import TrainingDiverged

        if not torch.isfinite(loss):
            raise TrainingDiverged(f"{what} loss is {loss.item()} at search epoch {epoch + 1}, step {step + 1}")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def relative_flops_penalty(expected: torch.Tensor, budget: float) -> torch.Tensor:
    """(E[F] - B) / B, the additive ProxylessNAS-style resource term (negative below budget)."""
    return (expected - budget) / budget


def log_flops_ratio(expected: torch.Tensor, budget: float) -> torch.Tensor:
    """log(E[F] / B). Proxyless's multiplicative form is used as CE + beta * log(E[F] / B): the same
    pull towards the budget on a log scale, added to (not multiplied with) the task loss."""
    return torch.log(expected / budget) if math.isfinite(budget) else expected * 0
