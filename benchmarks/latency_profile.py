"""Where a small exported slice spends its batch-1 time (issue: latency ratio of min vs max arch).

Profiles `score_last` of the space's min (or max) arch on one full-length sequence under
`torch.inference_mode`, prints the share of each aten op, and times causal SDPA alone at the head sizes the
two archs use (FLOPs per second fall with the head size).

    .venv/bin/python benchmarks/latency_profile.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from nasrec.arch import SearchSpace, get_space
from nasrec.models import ElasticSASRec, ModelDims
from nasrec.models.export import export
from nasrec.models.sasrec import linear_attention_form


def median_ms(fn: Callable[[], object], repeats: int = 200, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def seeded_supernet(space_name: str, n_items: int) -> tuple[SearchSpace, ElasticSASRec]:
    """The space and a supernet at its max_len, initialised from seed 0, as the latency benchmarks time them."""
    space = get_space(space_name)
    torch.manual_seed(0)
    return space, ElasticSASRec(ModelDims.for_space(space, n_items, space.supernet.max_len))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="sasrec-ml1m")
    parser.add_argument("--n-items", type=int, default=3416)
    parser.add_argument("--arch", choices=("min", "max"), default="min")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--calls", type=int, default=200, help="profiled calls")
    parser.add_argument("--out", default="benchmarks/out/latency_profile.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    space, supernet = seeded_supernet(args.space, args.n_items)
    max_len = space.supernet.max_len
    arch = space.min_arch() if args.arch == "min" else space.max_arch()
    model = export(supernet, arch).eval()
    inputs = torch.randint(1, args.n_items + 1, (1, max_len))

    with torch.inference_mode(), linear_attention_form("recurrent"):  # as cost.latency_ms times it
        call_ms = median_ms(lambda: model.score_last(inputs))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.calls):
                model.score_last(inputs)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    shares = [{"op": e.key, "share": e.self_cpu_time_total / total, "calls_per_forward": e.count / args.calls}
              for e in events]

    # Causal SDPA alone, at each head size of the space's extreme archs: FLOPs per second by head size.
    sdpa = []
    for a in (space.min_arch(), space.max_arch()):
        d = a.hidden // a.heads
        q, k, v = (torch.randn(1, a.heads, max_len, d) for _ in range(3))
        with torch.inference_mode():
            ms = median_ms(lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v, is_causal=True))
        flops = 4 * max_len * max_len * a.hidden  # as nasrec.cost counts it
        sdpa.append({"arch": a.label, "heads": a.heads, "head_dim": d, "ms": ms, "gflops": flops / ms / 1e6})

    report = {"space": args.space, "arch": arch.label, "threads": torch.get_num_threads(),
              "score_last_ms": call_ms, "ops": shares, "sdpa": sdpa, "torch": torch.__version__}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"{arch.label}: score_last {call_ms:.3f} ms at batch 1 ({report['threads']} threads)")
    for row in shares[:12]:
        print(f"  {row['share']:6.1%}  {row['op']}  ({row['calls_per_forward']:g} per call)")
    for row in sdpa:
        print(f"  SDPA {row['heads']} heads x {row['head_dim']} dims: {row['ms']:.3f} ms, {row['gflops']:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
