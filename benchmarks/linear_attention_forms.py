"""Linear attention's exact forms, timed against each other in one run.

`linear_attention_form("states")` forms the running states S_t = sum_{s<=t} k_s v_s^T (O(L d^2) per head,
the FLOPs `nasrec.cost` counts) with batched matmuls; `"recurrent"` does the same arithmetic element-wise in
place (inference only: how latency is timed); `"masked"` computes tril(Q' K^T) V (O(L^2 d), dense matmuls).
For each size: the attention core alone (forward + backward at batch 128; forward under inference mode at
`--infer-batches`), then one training step (`nasrec.train.next_item_loss`: all items scored at every
position, then backward) of the `sasrec-ml1m` max arch with linear attention. The forms that apply alternate
within each round; medians over rounds.

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


Case = tuple[str, Callable[[], object], tuple[str, ...]]  # name, run, the forms that apply
TRAINABLE_FORMS = tuple(f for f in LINEAR_ATTENTION_FORMS if f != "recurrent")


def inputs(batch: int, heads: int, length: int, d: int, grad: bool
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    q, k, v = (torch.randn(batch, heads, length, d, requires_grad=grad) for _ in range(3))
    valid = torch.ones(batch, length, dtype=torch.bool)
    valid[: batch // 2, : length // 3] = False  # padded rows, as in training batches
    return q, k, v, valid


def core_cases(train_batch: int, infer_batches: list[int], lengths: list[int], heads: int,
               head_dims: list[int]) -> list[Case]:
    cases: list[Case] = []
    for length in lengths:
        for d in head_dims:
            q, k, v, valid = inputs(train_batch, heads, length, d, grad=True)

            def train(q=q, k=k, v=v, valid=valid) -> None:
                linear_attention(q, k, v, valid).sum().backward()

            cases.append((f"core B{train_batch} H{heads} L{length} d{d} fwd+bwd", train, TRAINABLE_FORMS))
            for batch in infer_batches:
                q, k, v, valid = inputs(batch, heads, length, d, grad=False)

                def infer(q=q, k=k, v=v, valid=valid) -> None:
                    with torch.inference_mode():
                        linear_attention(q, k, v, valid)

                cases.append((f"core B{batch} H{heads} L{length} d{d} fwd (inference)", infer,
                              LINEAR_ATTENTION_FORMS))
    return cases


def step_cases(batch: int, lengths: list[int]) -> list[Case]:
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

        cases.append((f"train step, {arch.label}, B{batch} L{length}", step, TRAINABLE_FORMS))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--infer-batches", type=int, nargs="+", default=[1, 128, 256])
    parser.add_argument("--out", default="benchmarks/out/linear_attention_forms.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cases = core_cases(128, args.infer_batches, [50, 200], 4, [16, 32]) + step_cases(128, [50, 200])
    rows = []
    print(f"{'case':58}" + "".join(f"{form + ' ms':>14}" for form in LINEAR_ATTENTION_FORMS))
    for name, fn, forms in cases:
        times: dict[str, list[float]] = {form: [] for form in forms}
        for i in range(args.rounds + 1):  # round 0 warms up
            for form in forms:
                with linear_attention_form(form):
                    ms = timed(fn)
                if i:
                    times[form].append(ms)
        med = {form: statistics.median(t) for form, t in times.items()}
        rows.append({"case": name, "median_ms": med, "ratio_states_over_masked": med["states"] / med["masked"],
                     **({"ratio_states_over_recurrent": med["states"] / med["recurrent"]} if "recurrent" in med
                        else {})})
        print(f"{name:58}" + "".join(f"{med[form]:14.2f}" if form in med else f"{'-':>14}"
                                     for form in LINEAR_ATTENTION_FORMS))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "threads": torch.get_num_threads(), "rounds": args.rounds,
                               "torch": torch.__version__, "machine": platform.machine()}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
