"""How a searched supernet ranks its own slices: full-ranking NDCG@10 of chosen archs, each run as its
slice of the supernet a `nasrec search` run saved (`OUT/supernet.pt`), on the arch-validation rows the
search used (never valid or test). It shows whether the supernet's weights can tell a good arch from a
bad one: a mixture-trained supernet's deep slices are barely trained on their own loss, so every
strategy reading it prefers one block (docs/strategies.md).

    .venv/bin/python benchmarks/slice_ranking.py benchmarks/out/cpu-L50/base/darts__1.95e_07 \\
        --arch '{"depth":4,"hidden":64,"inner":192}' --arch '{"depth":1,"hidden":128,"inner":256}'

An `--arch` names depth, hidden and one inner width (used in every block); embedding, heads, attention
kind and gates default to the run's (the space's first head count, the derived arch's attention and
gates). Without `--arch`, the largest arch and the derived arch are ranked. Prints a table and, with
`--json FILE`, writes the rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from nasrec import api, cost
from nasrec.arch import Arch, get_space
from nasrec.data import leave_one_out
from nasrec.metrics import full_ranking_ranks, metrics_from_ranks
from nasrec.models import ElasticSASRec, ModelDims
from nasrec.strategies.base import SearchContext


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="output directory of a `nasrec search` run (holds supernet.pt)")
    parser.add_argument("--arch", action="append", default=[], help="JSON: depth, hidden, inner (+ optional fields)")
    parser.add_argument("--data-root", type=Path, default=None, help="rebase the run's relative data path here")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    for needed in ("config.json", "supernet.pt", "search.json"):
        if not (args.run / needed).is_file():
            raise SystemExit(f"{args.run / needed} is missing: pass the --out directory of a finished search")
    config = json.loads((args.run / "config.json").read_text())
    derived = Arch.from_dict(json.loads((args.run / "search.json").read_text())["derived"])
    search = config["search"]
    data_opts = api.DataOptions(**config["data"])
    if args.data_root is not None:
        data_opts = dataclasses.replace(data_opts, source=str(args.data_root / Path(data_opts.source).name))
    dataset = data_opts.load()
    if dataset.fingerprint != config.get("data_fingerprint"):
        raise SystemExit(f"the data at {data_opts.source} differs from the run's (fingerprint)")
    space = get_space(search["space"])
    max_len = api.resolve_max_len(space, search["max_len"])
    splits = leave_one_out(dataset, seed=search["seed"])

    dims = dataclasses.replace(ModelDims.for_space(space, dataset.n_items, max_len), gates=derived.gates)
    supernet = ElasticSASRec(dims)
    supernet.load_state_dict(torch.load(args.run / "supernet.pt", weights_only=True, map_location="cpu"))
    supernet.eval()
    ctx = SearchContext(supernet=supernet, space=space, search_train=splits.search_train[:1],
                        arch_valid=splits.arch_valid, n_items=dataset.n_items, max_len=max_len,
                        budget_flops=search["budget_flops"], epochs=0, batch_size=search["batch_size"], lr=0.0,
                        seed=search["seed"], flops=lambda a: 0, all_windows=False)

    archs = [parse(text, derived, space) for text in args.arch] or [
        dataclasses.replace(space.max_arch(derived.attention), gates=derived.gates), derived]
    for arch in archs:  # every arch checked before any is evaluated
        space.validate(arch)
    max_flops = cost.flops(dataclasses.replace(space.max_arch(), gates=0), dataset.n_items, max_len)
    rows: list[dict[str, Any]] = []
    print(f"{args.run}: arch-validation NDCG@10 of supernet slices ({len(splits.arch_valid.targets)} rows)")
    print(f"{'arch':<40} {'x max FLOPs':>11} {'NDCG@10':>8}")
    for arch in archs:
        ranks = []
        with torch.no_grad():
            for x, y in ctx.arch_valid_batches():
                ranks.append(full_ranking_ranks(supernet.score_last(x, arch), y))
        ndcg = metrics_from_ranks(torch.cat(ranks), ks=(10,))["ndcg@10"]
        share = cost.flops(arch, dataset.n_items, max_len) / max_flops
        rows.append({"arch": arch.to_dict(), "flops_share": share, "arch_valid_ndcg@10": ndcg})
        print(f"{arch.label:<40} {share:>11.3f} {ndcg:>8.4f}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"run": str(args.run), "rows": rows}, indent=2))


def parse(text: str, derived: Arch, space: Any) -> Arch:
    try:
        given = json.loads(text)
        depth, hidden = int(given["depth"]), int(given["hidden"])
        inner = given["inner"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"--arch {text!r}: expected JSON with depth, hidden and inner ({exc})") from exc
    inner = tuple(inner) if isinstance(inner, list) else (int(inner),) * depth
    return Arch(depth, hidden, inner, int(given.get("embedding", space.embedding_widths(hidden)[0])),
                int(given.get("heads", space.heads[0])), given.get("attention", derived.attention),
                int(given.get("gates", derived.gates)))


if __name__ == "__main__":
    main()
