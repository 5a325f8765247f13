"""Weighted mixtures of the space's choices over one supernet, for differentiable strategies.

A strategy holds one weight vector per choice (`ChoiceWeights`: softmax, annealed, Gumbel or
one-hot samples) and calls `mixture_loss` / `mixture_scores_last`. What a mixture costs:

- hidden width: one pass of the blocks per hidden candidate with non-zero weight (a sliced pass, so a
  narrow candidate costs less); the passes' final states are zero-padded to the widest embedding
  and mixed *before* the single item-scoring matmul, which is exact because scoring is linear;
- inner (FFN) width: one FFN at the widest candidate with a cumulative soft mask on its units,
  `fc2(act * m)` with `m_j = sum of weights of candidates wider than j` - exactly the mixture of the
  sliced FFNs, at the cost of the widest;
- depth: the state after every block is kept; the normalised states are mixed by the depth weights
  (exact: scoring is affine in the normalised state);
- attention kind: both kinds run when both have weight, and their outputs are mixed.

No full-size masked copy of a weight is ever materialised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nasrec.arch import GATE_HIDDEN, Arch, SearchSpace
from nasrec.models.sasrec import (
    ElasticSASRec,
    attention_mask,
    linear_attention,
    sliced_layer_norm,
    sliced_linear,
    softmax_attention,
    zero_padding,
)
from nasrec.models.scoring import full_softmax_cross_entropy


@dataclass
class ChoiceWeights:
    """Non-negative weights (each row sums to 1) over the space's options, in the space's order."""

    hidden: torch.Tensor  # [n_hidden]        over space.hiddens
    inner: torch.Tensor  # [max_depth, n_inner] over space.inner_widths(h) (same count for every h)
    depth: torch.Tensor  # [n_depth]         over space.depths
    attention: torch.Tensor  # [n_attention] over space.attentions

    def to(self, device: torch.device) -> ChoiceWeights:
        """The same weights on `device` (differentiable: gradients flow back to the CPU-held logits)."""
        def move(t: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor | tuple[torch.Tensor, ...]:
            # a tuple of 0-d tensors (proxyless) keeps its constant zeros constant
            return tuple(x.to(device) for x in t) if isinstance(t, tuple) else t.to(device)

        return ChoiceWeights(*(move(t) for t in (self.hidden, self.inner, self.depth, self.attention)))  # type: ignore[arg-type]


@dataclass
class CandidateMask:
    """Which options a strategy still considers (False: pruned or fixed away), in ChoiceWeights' layout."""

    hidden: torch.Tensor  # bool [n_hidden]
    inner: torch.Tensor  # bool [max_depth, n_inner]
    depth: torch.Tensor  # bool [n_depth]
    attention: torch.Tensor  # bool [n_attention]

    @staticmethod
    def everything(space: SearchSpace) -> CandidateMask:
        def ones(*shape: int) -> torch.Tensor:
            return torch.ones(*shape, dtype=torch.bool)

        return CandidateMask(ones(len(space.hiddens)), ones(space.depths[-1], n_inner_options(space)),
                             ones(len(space.depths)), ones(len(space.attentions)))


