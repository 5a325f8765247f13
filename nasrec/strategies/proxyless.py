"""ProxylessNAS: one sampled path per step with binary gates; the gradient reaches alpha through them.

Weight step (search-train windows, every step): ONE arch is sampled - a one-hot per choice drawn from
softmax(alpha) - and handed to the mixture without grad. A hidden width or attention kind whose weight
is exactly 0 and does not require grad is skipped by the mixture, blocks past the sampled depth are
not computed, and the FFN runs at the sampled inner width, so the step computes and trains only the
sampled slice.
During the warm-up alpha is 0, so paths are sampled uniformly.

Arch step (arch-validation rows, after the warm-up; the bilevel loop of `_differentiable`): the
ProxylessNAS *two-path* estimator. Per choice with K >= 2 options:

1. draw two distinct candidates {i, j} from softmax(alpha) (without replacement);
2. renormalise their probabilities, p' = softmax(alpha_i, alpha_j);
3. draw a binary gate among them from p': one is on (1), the other off (0);
4. the gate enters the mixture as g = onehot + (p' - p'.detach()): forward it is exactly the binary gate
   (the bracket is exactly 0; onehot + p' - p'.detach() can give 0.99999994), backward
   dL/dalpha_k = sum_m dL/dg_m * p'_m * (delta_km - p'_k) for k, m in {i, j} - the BinaryConnect-style
   gradient of ProxylessNAS. Candidates outside the pair get a constant 0 that does not require grad.

What it costs, per arch step: the two paired hidden widths run (not all K: the pair's off candidate must
run to give dL/dg), one or two attention kinds, every block up to the deepest depth (the depth weights
carry gradient, so every depth's state is needed), and the FFN at the widest inner width with a mask.
The straight-through alternative g = onehot + p - p.detach() over all K candidates would need every
candidate to run (a weight that requires grad is never skipped): the full DARTS cost. On the `tiny`
space (two options per choice) both cost the same; on `sasrec-ml1m` (three hidden widths) two-path runs
2 of the 3 hidden passes.

Per-candidate weights: the mixture decides to skip per candidate, but `requires_grad` is a property of a
whole tensor (an element of a vector that requires grad always requires grad), so the arch-step hidden
and attention weights are tuples of 0-d tensors (`per_candidate`): the pair's gates carry grad, the
others are plain zeros and are skipped. The mixture only indexes and iterates these fields.

Not copied from the ProxylessNAS code: the rescaling of the pair's logits after each step (which keeps
the total probability of the pair fixed). With the resource term's dense gradient on every logit (and
Adam) that rescaling would undo the resource term's shift of mass into or out of the pair; with two
options per choice it is a no-op.

Resource term (arch step), on the exact expected FLOPs E[F] of the categorical softmax(alpha)
(differentiable in alpha; `expected_flops`), budget B:

- `additive`:       CE + lam * (E[F] - B) / B                (ProxylessNAS `add#linear`);
- `hinge`:          CE + lam * max(0, E[F] - B) / B: only expected FLOPs over the budget cost (an option, not
  in ProxylessNAS; as EASRec's `penalty=hinge`). The additive term keeps pulling below the budget, and on ML-1M
  at a third of the max FLOPs ProxylessNAS ended on one narrow block at 0.37x the budget.
- `multiplicative`: CE + beta * log(E[F] / B), the log of the multiplicative factor (E[F]/B)^beta
  (`log_flops_ratio`); beta is this form's weight, `lam` is not used. The hook adds to CE and does not
  see it, so the exact product CE * (E[F]/B)^beta (whose resource gradient is scaled by CE) is not formed.
  (The ProxylessNAS code's `mul#log` is CE * (log E / log B)^beta, a milder factor again.)

Derive: the argmax of every choice.

Measured (docs/benchmarks.md, ML-1M at a third of the max FLOPs, 10 search epochs): the two-path weights move slowly
(the leading option of a choice at 0.35-0.5 after 10 epochs), so with a resource term on, the term decides the argmax;
`lam=0` with `weight_step=sandwich` leaves the budget to the pipeline's guarantee and did better there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from nasrec.strategies._differentiable import (
    COMMON_PARAMS,
    ArchLogits,
    DifferentiableStrategy,
    log_flops_ratio,
    relative_flops_penalty,
)
from nasrec.strategies.base import HyperParam, SearchContext, SearchResult, register_strategy
from nasrec.strategies.mixture import ChoiceWeights, expected_flops, one_hot


def per_candidate(weights: torch.Tensor, active: Sequence[bool]) -> tuple[torch.Tensor, ...]:
    """One 0-d tensor per candidate; inactive candidates become constant zeros without grad, so the
    mixture skips them even when the active ones carry grad."""
    zero = torch.zeros((), dtype=weights.dtype, device=weights.device)
    return tuple(weights[k] if on else zero for k, on in enumerate(active))


def sample_one_hot(probs: torch.Tensor) -> torch.Tensor:
    """A one-hot drawn from `probs` (global torch RNG, so a seed and a checkpoint fix it)."""
    return one_hot(probs.numel(), int(torch.multinomial(probs.detach(), 1)))


def draw_pair(probs: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Two distinct candidates drawn from `probs` without replacement (sorted), and which of the two
    is on, drawn from their renormalised probabilities. Global torch RNG."""
    p = probs.detach().clamp_min(1e-12)
    pair = torch.multinomial(p, 2, replacement=False).sort().values
    on = int(torch.multinomial(p[pair] / p[pair].sum(), 1))
    return pair, on


