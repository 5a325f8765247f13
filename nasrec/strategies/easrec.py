"""EASRec (DNS-Rec): Gumbel-softmax width and depth controllers, data-aware gates, LinRec attention,
a dynamic FLOPs constraint, bilevel optimisation, early stopping of the search.

Candidates. The pruned transformers are the space's hidden and inner widths (the papers' pruning
intensities), run as leading slices of one supernet (`mixture`): no zero-masked full-size copy.

Controllers (architecture logits, `ArchLogits`):

- width controller: one categorical over the hidden widths and one over the inner (FFN) widths. As in
  the paper it is SHARED by the stacked blocks: unless `per_block_width` is true (and the space has a
  per-block inner choice), only the first inner logits row is used and its weights are expanded to
  every block, so the derived inner widths are uniform;
- depth controller: "after each block, continue or skip to the prediction layer" - equivalently a
  categorical over the space's depths (the logits' `depth` row);
- attention is not searched: the weights are a constant one-hot on the kind named by `attention`
  (default `linear`, LinRec), so the other kind never runs.

Relaxation. Every arch step and every weight step draws a Gumbel-softmax sample of each controller,

    w = softmax((alpha + g) / tau),    g = -log(-log(u)),  u ~ U(0, 1) clamped away from 0 and 1,

from the global torch RNG (seeded by the loop, checkpointed by `--resume`), so a seed gives the same
samples and the same derived arch. The temperature of search epoch e (0-based) is

    tau_e = max(tau_final, tau_initial * tau_decay ** e).

Weight steps (search-train windows) use the sample without grad; arch steps (arch-validation rows,
after `warmup_epochs`) backpropagate through it into the logits - the first-order bilevel loop of
`_differentiable`; the public EASRec code stepped both on the same training batch, we do not.

Data-aware gates (`gates` none|one|two -> 0/1/2 gated FFN layers): a 2-layer MLP on the input
embedding sequence, output 2*sigmoid in (0, 2), multiplying the first (and second) FFN dense layer's
output. The supernet carries them, the derived arch keeps them (`Arch.gates`), the retrained model
inherits them, and their FLOPs count everywhere (`cost.gate_flops`, `mixture.expected_flops`).

Resource term (arch step only). E[F] is the exact expected FLOPs of the relaxed (Gumbel) weights for
the actual space, item count and max_len, gates included (`mixture.expected_flops` - never a table);
B = the budget (`--budget-flops`). With d* the depth of the depth controller's CURRENT HARD selection
(argmax of its logits, no noise) and D the space's largest depth:

    constraint=dynamic:  lam * (d* / D) * P
    constraint=static:   lam * P
    constraint=none:     no term

    penalty=linear (the paper):  P = E[F] / B
    penalty=hinge (an option):   P = max(0, E[F] / B - 1)

The paper's linear term keeps pulling FLOPs down below the budget, so the search trades accuracy for
savings nobody asked for; the hinge charges only expected FLOPs above the budget.

The dynamic factor d*/D is constant in the step (no gradient flows through the argmax): while the
controller prefers a shallow model, width is penalised less (a shallow model can afford wider blocks),
and the penalty tightens as the preferred depth grows. The budget itself is met by the pipeline's
budget guarantee after derivation.

Early stopping. After each epoch, the search stops when the hard-derived arch (`argmax` of the trace
row) of the last `search_patience` + 1 epochs after the warm-up (epochs with arch steps) is the same,
i.e. it has not changed for `search_patience` consecutive epochs (0: never stop early), and the last
epoch's derivation is decisive: in every controller that decides it (depth, hidden width, the inner widths
of the derived blocks) the leading weight of softmax(alpha / tau) beats the runner-up by at least
`stop_margin` (the trace row's `margin`). Without the margin a search stopped on a near-tie
(depth 1 at 0.36 against depth 2 at 0.35, still rising), where the argmax is decided by noise.

Derivation. The hard selection: argmax hidden width, argmax inner width (uniform when shared), argmax
depth, the fixed attention kind, the gates. Then the pipeline's budget guarantee; its preference is
`arch_preference` of the final weights (softmax(alpha / tau) of the last epoch), minus 1000 for each of
"other attention kind" and "non-uniform inner widths while the width controller is shared", so the
projection keeps to the fixed kind and to uniform widths whenever such an arch fits. Then retraining
with weights inherited from the supernet (pipeline default).

Numerical safety. The public code divides by zero in the linear attention's normaliser at the lowest
temperature and the largest pruning; ours clamps both normalisers (`LINEAR_ATTN_EPS`) and the Gumbel
uniforms, so the losses and gradients stay finite (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from nasrec.arch import Arch, SearchSpace
from nasrec.errors import ConfigError
from nasrec.strategies._differentiable import COMMON_PARAMS, ArchLogits, DifferentiableStrategy
from nasrec.strategies.base import HyperParam, SearchContext, SearchResult, register_strategy
from nasrec.strategies.mixture import (
    CandidateMask,
    ChoiceWeights,
    argmax_arch,
    check_mixable,
    expected_flops,
    one_hot,
)

GATES = {"none": 0, "one": 1, "two": 2}
VIOLATION_PENALTY = 1000.0  # preference penalty per violated EASRec constraint (attention kind, shared width)
_U_EPS = 1e-10


def gumbel_softmax(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """A Gumbel-softmax sample over the last dim, drawn from the global torch RNG; never NaN."""
    u = torch.rand(logits.shape, dtype=logits.dtype, device=logits.device).clamp(_U_EPS, 1.0 - _U_EPS)
    g = -torch.log(-torch.log(u))
    return torch.softmax((logits + g) / tau, dim=-1)


def decision_margin(weights: ChoiceWeights, depth: int) -> float:
    """The smallest lead of a controller's top weight over its runner-up, over the controllers that decide
    an arch of `depth` blocks: depth, hidden width and the inner widths of its blocks (1.0 when no choice
    has two options)."""
    rows = [weights.depth, weights.hidden, *weights.inner[:depth]]
    leads = [float(top[0] - top[1]) for top in (row.topk(2).values for row in rows if row.numel() > 1)]
    return min(leads, default=1.0)


@register_strategy
class EASRec(DifferentiableStrategy):
    name = "easrec"
    summary = (
        "Gumbel-softmax width (shared) and depth controllers, data-aware FFN gates, LinRec attention, "
        "dynamic FLOPs constraint scaled by the hard depth; bilevel; early stop; argmax, inherited retrain"
    )
    hyperparams: ClassVar[tuple[HyperParam, ...]] = COMMON_PARAMS + (
        HyperParam(
            "tau_initial",
            "float",
            1.0,
            0.01,
            100.0,
            log=True,
            help="Gumbel-softmax temperature of search epoch 0",
            tune=(0.5, 5.0),
        ),
        HyperParam(
            "tau_final",
            "float",
            0.1,
            0.001,
            10.0,
            log=True,
            help="lowest temperature: tau_e = max(tau_final, tau_initial * tau_decay ** e)",
            tune=(0.01, 0.5),
        ),
        HyperParam("tau_decay", "float", 0.8, 0.01, 1.0, help="per-epoch factor of the temperature", tune=(0.5, 0.95)),
        HyperParam(
            "lam", "float", 0.1, 0.0, 10.0, help="weight of the FLOPs constraint lam * s * E[F] / B", tune=(0.0, 1.0)
        ),
        HyperParam(
            "constraint",
            "categorical",
            "dynamic",
            choices=("dynamic", "static", "none"),
            help="dynamic: scaled by argmax depth / max depth (s = d*/D); static: s = 1; none: no term",
        ),
        HyperParam(
            "penalty",
            "categorical",
            "linear",
            choices=("linear", "hinge"),
            help="linear: E[F] / B (the paper); hinge: max(0, E[F] / B - 1), only over-budget FLOPs cost",
        ),
        HyperParam(
            "gates",
            "categorical",
            "two",
            choices=tuple(GATES),
            help="data-aware gates on the FFN: none, the first dense layer, or both (kept in the arch)",
        ),
        HyperParam(
            "attention",
            "categorical",
            "linear",
            choices=("linear", "softmax"),
            help="the attention kind (fixed, not searched): linear = LinRec",
        ),
        HyperParam(
            "per_block_width",
            "bool",
            False,
            help="one width controller per block (default: one shared by all blocks, uniform widths)",
        ),
        HyperParam(
            "search_patience",
            "int",
            3,
            0,
            1000,
            help="stop the search when the argmax arch has not changed for this many epochs "
            "after the warm-up (0: never)",
            tunable=False,
        ),
        HyperParam(
            "stop_margin",
            "float",
            0.05,
            0.0,
            1.0,
            help="early stopping also needs each controller's leading weight to beat its runner-up by this "
            "much (no stop on a near-tie; 0: the argmax alone)",
            tunable=False,
        ),
    )

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        super().__init__(params)
        if self.params["tau_final"] > self.params["tau_initial"]:
            raise ConfigError(
                f"easrec: tau_final={self.params['tau_final']} exceeds tau_initial={self.params['tau_initial']}"
            )
        self._tau = self.temperature(0)
        self._tied = not self.params["per_block_width"]
        self._hard_depth_index = 0  # argmax of the depth logits at the last arch step
        self._space: SearchSpace | None = None

    # -- schedule --------------------------------------------------------------------------------------
    def temperature(self, epoch: int) -> float:
        """tau of search epoch `epoch` (0-based): max(tau_final, tau_initial * tau_decay ** epoch)."""
        p = self.params
        return max(float(p["tau_final"]), float(p["tau_initial"]) * float(p["tau_decay"]) ** epoch)

    # -- hooks of the bilevel loop -----------------------------------------------------------------------
    def n_gates(self) -> int:
        return GATES[self.params["gates"]]

    def check_space(self, space: SearchSpace) -> None:
        check_mixable(space)
        if self.params["attention"] not in space.attentions:
            raise ConfigError(
                f"easrec: attention={self.params['attention']!r} is not a choice of space "
                f"{space.name!r} (it has {list(space.attentions)}); pick one with --set attention=..."
            )

    def tied(self, space: SearchSpace) -> bool:
        """Whether one width controller is shared by every block."""
        return not (self.params["per_block_width"] and space.inner_per_block)

    def shares_inner(self, space: SearchSpace) -> bool:
        return self.tied(space)

    def candidate_mask(self, space: SearchSpace) -> CandidateMask:
        mask = CandidateMask.everything(space)
        mask.attention = torch.tensor([kind == self.params["attention"] for kind in space.attentions])
        return mask

    def _attention_weights(self, logits: ArchLogits) -> torch.Tensor:
        assert self._space is not None
        return one_hot(logits.attention.numel(), self._space.attentions.index(self.params["attention"]))

    def _inner(self, rows: torch.Tensor, sample: bool, tau: float) -> torch.Tensor:
        if self._tied:
            row = gumbel_softmax(rows[0], tau) if sample else torch.softmax(rows[0] / tau, -1)
            return row.expand_as(rows)
        return gumbel_softmax(rows, tau) if sample else torch.softmax(rows / tau, -1)

    def relax(self, logits: ArchLogits, epoch: int, *, arch_step: bool) -> ChoiceWeights:
        self._tau = tau = self.temperature(epoch)
        if arch_step:
            self._hard_depth_index = int(logits.depth.detach().argmax())
        return ChoiceWeights(
            gumbel_softmax(logits.hidden, tau),
            self._inner(logits.inner, True, tau),
            gumbel_softmax(logits.depth, tau),
            self._attention_weights(logits),
        )

    def final_weights(self, logits: ArchLogits) -> ChoiceWeights:
        """Noise-free softmax(alpha / tau) at the last epoch's temperature (attention: the fixed one-hot)."""
        tau = self._tau
        return ChoiceWeights(
            torch.softmax(logits.hidden / tau, -1),
            self._inner(logits.inner, False, tau),
            torch.softmax(logits.depth / tau, -1),
            self._attention_weights(logits),
        )

    def resource_loss(self, ctx: SearchContext, weights: ChoiceWeights) -> torch.Tensor | None:
        return self.resource_term(ctx, weights, ctx.space.depths[self._hard_depth_index])

    def resource_term(self, ctx: SearchContext, weights: ChoiceWeights, hard_depth: int) -> torch.Tensor | None:
        """lam * s * P with s = hard_depth / max depth (dynamic) or 1 (static) and P = E[F] / B (linear) or
        max(0, E[F] / B - 1) (hinge); None for `none`."""
        lam, kind = float(self.params["lam"]), self.params["constraint"]
        if kind == "none" or lam == 0.0 or not math.isfinite(ctx.budget_flops):
            return None
        scale = hard_depth / ctx.space.depths[-1] if kind == "dynamic" else 1.0
        ratio = expected_flops(ctx.space, weights, ctx.n_items, ctx.max_len, self.n_gates()) / ctx.budget_flops
        if self.params["penalty"] == "hinge":
            ratio = torch.clamp(ratio - 1.0, min=0.0)
        return (lam * scale * ratio).float()

    def end_epoch(self, ctx: SearchContext, logits: ArchLogits, epoch: int) -> dict[str, Any]:
        with torch.no_grad():
            weights = self.final_weights(logits)
            arch = argmax_arch(ctx.space, weights, self.n_gates())
        return {
            "tau": self._tau,
            "hard_depth": ctx.space.depths[int(logits.depth.detach().argmax())],
            "argmax_flops": ctx.flops(arch),
            "margin": decision_margin(weights, arch.depth),
        }

    def should_stop(self, trace: list[dict[str, Any]]) -> bool:
        patience = int(self.params["search_patience"])
        if patience == 0:
            return False
        searched = [row["argmax"] for row in trace if row["epoch"] > self.params["warmup_epochs"]]
        if len(searched) < patience + 1:
            return False
        last = searched[-(patience + 1) :]
        return all(a == last[0] for a in last) and trace[-1]["margin"] >= float(self.params["stop_margin"])

    def strategy_state(self) -> dict[str, Any]:
        return {"tau": self._tau}

    def load_strategy_state(self, state: dict[str, Any]) -> None:
        self._tau = float(state["tau"])

    # -- the search ------------------------------------------------------------------------------------
    def prepare(self, space: SearchSpace) -> None:
        """Set up for `space` (what `search` does first; the hooks need it)."""
        self.check_space(space)
        self._space = space
        self._tied = self.tied(space)
        self._tau = self.temperature(0)
        self._hard_depth_index = 0

    def search(self, ctx: SearchContext) -> SearchResult:
        self.prepare(ctx.space)
        if ctx.supernet.dims.gates != self.n_gates():
            raise ConfigError(
                f"easrec: the supernet holds {ctx.supernet.dims.gates} gate(s) but gates="
                f"{self.params['gates']!r} needs {self.n_gates()}; build it from "
                "strategy.supernet_dims(ModelDims.for_space(...)) as run_search does"
            )
        self._check_gated_budget(ctx)
        result = super().search(ctx)
        if result.preference is not None:
            result.preference = self._constrained(result.preference)
        return result

    def _constrained(self, base: Callable[[Arch], float]) -> Callable[[Arch], float]:
        kind, tied = self.params["attention"], self._tied

        def preference(arch: Arch) -> float:
            violations = (arch.attention != kind) + (tied and len(set(arch.inner)) > 1)
            return float(base(arch)) - VIOLATION_PENALTY * violations

        return preference

    def _check_gated_budget(self, ctx: SearchContext) -> None:
        """Fail before training when no gated arch fits: the pipeline checks the budget against gate-less
        archs, and with gates the smallest arch costs more (its projection would find nothing)."""
        gates = self.n_gates()
        if not gates or not math.isfinite(ctx.budget_flops):
            return
        space = ctx.space
        cheapest = min(
            (
                Arch(space.depths[0], h, (min(space.inner_widths(h)),) * space.depths[0], e, heads, kind, gates)
                for h in space.hiddens
                for e in space.embedding_widths(h)
                for heads in space.heads
                for kind in space.attentions
            ),
            key=lambda a: (ctx.flops(a), a.to_json()),
        )
        if ctx.flops(cheapest) > ctx.budget_flops:
            raise ConfigError(
                f"easrec: --budget-flops {ctx.budget_flops:.4g} is below the smallest arch with "
                f"{self.params['gates']} data-aware gate(s): {ctx.flops(cheapest):,} FLOPs "
                f"({cheapest.label}); raise the budget or --set gates=none"
            )

    def derive(self, ctx: SearchContext, weights: ChoiceWeights) -> Arch:
        return argmax_arch(ctx.space, weights, self.n_gates())
