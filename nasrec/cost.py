"""What an arch costs: analytic FLOPs (the number budgets are on), counted FLOPs, params, latency.

FLOPs are for scoring ONE sequence of `max_len` items: a multiply-add is 2 FLOPs; counted are the
matrix products (projections, attention, FFN, scoring the last position against all items).
Element-wise work (norms, activations, softmax, prefix sums, gates' sigmoid) is not counted, as in
`torch.utils.flop_counter`, which checks the formula on the exported model.

Linear attention is counted, timed and counted-by-torch as its running-state algorithm, O(L d^2) per
head, LinRec's: torch counts it written as matmuls (`linear_attention_form("states")`), latency runs the
same arithmetic element-wise in place (`"recurrent"`, faster); training uses an exact masked-matmul form
that is faster on CPUs at these lengths but does O(L^2 d) work (nasrec.models.sasrec).
"""

from __future__ import annotations

import statistics
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from nasrec.arch import GATE_HIDDEN, Arch, SearchSpace
from nasrec.device import model_device, synchronize
from nasrec.models.sasrec import ElasticSASRec, linear_attention_form


def attention_flops(arch: Arch, max_len: int) -> int:
    """The attention core (not its projections) of one block."""
    n, h = max_len, arch.hidden
    if arch.attention == "softmax":
        return 4 * n * n * h  # Q K^T and A V, each 2 n^2 d per head
    d = h // arch.heads
    return 4 * n * d * h  # k v^T outer products and q . S per position: 2 n d^2 each per head


def gate_flops(arch: Arch, max_len: int, inner: int) -> int:
    """EASRec's data-aware gates of one block: input layer, then one head per gated FFN layer."""
    if not arch.gates:
        return 0
    n, h, g = max_len, arch.hidden, GATE_HIDDEN
    return 2 * n * h * g + 2 * n * g * inner + (2 * n * g * h if arch.gates == 2 else 0)


def block_flops(arch: Arch, max_len: int, inner: int) -> int:
    n, h = max_len, arch.hidden
    core = 8 * n * h * h + attention_flops(arch, max_len) + 4 * n * h * inner  # QKVO + core + FFN
    return core + gate_flops(arch, max_len, inner)


def flops(arch: Arch, n_items: int, max_len: int) -> int:
    """Analytic FLOPs to score one sequence of `max_len` against all `n_items` items."""
    n, h, e = max_len, arch.hidden, arch.embedding
    total = sum(block_flops(arch, max_len, i) for i in arch.inner)
    if arch.projected:
        total += 2 * n * e * h + 2 * h * e  # input projection at every position, output at the last
    return total + 2 * e * n_items


def params(arch: Arch, n_items: int, max_len: int) -> int:
    """Parameters of the exported model of `arch`."""
    h, e = arch.hidden, arch.embedding
    block = 4 * (h * h + h) + 4 * h  # Q, K, V, O with biases; two LayerNorms
    total = (n_items + 1) * e + max_len * h + 2 * h
    total += sum(block + (h * i + i) + (i * h + h) for i in arch.inner)
    if arch.gates:
        g = GATE_HIDDEN
        total += sum((h * g + g) + (g * i + i) + ((g * h + h) if arch.gates == 2 else 0) for i in arch.inner)
    if arch.projected:
        total += (e * h + h) + (h * e + e)
    return total


def counted_flops(model: ElasticSASRec, max_len: int | None = None) -> int:
    """FLOPs of one `score_last` call on a full-length sequence, counted by torch's FlopCounterMode.

    The math SDPA backend is forced: on CPU the fused flash kernel is counted as 0 FLOPs."""
    length = max_len or model.dims.max_len
    inputs = torch.randint(1, model.dims.n_items + 1, (1, length), device=model_device(model))
    counter = FlopCounterMode(display=False)
    model.eval()
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), linear_attention_form("states"), counter:
        model.score_last(inputs)
    return counter.get_total_flops()


