"""Elastic SASRec: one set of weights, many architectures.

Every `Arch` runs on the *leading slices* of the weights: `W[:out, :in]`, LayerNorm over the first
`hidden` dims, the first `depth` blocks. A width cut by a slice is a smaller matmul, so a small arch
really costs less. The exported model (`nasrec.models.export`) is an `ElasticSASRec` whose full size
*is* the arch, holding copies of the slices, so both run the same code and compute the same function.

Layout (pre-LN by default; post-LN, BERT-style initialisation without the sqrt(e) scale, and a LayerNorm
over the input embeddings selectable, together RecBole's SASRec):

    items -> embedding[:, :e] (* sqrt(e)) -> (proj e->h if e != h) -> + positions[:, :h] -> (LN) -> dropout
          -> depth x [ x + Attn(LN(x)), x + FFN(LN(x)) ] -> LN -> (proj h->e) -> . embedding[1:, :e]^T

Attention is causal and padding-masked softmax attention or LinRec linear attention (elu, then Q
L2-normalised over features and K over the causal prefix of positions), computed with prefix sums.
Linear attention has exact algorithms of two costs (`linear_attention_form`): the running states that its
FLOPs count (`nasrec.cost`), written as matmuls (so torch's FLOP counter sees them) or element-wise in place
(how latency is timed), and a causally masked matmul, used in training and evaluation because it is several
times faster here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasrec.arch import GATE_HIDDEN, Arch, SearchSpace

LN_EPS = 1e-8
BERT_INIT_STD = 0.02  # BERT's initializer_range, also RecBole's SASRec default
LINEAR_ATTN_EPS = 1e-6  # keeps the LinRec normalisers away from 0 (pruned or padded columns)
LINEAR_ATTENTION_FORMS = ("masked", "states", "recurrent")
_linear_form = "masked"  # set only through `linear_attention_form`
# "recurrent" form on a CPU: windows of states up to 128 KB when that covers at least 4 positions, else
# position by position. Chosen by timing windows of 1-200 positions against the per-position loop at batch
# 1-256, d 16-32 on this project's 2-core CPU (session 34: 8 positions best for d 32, 32 for d 16 at batch 1);
# the forms side by side: benchmarks/linear_attention_forms.py. On a GPU, as "states" there: all positions
# at once (few large kernels beat a loop of small ones).
RECURRENT_WINDOW_FLOATS = 1 << 15
RECURRENT_MIN_WINDOW = 4


@dataclass(frozen=True)
class ModelDims:
    """Sizes of an `ElasticSASRec`: the supernet's maxima, or one exported arch."""

    n_items: int
    max_len: int
    hidden: int
    inner: tuple[int, ...]  # FFN width of each block; len = number of blocks
    embedding: int
    heads: int
    attention: str = "softmax"
    projection: bool = False  # holds e<->h projections (needed when some arch has embedding != hidden)
    gates: int = 0  # data-aware FFN gates held by every block: 0, 1 (first dense layer) or 2 (both)
    dropout: float = 0.2
    norm: str = "pre"
    attention_dropout: float = 0.0  # on softmax attention weights, training only
    init: str = "transformer"  # or "bert" (see `ElasticSASRec.reset_parameters`)
    embedding_norm: bool = False  # LayerNorm over the summed input embeddings
    ffn_dropout: bool = True  # dropout on the FFN's inner activations (SASRec's; RecBole's FFN has none)
    positions: str = "right"  # "right": the newest item has the last position; "left": the oldest has 0 (RecBole)

    @property
    def depth(self) -> int:
        return len(self.inner)

    @property
    def full_arch(self) -> Arch:
        """The arch that uses every weight of this model."""
        return Arch(self.depth, self.hidden, self.inner, self.embedding, self.heads, self.attention,  # type: ignore[arg-type]
                    self.gates)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inner"] = list(self.inner)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelDims:
        return cls(**{**d, "inner": tuple(d["inner"])})

    @classmethod
    def for_space(cls, space: SearchSpace, n_items: int, max_len: int | None = None) -> ModelDims:
        sn = space.supernet
        return cls(
            n_items=n_items,
            max_len=max_len or sn.max_len,
            hidden=sn.hidden,
            inner=(sn.inner,) * sn.depth,
            embedding=sn.embedding,
            heads=max(space.heads),
            attention=space.attentions[0],
            projection=any(e != h for h in space.hiddens for e in space.embedding_widths(h)),
            dropout=sn.dropout,
            norm=sn.norm,
            attention_dropout=sn.attention_dropout,
            init=sn.init,
            embedding_norm=sn.embedding_norm,
            ffn_dropout=sn.ffn_dropout,
            positions=sn.positions,
        )

    def for_arch(self, arch: Arch) -> ModelDims:
        """Dims of the standalone model of `arch` cut from a model of these dims."""
        return replace(
            self, hidden=arch.hidden, inner=arch.inner, embedding=arch.embedding, heads=arch.heads,
            attention=arch.attention, projection=arch.projected, gates=arch.gates,
        )


