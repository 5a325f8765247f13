"""How close can the batch-1 latency ratio of min vs max arch get to their FLOPs ratio on this CPU?

Times each exported softmax arch of the space's extremes two ways, alternating in one run:
- `model`: the exported model's `score_last` (what `cost.latency_ms` times);
- `floor`: the same function written with nothing but its essential kernels (embedding lookup, the fused
  QKV / output / FFN matmuls, causal SDPA, GELU, LayerNorms, the last position scored against all items),
  on the exported model's own weights, the QKV weights concatenated once beforehand. It is checked to give
  the model's scores (atol 1e-5) before timing.

The floor has no per-call overhead to remove (no slicing, masks, padding checks, module calls), so its
latency / FLOPs ratio is what any eager implementation built on these PyTorch CPU kernels can reach.

    .venv/bin/python benchmarks/latency_floor.py --threads 1
    .venv/bin/python benchmarks/latency_floor.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from latency_profile import median_ms, seeded_supernet  # benchmarks/ is on the path when run as a script

from nasrec import cost
from nasrec.models import ElasticSASRec, export
from nasrec.models.sasrec import LN_EPS


def floor_scorer(model: ElasticSASRec) -> Callable[[torch.Tensor], torch.Tensor]:
    """`score_last` of a pre-LN, unprojected, softmax-attention model on full windows, essential kernels only."""
    dims, arch = model.dims, model.arch
    if dims.norm != "pre" or arch.projected or arch.attention != "softmax" or arch.gates or dims.embedding_norm \
            or dims.positions != "right":
        raise SystemExit(f"{arch.label}: the floor is written for pre-LN, unprojected, ungated softmax archs")
    h, heads = arch.hidden, arch.heads
    scale = math.sqrt(arch.embedding) if dims.init == "transformer" else 1.0
    table, items, pos = model.item_emb.weight, model.item_emb.weight[1:], model.pos_emb
    blocks = [(b.ln1.weight, b.ln1.bias, torch.cat([b.q.weight, b.k.weight, b.v.weight]),
               torch.cat([b.q.bias, b.k.bias, b.v.bias]), b.o.weight, b.o.bias, b.ln2.weight, b.ln2.bias,
               b.fc1.weight, b.fc1.bias, b.fc2.weight, b.fc2.bias) for b in model.blocks]

    def score(inputs: torch.Tensor) -> torch.Tensor:
        n, length = inputs.shape
        x = torch.add(pos[-length:], F.embedding(inputs, table), alpha=scale)
        for g1, b1, w_qkv, b_qkv, w_o, b_o, g2, b2, w1, c1, w2, c2 in blocks:
            y = F.layer_norm(x, (h,), g1, b1, LN_EPS)
            q, k, v = F.linear(y, w_qkv, b_qkv).view(n, length, 3, heads, h // heads).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(n, length, h)
            x = x + F.linear(a, w_o, b_o)
            x = x + F.linear(F.gelu(F.linear(F.layer_norm(x, (h,), g2, b2, LN_EPS), w1, c1)), w2, c2)
        return F.linear(F.layer_norm(x[:, -1], (h,), model.final_ln.weight, model.final_ln.bias, LN_EPS), items)

    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="sasrec-ml1m")
    parser.add_argument("--n-items", type=int, default=3416)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1])
    parser.add_argument("--rounds", type=int, default=60, help="alternating turns per batch size")
    parser.add_argument("--out", default="benchmarks/out/latency_floor.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    space, supernet = seeded_supernet(args.space, args.n_items)
    max_len = space.supernet.max_len
    pair = {"max": space.max_arch("softmax"), "min": space.min_arch("softmax")}
    models = {k: export(supernet, a).eval() for k, a in pair.items()}
    floors = {k: floor_scorer(m) for k, m in models.items()}
    flops = {k: cost.flops(a, args.n_items, max_len) for k, a in pair.items()}
    gen = torch.Generator().manual_seed(0)
    rows = {}
    with torch.inference_mode():
        for batch in args.batches:
            inputs = torch.randint(1, args.n_items + 1, (batch, max_len), generator=gen)
            for k in pair:  # the floor computes the model's function
                torch.testing.assert_close(floors[k](inputs), models[k].score_last(inputs)[:, 1:], atol=1e-5, rtol=1e-5)
            runs: dict[str, dict[str, list[float]]] = {way: {"max": [], "min": []} for way in ("model", "floor")}
            calls = {("model", k): (lambda k=k, x=inputs: models[k].score_last(x)) for k in pair}
            calls |= {("floor", k): (lambda k=k, x=inputs: floors[k](x)) for k in pair}
            for fn in calls.values():  # warm-up
                median_ms(fn, repeats=3)
            for _ in range(args.rounds):  # short alternating turns: drifts in the machine's speed hit all alike
                for (way, k), fn in calls.items():
                    runs[way][k].append(median_ms(fn, repeats=5 if batch == 1 else 1, warmup=1))
            for way, times in runs.items():
                lat = {k: statistics.median(v) for k, v in times.items()}
                ratio = (lat["max"] / lat["min"]) / (flops["max"] / flops["min"])
                rows[f"{way}/batch_{batch}"] = {"latency_ms": lat, "latency_over_flops_ratio": ratio}
                print(f"batch {batch:4d} {way:5s}: max {lat['max']:9.3f} ms  min {lat['min']:8.3f} ms  "
                      f"latency ratio {lat['max'] / lat['min']:5.2f}  FLOPs ratio {flops['max'] / flops['min']:5.2f}  "
                      f"latency / FLOPs ratio {ratio:.3f}")
    report = {"space": space.name, "n_items": args.n_items, "max_len": max_len, "threads": torch.get_num_threads(),
              "archs": {k: a.label for k, a in pair.items()}, "flops": flops, "rows": rows,
              "torch": torch.__version__}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