def latency_ms(model: ElasticSASRec, batch_size: int, *, max_len: int | None = None, repeats: int = 10,
               warmup: int = 3, seed: int = 0, compiled: bool = False, linear_form: str = "recurrent") -> float:
    """Median wall time of one `score_last` batch on the model's device, in milliseconds, after warm-up.

    `compiled`: time `torch.compile(model.score_last)` (inductor; its compilation happens in the warm-up),
    as a served model would run with the per-operator Python dispatch fused away. `linear_form`: the form
    linear attention runs in (`nasrec.models.sasrec.linear_attention_form`); the default, "recurrent",
    is the fastest exact form of the algorithm the FLOPs count."""
    length = max_len or model.dims.max_len
    device = model_device(model)
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randint(1, model.dims.n_items + 1, (batch_size, length), generator=gen).to(device)
    model.eval()
    score = compiled_scorer(model) if compiled else model.score_last
    times = []
    # how a served model runs: no autograd bookkeeping. A compiled scorer that hits dynamo's recompile
    # limit raises instead of silently running eager.
    with torch.inference_mode(), linear_attention_form(linear_form), \
            torch._dynamo.config.patch(recompile_limit=64, fail_on_recompile_limit_hit=True):
        for i in range(warmup + repeats):
            synchronize(device)
            start = time.perf_counter()
            score(inputs)
            synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


_compiled_scorers: weakref.WeakKeyDictionary[ElasticSASRec, Callable[[torch.Tensor], torch.Tensor]] = \
    weakref.WeakKeyDictionary()


def compiled_scorer(model: ElasticSASRec) -> Callable[[torch.Tensor], torch.Tensor]:
    """`torch.compile(model.score_last)`, one per model, so repeated timings reuse its compiled graphs."""
    if model not in _compiled_scorers:
        _compiled_scorers[model] = torch.compile(model.score_last, dynamic=False)
    return _compiled_scorers[model]


@dataclass(frozen=True)
class FlopsRange:
    min_arch: Arch
    min_flops: int
    max_arch: Arch
    max_flops: int


def flops_range(space: SearchSpace, n_items: int, max_len: int, gates: int = 0) -> FlopsRange:
    """Cheapest and costliest archs of a space (carrying `gates` data-aware gates). FLOPs grow with depth
    and every inner width, so only the extreme depth/inner corners are scored, for every
    hidden/embedding/heads/attention."""
    corners = []
    for hidden in space.hiddens:
        widths = space.inner_widths(hidden)
        for emb in space.embedding_widths(hidden):
            for heads in space.heads:
                for attention in space.attentions:
                    for depth, inner in ((space.depths[0], min(widths)), (space.depths[-1], max(widths))):
                        corners.append(Arch(depth, hidden, (inner,) * depth, emb, heads, attention, gates))
    scored = sorted(corners, key=lambda a: (flops(a, n_items, max_len), a.to_json()))
    lo, hi = scored[0], scored[-1]
    return FlopsRange(lo, flops(lo, n_items, max_len), hi, flops(hi, n_items, max_len))


def cost_report(arch: Arch, n_items: int, max_len: int, model: ElasticSASRec | None = None,
                latency: bool = False) -> dict[str, Any]:
    """FLOPs and params of `arch`; counted FLOPs and latency when its exported model is given."""
    report: dict[str, Any] = {
        "arch": arch.to_dict(),
        "arch_id": arch.id,
        "flops": flops(arch, n_items, max_len),
        "params": params(arch, n_items, max_len),
        "n_items": n_items,
        "max_len": max_len,
    }
    if model is not None:
        report["counted_flops"] = counted_flops(model, max_len)
        report["model_params"] = sum(p.numel() for p in model.parameters())
        if latency:
            report["latency_ms"] = {"batch_1": latency_ms(model, 1, max_len=max_len),
                                    "batch_256": latency_ms(model, 256, max_len=max_len, repeats=5)}
    return report