def leading(t: torch.Tensor, *sizes: int) -> torch.Tensor:
    """`t[:sizes[0], :sizes[1], ...]`, or `t` itself when it has those sizes: an exported model runs whole,
    so it makes no slice views on every call (per-call overhead, which weighs on a small model at batch 1)."""
    if t.shape[: len(sizes)] == sizes:
        return t
    return t[tuple(slice(0, n) for n in sizes)]


def sliced_linear(x: torch.Tensor, layer: nn.Linear, n_out: int, n_in: int) -> torch.Tensor:
    """`layer` restricted to its first n_out outputs and first n_in inputs."""
    return F.linear(x, leading(layer.weight, n_out, n_in), leading(layer.bias, n_out))


def sliced_layer_norm(x: torch.Tensor, ln: nn.LayerNorm, n: int) -> torch.Tensor:
    return F.layer_norm(x, (n,), leading(ln.weight, n), leading(ln.bias, n), LN_EPS)


def attention_mask(valid: torch.Tensor | None) -> torch.Tensor | None:
    """Additive causal + padding mask [B, 1, L, L] for softmax attention, built once per forward; None when
    no position is padded (`valid` None, see `ElasticSASRec.embed`): causal attention alone is then exact,
    and its kernel needs no [B, L, L] mask (full-length histories, the common case at serving time, skip
    building and reading one).

    A query may always see itself, so padding rows (no valid key) stay finite; they are zeroed later."""
    if valid is None:
        return None
    length = valid.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=valid.device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=valid.device)
    allowed = causal & (valid[:, None, None, :] | eye)
    return torch.zeros(allowed.shape, device=valid.device).masked_fill_(~allowed, float("-inf"))


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor | None,
                      mask: torch.Tensor | None = None, dropout_p: float = 0.0) -> torch.Tensor:
    """Causal, padding-masked scaled dot-product attention. q, k, v: [B, heads, L, d]; valid: [B, L], or None
    when no position is padded; `mask`: `attention_mask(valid)` if the caller has it. `dropout_p` drops
    attention weights (pass 0 outside training)."""
    if mask is None:
        mask = attention_mask(valid)
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