def pair_gate(logits: torch.Tensor, pair: torch.Tensor, on: int) -> torch.Tensor:
    """Gates [K]: on the pair onehot + (p' - p'.detach()) with p' = softmax(logits[pair]) - exactly 0/1
    forward (the bracket is exactly 0), the ProxylessNAS gradient backward; exactly 0 off the pair."""
    p_pair = torch.softmax(logits[pair], -1)
    return torch.zeros(logits.numel()).scatter(0, pair, one_hot(2, on) + (p_pair - p_pair.detach()))


def two_path_gate(logits: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """ProxylessNAS's two-path binary gate over one choice: (gates [K], indices of the pair).
    A choice with one option gets the constant gate [1]."""
    if logits.numel() == 1:
        return torch.ones(1), [0]
    pair, on = draw_pair(torch.softmax(logits.detach(), -1))
    return pair_gate(logits, pair, on), pair.tolist()


@register_strategy
class Proxyless(DifferentiableStrategy):
    name = "proxyless"
    summary = (
        "one sampled path per step with binary gates (two-path gradient to alpha); arch steps on "
        "arch-valid after warm-up; expected-FLOPs resource term; argmax"
    )
    hyperparams: ClassVar[tuple[HyperParam, ...]] = COMMON_PARAMS + (  # warmup_epochs: 1
        HyperParam(
            "lam",
            "float",
            0.1,
            0.0,
            10.0,
            help="weight of the additive resource term lam * (E[FLOPs] - B) / B",
            tune=(0.0, 1.0),
        ),
        HyperParam(
            "resource_form",
            "categorical",
            "additive",
            choices=("additive", "hinge", "multiplicative"),
            help="additive: CE + lam*(E[F]-B)/B; hinge: CE + lam*max(0, E[F]-B)/B (only over-budget FLOPs cost); "
            "multiplicative: CE * (E[F]/B)^beta in log form, CE + beta*log(E[F]/B) (lam unused)",
        ),
        HyperParam(
            "beta", "float", 0.6, 0.0, 5.0, help="exponent of the multiplicative resource form", tune=(0.1, 2.0)
        ),
    )

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self._probs: ChoiceWeights | None = None  # softmax(alpha) of the current arch step, with grad
        self._inner_per_block = True

    # -- sampling ----------------------------------------------------------------------------------
    def relax(self, logits: ArchLogits, epoch: int, *, arch_step: bool) -> ChoiceWeights:
        probs = logits.softmax()
        shared_inner = not self._inner_per_block
        if not arch_step:  # one path: a one-hot per choice, no grad (the loop detaches it)
            if shared_inner:
                row = sample_one_hot(probs.inner.mean(0))
                inner = row.expand_as(probs.inner).clone()
            else:
                inner = torch.stack([sample_one_hot(r) for r in probs.inner])
            return ChoiceWeights(
                sample_one_hot(probs.hidden), inner, sample_one_hot(probs.depth), sample_one_hot(probs.attention)
            )

        self._probs = probs
        hidden, hidden_pair = two_path_gate(logits.hidden)
        depth, _ = two_path_gate(logits.depth)
        attention, attention_pair = two_path_gate(logits.attention)
        if not shared_inner:
            inner = torch.stack([two_path_gate(row)[0] for row in logits.inner])
        elif logits.inner.shape[1] == 1:
            inner = torch.ones_like(probs.inner)
        else:  # one pair and one gate for all blocks; each row's own p' carries its gradient
            pair, on = draw_pair(probs.inner.mean(0))
            inner = torch.stack([pair_gate(row, pair, on) for row in logits.inner])
        n_h, n_a = logits.hidden.numel(), logits.attention.numel()
        return ChoiceWeights(
            per_candidate(hidden, [k in hidden_pair for k in range(n_h)]),  # type: ignore[arg-type]
            inner,
            depth,
            per_candidate(attention, [k in attention_pair for k in range(n_a)]),  # type: ignore[arg-type]
        )

    # -- resource term -----------------------------------------------------------------------------
    def resource_loss(self, ctx: SearchContext, weights: ChoiceWeights) -> torch.Tensor | None:
        if self._probs is None or not math.isfinite(ctx.budget_flops):
            return None
        e_flops = expected_flops(ctx.space, self._probs, ctx.n_items, ctx.max_len)
        form = self.params["resource_form"]
        if form in ("additive", "hinge"):
            if self.params["lam"] == 0.0:
                return None
            excess = relative_flops_penalty(e_flops, ctx.budget_flops)
            term = self.params["lam"] * (excess.clamp(min=0.0) if form == "hinge" else excess)
        else:
            if self.params["beta"] == 0.0:
                return None
            term = self.params["beta"] * log_flops_ratio(e_flops, ctx.budget_flops)
        return term.float()

    # -- the loop ------------------------------------------------------------------------------------
    def search(self, ctx: SearchContext) -> SearchResult:
        self._inner_per_block = ctx.space.inner_per_block
        self._probs = None
        return super().search(ctx)