def sandwich_archs(space: SearchSpace, allowed: CandidateMask, *, shared_inner: bool, gates: int = 0,
                   generator: torch.Generator | None = None,
                   attention_weights: torch.Tensor | None = None) -> tuple[Arch, Arch]:
    """The two single paths of a sandwich weight step: the largest allowed arch (widest hidden, deepest,
    widest inner in every block) and one drawn uniformly from the allowed options of every choice. The
    attention kind of both is drawn uniformly (no kind is "larger"), or from `attention_weights` (one
    draw per path, over the allowed kinds) when given."""

    def draw(mask: torch.Tensor) -> int:
        options = mask.nonzero().flatten()
        if options.numel() == 0:
            raise ValueError("sandwich_archs: a choice has no allowed option")
        return int(options[torch.randint(options.numel(), (1,), generator=generator)])

    def draw_kind() -> int:
        if attention_weights is None:
            return draw(allowed.attention)
        w = attention_weights.detach().float().cpu() * allowed.attention
        if not w.sum() > 0:
            raise ValueError("sandwich_archs: no allowed attention kind has weight")
        return int(torch.multinomial(w, 1, generator=generator))

    def largest(mask: torch.Tensor, values: tuple[int, ...]) -> int:
        return max((i for i in range(len(values)) if mask[i]), key=lambda i: values[i])

    def arch(pick: Callable[[torch.Tensor, tuple[int, ...]], int]) -> Arch:
        h = space.hiddens[pick(allowed.hidden, space.hiddens)]
        d = space.depths[pick(allowed.depth, space.depths)]
        widths = space.inner_widths(h)
        if shared_inner:  # one width for every block, allowed where every block allows it
            inner = (widths[pick(allowed.inner[:d].all(0), widths)],) * d
        else:
            inner = tuple(widths[pick(allowed.inner[b], widths)] for b in range(d))
        kind = space.attentions[draw_kind()]
        return Arch(d, h, inner, space.embedding_widths(h)[0], space.heads[0], kind, gates)

    return arch(largest), arch(lambda mask, _values: draw(mask))


def one_hot(n: int, index: int) -> torch.Tensor:
    out = torch.zeros(n)
    out[index] = 1.0
    return out


def path_weights(space: SearchSpace, arch: Arch) -> ChoiceWeights:
    """One-hot weights selecting exactly `arch`: a mixture over them computes the arch's own slice and
    nothing else (inner rows of blocks beyond its depth are never read)."""
    widths = space.inner_widths(arch.hidden)
    rows = [one_hot(len(widths), widths.index(arch.inner[min(b, arch.depth - 1)])) for b in range(space.depths[-1])]
    return ChoiceWeights(one_hot(len(space.hiddens), space.hiddens.index(arch.hidden)), torch.stack(rows),
                         one_hot(len(space.depths), space.depths.index(arch.depth)),
                         one_hot(len(space.attentions), space.attentions.index(arch.attention)))


def n_inner_options(space: SearchSpace) -> int:
    counts = {len(space.inner_widths(h)) for h in space.hiddens}
    if len(counts) != 1:
        raise ValueError(f"space {space.name}: inner option count differs across hidden widths")
    return counts.pop()


def check_mixable(space: SearchSpace) -> None:
    """Differentiable strategies mix hidden, inner, depth and attention; embedding must be tied or
    have a single option per hidden width, and one head count."""
    from nasrec.errors import ConfigError

    if any(len(space.embedding_widths(h)) != 1 for h in space.hiddens) or len(space.heads) != 1:
        raise ConfigError(f"space {space.name!r}: differentiable strategies need one embedding width per hidden "
                          "width and one head count; use a black-box strategy (random/optuna) for this space")


