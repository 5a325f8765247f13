"""Are exported slices really cheaper? Latency ratio of a space's max and min archs vs their FLOPs ratio.

Both archs are exported from one supernet and timed in the same run, alternating, on this machine
(median of repeats after warm-up, `score_last` on full-length sequences).

    .venv/bin/python benchmarks/latency_ratio.py --space sasrec-ml1m --n-items 3416
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from nasrec import cost
from nasrec.arch import get_space
from nasrec.models import ElasticSASRec, ModelDims, export
from nasrec.models.sasrec import LINEAR_ATTENTION_FORMS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="sasrec-ml1m")
    parser.add_argument("--n-items", type=int, default=3416)
    parser.add_argument("--max-len", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--compile", action="store_true",
                        help="time torch.compile'd scorers (inductor) instead of eager ones")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--attention", nargs="+", default=None, help="attention kinds (default: the space's)")
    parser.add_argument("--linear-forms", nargs="+", default=["recurrent"], choices=LINEAR_ATTENTION_FORMS,
                        help="forms linear attention is timed in, alternating within each round (default: "
                             "recurrent, as cost.latency_ms); rows of a form other than the default are "
                             "keyed linear[FORM]/batch_B")
    parser.add_argument("--out", default="benchmarks/out/latency_ratio.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    space = get_space(args.space)
    max_len = args.max_len or space.supernet.max_len
    torch.manual_seed(0)
    supernet = ElasticSASRec(ModelDims.for_space(space, args.n_items, max_len))
    rows = {}
    for attention in args.attention or space.attentions:
        pair = {"max": space.max_arch(attention), "min": space.min_arch(attention)}
        models = {k: export(supernet, a).eval() for k, a in pair.items()}
        forms = args.linear_forms if attention == "linear" else ["recurrent"]  # softmax: no linear form
        flops = {k: cost.flops(a, args.n_items, max_len) for k, a in pair.items()}
        for batch in args.batches:
            times = {(form, k): [] for form in forms for k in models}
            for _ in range(args.rounds):  # alternate so drifts in machine load hit both alike
                for form in forms:
                    for k, m in models.items():
                        times[form, k].append(cost.latency_ms(m, batch, max_len=max_len,
                                                              repeats=5 if batch > 1 else 20,
                                                              compiled=args.compile, linear_form=form))
            for form in forms:
                lat = {k: sorted(times[form, k])[len(times[form, k]) // 2] for k in models}
                latency_ratio, flops_ratio = lat["max"] / lat["min"], flops["max"] / flops["min"]
                kind = attention if form == "recurrent" else f"{attention}[{form}]"
                rows[f"{kind}/batch_{batch}"] = {
                    "max_arch": pair["max"].label, "min_arch": pair["min"].label,
                    "latency_ms": lat, "flops": flops, "latency_ratio": latency_ratio,
                    "flops_ratio": flops_ratio, "latency_over_flops_ratio": latency_ratio / flops_ratio,
                    "within_1.5x": 1 / 1.5 <= latency_ratio / flops_ratio <= 1.5,
                }
    report = {"space": space.name, "n_items": args.n_items, "max_len": max_len, "threads": torch.get_num_threads(),
              "compiled": args.compile, "linear_forms": args.linear_forms, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
