"""Linear attention's two exact algorithms, timed against each other in one run.

`linear_attention_form("states")` forms the running states S_t = sum_{s<=t} k_s v_s^T (O(L d^2) per head,
the FLOPs `nasrec.cost` counts); `"masked"` computes tril(Q' K^T) V (O(L^2 d), dense matmuls). For each
size: the attention core alone (forward + backward, and forward under inference mode), then one training
step (`nasrec.train.next_item_loss`: all items scored at every position, then backward) of the
`sasrec-ml1m` max arch with linear attention. The two forms alternate within each round; medians over rounds.

    .venv/bin/python benchmarks/linear_attention_forms.py --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from nasrec.arch import get_space
from nasrec.models import ElasticSASRec, ModelDims
from nasrec.models.sasrec import LINEAR_ATTENTION_FORMS, linear_attention, linear_attention_form
from nasrec.train import next_item_loss

N_ITEMS = 3416  # ML-1M's catalogue


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return 1000.0 * (time.perf_counter() - start)


def core_cases(batch: int, lengths: list[int], heads: int, head_dims: list[int]
               ) -> list[tuple[str, Callable[[], object]]]:
    cases = []
    for length in lengths:
        for d in head_dims:
            q, k, v = (torch.randn(batch, heads, length, d, requires_grad=True) for _ in range(3))
            valid = torch.ones(batch, length, dtype=torch.bool)
            valid[: batch // 2, : length // 3] = False  # padded rows, as in training batches

            def train(q=q, k=k, v=v, valid=valid) -> None:
                linear_attention(q, k, v, valid).sum().backward()

            def infer(q=q, k=k, v=v, valid=valid) -> None:
                with torch.inference_mode():
                    linear_attention(q.detach(), k.detach(), v.detach(), valid)

            cases.append((f"core B{batch} H{heads} L{length} d{d} fwd+bwd", train))
            cases.append((f"core B{batch} H{heads} L{length} d{d} fwd (inference)", infer))
    return cases


def step_cases(batch: int, lengths: list[int]) -> list[tuple[str, Callable[[], object]]]:
    space = get_space("sasrec-ml1m")
    cases = []
    for length in lengths:
        arch = dataclasses.replace(space.max_arch(), attention="linear")
        model = ElasticSASRec(ModelDims.for_space(space, N_ITEMS, length)).train()
        inputs = torch.randint(1, N_ITEMS + 1, (batch, length))
        targets = torch.randint(1, N_ITEMS + 1, (batch, length))

        def step(model=model, arch=arch, inputs=inputs, targets=targets) -> None:
            model.zero_grad(set_to_none=True)
            next_item_loss(model, inputs, targets, arch).backward()

        cases.append((f"train step, {arch.label}, B{batch} L{length}", step))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/out/linear_attention_forms.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cases = core_cases(128, [50, 200], 4, [16, 32]) + step_cases(128, [50, 200])
    rows = []
    print(f"{'case':58} {'states ms':>10} {'masked ms':>10} {'states/masked':>14}")
    for name, fn in cases:
        times: dict[str, list[float]] = {form: [] for form in LINEAR_ATTENTION_FORMS}
        for i in range(args.rounds + 1):  # round 0 warms up
            for form in LINEAR_ATTENTION_FORMS:
                with linear_attention_form(form):
                    ms = timed(fn)
                if i:
                    times[form].append(ms)
        med = {form: statistics.median(t) for form, t in times.items()}
        rows.append({"case": name, "median_ms": med, "ratio_states_over_masked": med["states"] / med["masked"]})
        print(f"{name:58} {med['states']:10.1f} {med['masked']:10.1f} {med['states'] / med['masked']:14.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "threads": torch.get_num_threads(), "rounds": args.rounds,
                               "torch": torch.__version__, "machine": platform.machine()}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