@contextmanager
def linear_attention_form(form: str) -> Iterator[None]:
    """Run `linear_attention` inside the block with one of its exact forms (same outputs to float
    rounding, tested), the way `torch.nn.attention.sdpa_kernel` picks an SDPA backend:

    - "masked" (the default): out = tril(Q' K^T) V, O(L^2 d) per head in dense matmuls. On this
      project's 2-core CPU the attention core runs 2-12x faster than with the states at L 50-200,
      d 16-32 (forward and backward), a training step of the largest linear arch 1.7-2.8x
      (`benchmarks/linear_attention_forms.py`), so training, search and evaluation use it.
    - "states": out_t = q'_t S_t with S_t = sum_{s<=t} k_s v_s^T, O(L d^2) per head: the algorithm
      LinRec describes and `nasrec.cost` counts, written as batched matmuls so that
      `torch.utils.flop_counter` counts it (`cost.counted_flops`); differentiable.
    - "recurrent": the same O(L d^2) arithmetic element-wise and in place, so latency is timed with it
      (`cost.latency_ms`): on this CPU 3-5x faster than "states" at batch 128-256, where "states" runs
      B * heads tiny matmuls per position; at batch 1 faster for d 32, about as fast for d 16.
      Inference only (no autograd).
    """
    global _linear_form
    if form not in LINEAR_ATTENTION_FORMS:
        raise ValueError(f"linear attention form {form!r}: expected one of {', '.join(LINEAR_ATTENTION_FORMS)}")
    previous, _linear_form = _linear_form, form
    try:
        yield
    finally:
        _linear_form = previous


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor | None,
                     mask: torch.Tensor | None = None, dropout_p: float = 0.0) -> torch.Tensor:
    """LinRec attention, made causal with prefix sums and blind to padding. It forms no attention weights,
    so `dropout_p` (attention-weight dropout) does not apply to it.

    q is L2-normalised over features; k over positions, but only over the keys a query may see (the
    causal prefix of valid positions), which is what makes it causal. The last step runs the algorithm
    chosen by `linear_attention_form`.
    """
    q = F.elu(q)
    k = F.elu(k) if valid is None else F.elu(k) * valid[:, None, :, None]  # padding keys contribute nothing
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(LINEAR_ATTN_EPS)
    k_norm = torch.cumsum(k * k, dim=-2).clamp_min(LINEAR_ATTN_EPS**2).sqrt()  # [B, H, L, d]: per query t
    q = q / k_norm
    if _linear_form == "masked":
        # out_t = sum_{s<=t} (q_t . k_s) v_s: the states' result without forming them
        return torch.tril(q @ k.transpose(-2, -1)) @ v
    if _linear_form == "recurrent":
        return linear_attention_recurrent(q, k, v)
    # out_t = (q_t / ||k||_{<=t}) . S_t with S_t = sum_{s<=t} k_s v_s^T; outer products as a batched matmul.
    # The running states S_t [B, H, L, d, d] are formed a few positions at a time, carrying S forward:
    # on a CPU, forming all of them at once (hundreds of MB at batch 256) made this core 4-10x slower.
    b, heads, length, d = q.shape
    step = max(1, linear_attention_state_floats(q.device) // (b * heads * d * d))
    out, state = [], None
    for start in range(0, length, step):
        window = slice(start, start + step)
        kv = torch.cumsum(k[:, :, window].unsqueeze(-1) @ v[:, :, window].unsqueeze(-2), dim=-3)
        if state is not None:
            kv = kv + state.unsqueeze(2)
        out.append((q[:, :, window].unsqueeze(-2) @ kv).squeeze(-2))
        state = kv[:, :, -1]
    return out[0] if len(out) == 1 else torch.cat(out, dim=2)


def linear_attention_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """out_t = q_t . S_t, S_t = sum_{s<=t} k_s v_s^T, element-wise: 2 d^2 multiply-adds per position and head,
    as `nasrec.cost` counts. q is already divided by the keys' causal norms (`linear_attention`).

    Small states (batch 1) are formed a window of positions at a time (fewer, larger operations); larger
    ones are carried in place position by position (two operations per position, no temporaries), with
    the batch x heads states innermost so that the element-wise loops run over B * heads contiguous
    numbers instead of d (1.5-3x faster at batch 256 here)."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        raise RuntimeError('linear attention form "recurrent" runs in place and has no backward: '
                           'use "states" or "masked" where gradients are needed')
    b, heads, length, d = q.shape
    window = (RECURRENT_WINDOW_FLOATS if q.device.type == "cpu" else linear_attention_state_floats(q.device)
              ) // (b * heads * d * d)
    if window >= RECURRENT_MIN_WINDOW:
        out, state = torch.empty_like(v), None
        for start in range(0, length, window):
            span = slice(start, start + window)
            kv = torch.cumsum(k[:, :, span, :, None] * v[:, :, span, None, :], dim=2)  # [B, H, w, d, d]
            if state is not None:
                kv += state.unsqueeze(2)
            torch.sum(q[:, :, span, :, None] * kv, dim=-2, out=out[:, :, span])
            state = kv[:, :, -1]
        return out
    n = b * heads
    queries, keys, values = (x.reshape(n, length, d).permute(1, 2, 0).contiguous() for x in (q, k, v))  # [L, d, n]
    out = q.new_empty(length, d, n)
    state = q.new_zeros(d, d, n)
    keys, values, queries = keys.unsqueeze(2), values.unsqueeze(1), queries.unsqueeze(2)
    for t in range(length):
        state.addcmul_(keys[t], values[t])
        torch.sum(queries[t] * state, dim=0, out=out[t])
    return out.permute(2, 0, 1).reshape(b, heads, length, d)


def linear_attention_state_floats(device: torch.device) -> int:
    """How many running-state numbers `linear_attention` forms at a time: about one core's L2 on a CPU,
    effectively all positions on a GPU (where one large cumsum is cheaper than a loop of small ones)."""
    return 1 << 18 if device.type == "cpu" else 1 << 28


def zero_padding(x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """x [B, L, ...] with padding positions zeroed; `valid` None means none is padded."""
    return x if valid is None else x * valid.unsqueeze(-1)


def trim_left_padding(inputs: torch.Tensor) -> torch.Tensor:
    """`inputs` [B, L] without the leading columns that are padding (0) in every row; at least one column."""
    if bool((inputs[:, 0] > 0).any()):  # the usual case: some row fills the window
        return inputs
    used = (inputs > 0).any(dim=0)
    first = int(used.float().argmax()) if bool(used.any()) else inputs.shape[1] - 1
    return inputs[:, first:] if first else inputs


class Dropout(nn.Dropout):
    """nn.Dropout with a float mask built in place from `rand_like`: on a CPU forward + backward take
    about half the time of `F.dropout` (`bernoulli_`) or of a boolean mask, which costs type promotions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * torch.rand_like(x).ge_(self.p).mul_(1.0 / (1.0 - self.p))


class Block(nn.Module):
    """One transformer block at its maximal size; `forward` runs any leading slice of it."""

    def __init__(self, hidden: int, inner: int, norm: str, dropout: float, gates: int = 0,
                 attention_dropout: float = 0.0, ffn_dropout: bool = True) -> None:
        super().__init__()
        self.norm = norm
        self.attention_dropout = attention_dropout
        self.ffn_dropout = ffn_dropout
        if gates:  # EASRec data-aware gates: an MLP on the input embeddings, one head per gated layer
            self.gate_in = nn.Linear(hidden, GATE_HIDDEN)
            self.gate1 = nn.Linear(GATE_HIDDEN, inner)
        if gates == 2:
            self.gate2 = nn.Linear(GATE_HIDDEN, hidden)
        self.ln1 = nn.LayerNorm(hidden, eps=LN_EPS)
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, hidden)
        self.o = nn.Linear(hidden, hidden)
        self.ln2 = nn.LayerNorm(hidden, eps=LN_EPS)
        self.fc1 = nn.Linear(hidden, inner)
        self.fc2 = nn.Linear(inner, hidden)
        self.dropout = Dropout(dropout)

    def attention(self, x: torch.Tensor, valid: torch.Tensor | None, h: int, heads: int, kind: str,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
        b, length, _ = x.shape
        q, k, v = self.qkv(x, h, heads)
        attend = softmax_attention if kind == "softmax" else linear_attention
        out = attend(q, k, v, valid, mask, self.attention_dropout_p()).transpose(1, 2).reshape(b, length, h)
        return sliced_linear(out, self.o, h, h)

    def qkv(self, x: torch.Tensor, h: int, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q, K, V [B, heads, L, h // heads] of the width-h slice, as one matmul: concatenating the three
        weight slices copies 3 h^2 numbers, a small price for one wide GEMM instead of three narrow ones
        (and two fewer calls at batch 1)."""
        b, length, _ = x.shape
        weight = torch.cat([leading(lin.weight, h, h) for lin in (self.q, self.k, self.v)])
        bias = torch.cat([leading(lin.bias, h) for lin in (self.q, self.k, self.v)])
        q, k, v = F.linear(x, weight, bias).view(b, length, 3, heads, h // heads).permute(2, 0, 3, 1, 4)
        return q, k, v

    def attention_dropout_p(self) -> float:
        return self.attention_dropout if self.training else 0.0

    def gate_values(self, x0: torch.Tensor, h: int, inner: int, n_gates: int
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Gates in (0, 2) for the two FFN layers, read from the input embedding sequence x0 [B, L, h]."""
        if n_gates == 0:
            return None, None
        g = F.relu(sliced_linear(x0, self.gate_in, GATE_HIDDEN, h))
        first = 2.0 * torch.sigmoid(sliced_linear(g, self.gate1, inner, GATE_HIDDEN))
        second = 2.0 * torch.sigmoid(sliced_linear(g, self.gate2, h, GATE_HIDDEN)) if n_gates == 2 else None
        return first, second

    def ffn(self, x: torch.Tensor, h: int, inner: int, gates: tuple[torch.Tensor | None, torch.Tensor | None]
            = (None, None)) -> torch.Tensor:
        a = F.gelu(sliced_linear(x, self.fc1, inner, h))
        if gates[0] is not None:  # data-aware gate on the first dense layer (EASRec)
            a = a * gates[0]
        out = sliced_linear(self.dropout(a) if self.ffn_dropout else a, self.fc2, h, inner)
        if gates[1] is not None:  # ... and on the second
            out = out * gates[1]
        return out

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None, h: int, inner: int, heads: int, kind: str,
                gates: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
                mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm == "pre":
            x = x + self.dropout(self.attention(sliced_layer_norm(x, self.ln1, h), valid, h, heads, kind, mask))
            x = x + self.dropout(self.ffn(sliced_layer_norm(x, self.ln2, h), h, inner, gates))
        else:
            x = sliced_layer_norm(x + self.dropout(self.attention(x, valid, h, heads, kind, mask)), self.ln1, h)
            x = sliced_layer_norm(x + self.dropout(self.ffn(x, h, inner, gates)), self.ln2, h)
        return zero_padding(x, valid)


class ElasticSASRec(nn.Module):
    """SASRec whose sub-networks are slices of its weights; `forward(inputs, arch)` runs one of them."""

    def __init__(self, dims: ModelDims) -> None:
        super().__init__()
        self.dims = dims
        self.item_emb = nn.Embedding(dims.n_items + 1, dims.embedding, padding_idx=0)
        self.pos_emb = nn.Parameter(torch.empty(dims.max_len, dims.hidden))
        if dims.projection:
            self.in_proj = nn.Linear(dims.embedding, dims.hidden)
            self.out_proj = nn.Linear(dims.hidden, dims.embedding)
        self.blocks = nn.ModuleList(Block(dims.hidden, i, dims.norm, dims.dropout, dims.gates, dims.attention_dropout,
                                          dims.ffn_dropout) for i in dims.inner)
        self.final_ln = nn.LayerNorm(dims.hidden, eps=LN_EPS)
        if dims.embedding_norm:
            self.emb_ln = nn.LayerNorm(dims.hidden, eps=LN_EPS)
        self.emb_dropout = Dropout(dims.dropout)
        # Called with every input batch (search code uses it to check which split a step read).
        self.input_observer: Callable[[torch.Tensor], None] | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """`dims.init` "transformer" (the default): item table N(0, 1/embedding), read x sqrt(embedding)
        so inputs start at unit scale (the Transformer paper); xavier-uniform linears. "bert": every
        embedding and linear weight N(0, 0.02) and items read unscaled, as BERT and RecBole's SASRec.
        Biases start at 0 and LayerNorms at the identity in both."""
        if self.dims.init not in ("transformer", "bert"):
            raise ValueError(f"init {self.dims.init!r}: expected transformer or bert")
        bert = self.dims.init == "bert"
        nn.init.normal_(self.item_emb.weight, std=BERT_INIT_STD if bert else self.dims.embedding**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        nn.init.normal_(self.pos_emb, std=BERT_INIT_STD)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                if bert:
                    nn.init.normal_(m.weight, std=BERT_INIT_STD)
                else:
                    nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def arch(self) -> Arch:
        return self.dims.full_arch

    # -- the three stages, public so strategies can compose mixtures of them ---------------------
    def embed(self, inputs: torch.Tensor, arch: Arch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Input embeddings [B, L, hidden] and the valid-position mask [B, L], or None when no position is
        padded: every later masking step (attention mask, zeroing padding rows) is then skipped, which at
        batch 1 is a noticeable share of a small model's time."""
        if self.input_observer is not None:
            self.input_observer(inputs)
        e, h = arch.embedding, arch.hidden
        valid = inputs > 0
        table = self.item_emb.weight
        x = F.embedding(inputs, leading(table, table.shape[0], e))
        if self.dims.init == "transformer":
            x = x * math.sqrt(e)
        if arch.projected:
            x = sliced_linear(x, self.in_proj, h, e)
        if self.dims.positions == "right":  # the newest item has the last position, whatever the history's length
            length = inputs.shape[1]
            x = x + leading(self.pos_emb if length == self.dims.max_len else self.pos_emb[-length:], length, h)
        else:  # "left": the k-th item of the window has position k-1 (RecBole's left-aligned sequences)
            x = x + leading(self.pos_emb, self.pos_emb.shape[0], h)[(valid.cumsum(1) - 1).clamp_(min=0)]
        if self.dims.embedding_norm:
            x = sliced_layer_norm(x, self.emb_ln, h)
        padded = None if bool(valid.all()) else valid
        return zero_padding(self.emb_dropout(x), padded), padded

    def final_states(self, z: torch.Tensor, arch: Arch) -> torch.Tensor:
        """Block output [..., hidden] -> the query [..., embedding] scored against item embeddings."""
        z = sliced_layer_norm(z, self.final_ln, arch.hidden) if self.dims.norm == "pre" else z
        if arch.projected:
            z = sliced_linear(z, self.out_proj, arch.embedding, arch.hidden)
        return z

    def item_matrix(self, arch: Arch) -> torch.Tensor:
        """Embeddings of items 1..n_items [n_items, embedding] (tied: the input table)."""
        table = self.item_emb.weight
        return leading(table, table.shape[0], arch.embedding)[1:]

    def item_scores(self, z: torch.Tensor, arch: Arch) -> torch.Tensor:
        """Scores of items 1..n_items for block outputs z [..., hidden] -> [..., n_items]."""
        return F.linear(self.final_states(z, arch), self.item_matrix(arch))

    def forward(self, inputs: torch.Tensor, arch: Arch | None = None) -> torch.Tensor:
        """Hidden states [B, L, hidden] of `arch` (default: the whole model) before the final norm."""
        arch = arch or self.arch
        x, valid = self.embed(inputs, arch)
        x0 = x
        mask = attention_mask(valid) if arch.attention == "softmax" else None
        for i in range(arch.depth):
            block = self.blocks[i]
            gates = block.gate_values(x0, arch.hidden, arch.inner[i], arch.gates)
            x = block(x, valid, arch.hidden, arch.inner[i], arch.heads, arch.attention, gates=gates, mask=mask)
        return x

    def score_last(self, inputs: torch.Tensor, arch: Arch | None = None) -> torch.Tensor:
        """Next-item scores [B, n_items + 1] from the last position; column 0 (padding) is -inf.

        Columns that are padding in every row are dropped first: positions count from one end of the valid
        items (`dims.positions`) and padding is masked, so the scores are the same and a batch of short
        histories costs only its length."""
        arch = arch or self.arch
        scores = self.item_scores(self(trim_left_padding(inputs), arch)[:, -1], arch)
        return F.pad(scores, (1, 0), value=float("-inf"))

    def score_last_grouped(self, inputs: torch.Tensor, archs: Sequence[Arch]) -> torch.Tensor:
        """Like `score_last`, but row i runs `archs[i]`: rows are grouped by arch and each group runs
        only its own slice (a per-user router's inference path)."""
        out = torch.empty(inputs.shape[0], self.dims.n_items + 1, device=inputs.device)
        groups: dict[Arch, list[int]] = {}
        for i, a in enumerate(archs):
            groups.setdefault(a, []).append(i)
        for a, rows in groups.items():
            idx = torch.tensor(rows, device=inputs.device)
            out[idx] = self.score_last(inputs[idx], a)
        return out