def _block_mixture(model: ElasticSASRec, b: int, x: torch.Tensor, valid: torch.Tensor | None, h: int, heads: int,
                   widths: tuple[int, ...], inner_w: torch.Tensor, attn_w: torch.Tensor,
                   kinds: tuple[str, ...], mask: torch.Tensor | None, x0: torch.Tensor, n_gates: int) -> torch.Tensor:
    block = model.blocks[b]
    gate1, gate2 = block.gate_values(x0, h, max(widths), n_gates)

    def attention(y: torch.Tensor) -> torch.Tensor:
        bsz, length, _ = y.shape
        q, k, v = block.qkv(y, h, heads)
        out = 0.0
        for w, kind in zip(attn_w, kinds, strict=True):
            if _active(w):
                fn = softmax_attention if kind == "softmax" else linear_attention
                out = out + w * fn(q, k, v, valid, mask, block.attention_dropout_p())
        out = out.transpose(1, 2).reshape(bsz, length, h)  # type: ignore[union-attr]
        return sliced_linear(out, block.o, h, h)

    def ffn(y: torch.Tensor) -> torch.Tensor:
        # run the FFN only as wide as the widest candidate that still carries weight (or gradient)
        widest = max(w for w, p in zip(widths, inner_w, strict=True) if _active(p))
        act = F.gelu(sliced_linear(y, block.fc1, widest, h))
        # unit j survives in every candidate wider than j: mask_j = sum of their weights
        width_t = torch.tensor(widths, device=y.device)
        mask = (width_t[:, None] > torch.arange(widest, device=y.device)[None, :]).to(y.dtype)
        unit_weight = inner_w @ mask  # [widest]
        if gate1 is not None:  # sliced gates: candidate w uses the first w gate units, as its slice does
            act = act * gate1[..., :widest]
        out = sliced_linear(block.dropout(act * unit_weight), block.fc2, h, widest)
        return out if gate2 is None else out * gate2

    if block.norm == "pre":
        x = x + block.dropout(attention(sliced_layer_norm(x, block.ln1, h)))
        x = x + block.dropout(ffn(sliced_layer_norm(x, block.ln2, h)))
    else:
        x = sliced_layer_norm(x + block.dropout(attention(x)), block.ln1, h)
        x = sliced_layer_norm(x + block.dropout(ffn(x)), block.ln2, h)
    return zero_padding(x, valid)


def _active(weight: torch.Tensor) -> bool:
    """Whether a candidate must run: it has weight, or its weight needs a gradient."""
    return weight.requires_grad or weight.item() != 0.0


def mixture_states(model: ElasticSASRec, space: SearchSpace, inputs: torch.Tensor, weights: ChoiceWeights,
                   positions: torch.Tensor | None = None, gates: int = 0) -> torch.Tensor:
    """Mixed final states in the widest embedding space, [N, E]: rows are `inputs` positions selected
    by the bool mask `positions` [B, L] (default: the last position of every row)."""
    e_max = model.dims.embedding
    heads = space.heads[0]
    weights = weights.to(inputs.device)
    mixed = 0.0
    for hi, h in enumerate(space.hiddens):
        w_h = weights.hidden[hi]
        if not _active(w_h):
            continue  # a pruned or unsampled width costs nothing
        e = space.embedding_widths(h)[0]
        arch = Arch(1, h, (1,), e, heads, space.attentions[0])  # only its widths are read by embed/score
        x, valid = model.embed(inputs, arch)
        x0 = x
        mask = attention_mask(valid) if "softmax" in space.attentions else None
        widths = space.inner_widths(h)
        z = 0.0
        deepest = max(d for d, p in zip(space.depths, weights.depth, strict=True) if _active(p))
        for b in range(deepest):  # blocks below every depth with weight are never computed
            x = _block_mixture(model, b, x, valid, h, heads, widths, weights.inner[b], weights.attention,
                               space.attentions, mask, x0, gates)
            if (b + 1) in space.depths and _active(weights.depth[space.depths.index(b + 1)]):
                w_d = weights.depth[space.depths.index(b + 1)]
                sel = x[:, -1] if positions is None else x[positions]
                z = z + w_d * model.final_states(sel, arch)
        mixed = mixed + w_h * F.pad(z, (0, e_max - e))  # type: ignore[arg-type]
    return mixed  # type: ignore[return-value]


def mixture_loss(model: ElasticSASRec, space: SearchSpace, inputs: torch.Tensor, targets: torch.Tensor,
                 weights: ChoiceWeights, gates: int = 0) -> torch.Tensor:
    """Next-item cross-entropy of the mixture at every valid position (weight steps on train windows)."""
    mask = targets > 0
    z = mixture_states(model, space, inputs, weights, positions=mask, gates=gates)
    return full_softmax_cross_entropy(z, model.item_emb.weight[1:], targets[mask] - 1)


