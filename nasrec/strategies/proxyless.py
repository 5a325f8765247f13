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

`estimator=pair_loss` (an option; the default `gate` is the method above): the same pairs and on members, but
each pair member runs as its own single path (no grad, eval mode, the same arch-validation batch; every other
choice held at the on members), and its loss L_m takes the place of dL/dg_m: the exact gradient of the pair's
expected loss sum_m p'_m L_m, which dL/dg_m approximates to first order (`pair_loss_surrogate`). Why: on ML-1M
(docs/benchmarks.md, session 18) the gate gradient pushed the attention weight to linear attention while the
supernet's single paths had lower arch-validation loss with softmax attention (4 of 5 paths); `pair_loss` turned
it back to softmax. Cost: 1 + (choices with >= 2 options) no-grad single-path forwards per arch step.

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
`lam=0` with `weight_step=sandwich` leaves the budget to the pipeline's guarantee and did better there. On
`sasrec-ml1m` (both attention kinds) `lam=0,weight_step=sandwich,estimator=pair_loss` with 20 search epochs (the
softmax slices then get as many sandwich steps as 10 epochs give them on a softmax-only space) matched the max arch:
1.002x over six seeds (session 19); with 10 epochs 0.957x.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch

from nasrec.arch import Arch, SearchSpace
from nasrec.strategies._differentiable import (
    COMMON_PARAMS,
    ArchLogits,
    DifferentiableStrategy,
    log_flops_ratio,
    relative_flops_penalty,
)
from nasrec.strategies.base import HyperParam, SearchContext, SearchResult, register_strategy
from nasrec.strategies.mixture import ChoiceWeights, expected_flops, mixture_last_loss, one_hot, path_weights


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


@dataclass(frozen=True)
class PathIndex:
    """One single path as option indices into the space's choices (inner: one per block of the deepest depth)."""

    hidden: int
    depth: int
    attention: int
    inner: tuple[int, ...]

    def arch(self, space: SearchSpace, gates: int = 0) -> Arch:
        h, d = space.hiddens[self.hidden], space.depths[self.depth]
        widths = space.inner_widths(h)
        return Arch(d, h, tuple(widths[self.inner[b]] for b in range(d)), space.embedding_widths(h)[0],
                    space.heads[0], space.attentions[self.attention], gates)


def pair_loss_surrogate(ctx: SearchContext, logits: ArchLogits, inputs: torch.Tensor, targets: torch.Tensor, *,
                        shared_inner: bool, gates: int = 0) -> torch.Tensor:
    """The `pair_loss` arch step: a surrogate whose value is the base path's loss and whose gradient is, per
    choice c with pair {i, j} and p' = softmax(alpha_c[{i, j}]), sum_m L_m p'_m (delta_km - p'_k) - the
    two-path gradient with each pair member's own loss L_m in place of dL/dg_m.

    The pairs and their on members are drawn as in the gate estimator; the base path takes every choice's on
    member, and for each choice its off member is run with every other choice held at the base. Every path
    runs alone (its slice only) without grad and in eval mode, on the same batch, so batch difficulty and
    dropout cancel in L_i - L_j. Cost: 1 + (number of choices with >= 2 options) no-grad single-path
    forwards, inner rows counted for the base depth's blocks (8 at most on `sasrec-ml1m`)."""
    space, model = ctx.space, ctx.supernet
    n_rows = space.depths[-1]

    with torch.no_grad():
        probs = logits.softmax()

    def pick(p: torch.Tensor) -> tuple[list[int], int]:
        if p.numel() == 1:
            return [0, 0], 0
        pair, on = draw_pair(p)
        return pair.tolist(), on

    hidden, depth, attention = pick(probs.hidden), pick(probs.depth), pick(probs.attention)
    inner = [pick(probs.inner.mean(0))] * n_rows if shared_inner else [pick(row) for row in probs.inner]
    base = PathIndex(hidden[0][hidden[1]], depth[0][depth[1]], attention[0][attention[1]],
                     tuple(p[on] for p, on in inner))

    # (alpha row, its pair, which member is on, the path with this choice flipped to the off member)
    flips: list[tuple[torch.Tensor, list[int], int, PathIndex]] = []
    if logits.hidden.numel() > 1:
        flips.append((logits.hidden, *hidden, replace(base, hidden=hidden[0][1 - hidden[1]])))
    if logits.depth.numel() > 1:
        flips.append((logits.depth, *depth, replace(base, depth=depth[0][1 - depth[1]])))
    if logits.attention.numel() > 1:
        flips.append((logits.attention, *attention, replace(base, attention=attention[0][1 - attention[1]])))
    if logits.inner.shape[1] > 1:
        if shared_inner:  # one flip for every block; every row's own p' carries the gradient (as `gate`)
            pair, on = inner[0]
            off = replace(base, inner=(pair[1 - on],) * n_rows)
            flips += [(row, pair, on, off) for row in logits.inner]
        else:  # the blocks the base path runs; deeper rows do not change its loss
            for b in range(space.depths[base.depth]):
                pair, on = inner[b]
                flipped = list(base.inner)
                flipped[b] = pair[1 - on]
                flips.append((logits.inner[b], pair, on, replace(base, inner=tuple(flipped))))

    losses: dict[PathIndex, float] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for path in [base] + [off for *_, off in flips]:
                if path not in losses:
                    weights = path_weights(space, path.arch(space, gates))
                    losses[path] = float(mixture_last_loss(model, space, inputs, targets, weights, gates=gates))
    finally:
        model.train(was_training)

    if not flips:  # nothing to choose: a constant the arch step can still backpropagate (to no alpha)
        return torch.tensor(losses[base]) + 0.0 * logits.hidden.sum()
    surrogate = torch.tensor(losses[base])
    for row, pair, on, off in flips:
        member_loss = torch.tensor([losses[base], losses[off]] if on == 0 else [losses[off], losses[base]])
        expected = (torch.softmax(row[pair], -1) * member_loss).sum()
        surrogate = surrogate + (expected - expected.detach())  # adds 0 to the value, the pair's gradient
    return surrogate


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
        HyperParam(
            "estimator",
            "categorical",
            "gate",
            choices=("gate", "pair_loss"),
            help="arch gradient: gate = dL/dg through the two-path binary gates (ProxylessNAS, BinaryConnect); "
            "pair_loss = each choice's pair runs as two single paths on the same arch-valid batch and the "
            "paths' losses take the place of dL/dg (the exact two-path expectation)",
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

    # -- pair_loss estimator -----------------------------------------------------------------------
    def arch_loss(self, ctx: SearchContext, logits: ArchLogits, epoch: int, inputs: torch.Tensor,
                  targets: torch.Tensor) -> tuple[torch.Tensor, ChoiceWeights]:
        if self.params["estimator"] == "gate":
            return super().arch_loss(ctx, logits, epoch, inputs, targets)
        self._probs = logits.softmax()
        return pair_loss_surrogate(ctx, logits, inputs, targets, shared_inner=not self._inner_per_block,
                                   gates=self.n_gates()), self._probs

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