def mixture_last_loss(model: ElasticSASRec, space: SearchSpace, inputs: torch.Tensor, targets: torch.Tensor,
                      weights: ChoiceWeights, gates: int = 0) -> torch.Tensor:
    """Cross-entropy of the next item after the last position (arch steps on arch-validation rows)."""
    z = mixture_states(model, space, inputs, weights, gates=gates)
    return full_softmax_cross_entropy(z, model.item_emb.weight[1:], targets - 1)


def expected_flops(space: SearchSpace, weights: ChoiceWeights, n_items: int, max_len: int,
                   gates: int = 0) -> torch.Tensor:
    """E[FLOPs] of the arch drawn from independent categoricals with these weights - exact, since FLOPs
    are linear in each inner width, in the attention kind and in each block's presence given hidden."""
    from nasrec.cost import attention_flops

    n = max_len
    depths = torch.tensor(space.depths, dtype=torch.float64)
    total = torch.zeros((), dtype=torch.float64)
    heads = space.heads[0]
    for hi, h in enumerate(space.hiddens):
        e = space.embedding_widths(h)[0]
        widths = torch.tensor(space.inner_widths(h), dtype=torch.float64)
        attn = torch.stack([
            torch.tensor(float(attention_flops(Arch(1, h, (1,), e, heads, k), n)), dtype=torch.float64)
            for k in space.attentions])
        e_attn = (weights.attention.double() * attn).sum()
        per_pass = torch.zeros((), dtype=torch.float64)
        for b in range(space.depths[-1]):
            present = weights.depth.double()[depths > b].sum()  # P(depth > b)
            e_inner = (weights.inner[b].double() * widths).sum()
            gate = 0.0
            if gates:  # linear in the inner width too (see cost.gate_flops)
                g = GATE_HIDDEN
                gate = 2 * n * h * g + 2 * n * g * e_inner + (2 * n * g * h if gates == 2 else 0)
            per_pass = per_pass + present * (8 * n * h * h + e_attn + 4 * n * h * e_inner + gate)
        head = 2 * e * n_items + ((2 * n * e * h + 2 * h * e) if e != h else 0)
        total = total + weights.hidden.double()[hi] * (per_pass + head)
    return total


def arch_preference(space: SearchSpace, weights: ChoiceWeights, arch: Arch) -> float:
    """How much the weights prefer `arch`: the log-weight of its option in every choice, with the inner width
    counted as one choice (the mean log-weight over the arch's blocks).

    Not log P(arch) under independent categoricals: that has one inner factor per block, so it favours
    shallow archs for their fewer decisions (under uniform weights a one-block arch would be 3^3 times as
    likely as a four-block one in a 3-width space). Here uniform weights give every arch the same score,
    and the budget projection's tie-break (more FLOPs) decides."""
    eps = 1e-12
    lp = torch.log(weights.hidden[space.hiddens.index(arch.hidden)] + eps)
    lp = lp + torch.log(weights.depth[space.depths.index(arch.depth)] + eps)
    lp = lp + torch.log(weights.attention[space.attentions.index(arch.attention)] + eps)
    widths = space.inner_widths(arch.hidden)
    inner = [torch.log(weights.inner[b, widths.index(w)] + eps) for b, w in enumerate(arch.inner)]
    return float(lp + torch.stack(inner).mean())


def argmax_arch(space: SearchSpace, weights: ChoiceWeights, gates: int = 0) -> Arch:
    """The arch of the largest weight in every choice (shared inner weights derive a uniform inner)."""
    h = space.hiddens[int(weights.hidden.argmax())]
    d = space.depths[int(weights.depth.argmax())]
    widths = space.inner_widths(h)
    if space.inner_per_block:
        inner = tuple(widths[int(weights.inner[b].argmax())] for b in range(d))
    else:
        inner = (widths[int(weights.inner.sum(0).argmax())],) * d
    return Arch(d, h, inner, space.embedding_widths(h)[0], space.heads[0],
                space.attentions[int(weights.attention.argmax())], gates)
