"""Compare ProxylessNAS's two arch-gradient estimators on a finished search's supernet, training nothing.

    .venv/bin/python benchmarks/proxyless_estimators.py RUN_DIR [--steps 300] [--seed 1]

RUN_DIR is a `nasrec search` output of a differentiable strategy (config.json, supernet.pt, trace.json). At the
trace's last architecture weights, on the run's own arch-validation rows (the same split as the search), prints:

1. the arch-validation loss of a few single paths with each attention kind (eval mode, every row once);
2. per estimator (`gate`: dL/dg through the two-path binary gates; `pair_loss`: the pair members' own losses),
   the mean gradient on the attention, hidden and depth logits over `--steps` arch steps, with the standard
   error of the attention component. Gradient descent lowers the logit of a positive component.

The question it answers: whether the gate gradient points to the option whose paths have the lower loss.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from nasrec.api import DataOptions
from nasrec.arch import Arch, get_space
from nasrec.data.split import leave_one_out
from nasrec.models.sasrec import ElasticSASRec, ModelDims
from nasrec.strategies._differentiable import ArchLogits
from nasrec.strategies.base import SearchContext
from nasrec.strategies.mixture import mixture_last_loss, path_weights
from nasrec.strategies.proxyless import Proxyless

PATHS = ((4, 128), (2, 128), (2, 96), (3, 64), (1, 64))  # (depth, hidden), at the widest inner width


def load(run: Path) -> tuple[SearchContext, ArchLogits]:
    config = json.loads((run / "config.json").read_text())
    search = config["search"]
    if search.get("all_windows", True) or search["window_stride"] is not None:
        raise SystemExit(f"{run}: only --last-window-only runs are supported (the arch-valid rows are the same)")
    dataset = DataOptions(**config["data"]).load()
    if dataset.fingerprint != config["data_fingerprint"]:
        raise SystemExit(f"{run}: the data changed since the run (fingerprint differs)")
    space, max_len = get_space(search["space"]), search["max_len"]
    splits = leave_one_out(dataset, seed=search["seed"])
    net = ElasticSASRec(ModelDims.for_space(space, dataset.n_items, max_len))
    net.load_state_dict(torch.load(run / "supernet.pt", weights_only=True, map_location="cpu"))
    ctx = SearchContext(supernet=net, space=space, search_train=splits.search_train, arch_valid=splits.arch_valid,
                        n_items=dataset.n_items, max_len=max_len, budget_flops=search["budget_flops"], epochs=1,
                        batch_size=search["batch_size"], lr=search["lr"], seed=search["seed"], flops=lambda a: 0,
                        all_windows=False)
    last = json.loads((run / "trace.json").read_text())["epochs"][-1]["weights"]
    logits = ArchLogits(space)
    with torch.no_grad():  # log-weights are logits of the same softmax
        for name in ("hidden", "depth", "attention"):
            getattr(logits, name).copy_(torch.tensor([math.log(v) for v in last[name].values()]))
        logits.inner.copy_(torch.tensor([[math.log(v) for v in row.values()] for row in last["inner"]]))
    return ctx, logits


def path_losses(ctx: SearchContext) -> None:
    space, net = ctx.space, ctx.supernet
    net.eval()
    batches = list(ctx.arch_valid_batches())
    rows = sum(len(y) for _, y in batches)
    for depth, hidden in PATHS:
        if depth not in space.depths or hidden not in space.hiddens:
            continue
        losses = {}
        for kind in space.attentions:
            arch = Arch(depth, hidden, (space.inner_widths(hidden)[0],) * depth, space.embedding_widths(hidden)[0],
                        space.heads[0], kind)
            with torch.no_grad():
                losses[kind] = sum(float(mixture_last_loss(net, space, x, y, path_weights(space, arch))) * len(y)
                                   for x, y in batches) / rows
        print(f"path L{depth} h{hidden}: arch-valid loss " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items()),
              flush=True)


def gradients(ctx: SearchContext, logits: ArchLogits, estimator: str, steps: int, seed: int) -> None:
    torch.manual_seed(seed)
    strategy = Proxyless({"estimator": estimator, "lam": 0.0})
    strategy._inner_per_block = ctx.space.inner_per_block  # what search() sets
    ctx.supernet.train()  # as in the search loop (the gate estimator's forward has dropout on)
    batches = ctx.arch_batches(0)
    sums = {n: torch.zeros_like(getattr(logits, n)) for n in ("attention", "hidden", "depth")}
    squares = torch.zeros_like(logits.attention)
    for _ in range(steps):
        x, y = next(batches)
        logits.zero_grad()
        ctx.supernet.zero_grad(set_to_none=True)
        loss, _ = strategy.arch_loss(ctx, logits, 1, x, y)
        loss.backward()
        for name in sums:
            sums[name] += getattr(logits, name).grad
        squares += logits.attention.grad**2
    mean = {n: t / steps for n, t in sums.items()}
    se = ((squares / steps - mean["attention"] ** 2) / steps).sqrt()

    def fmt(name: str, labels: tuple) -> str:
        return " ".join(f"{k}:{v:+.5f}" for k, v in zip(labels, mean[name].tolist(), strict=True))

    space = ctx.space
    print(f"{estimator:>9}: attention {fmt('attention', space.attentions)} (se {se[0]:.5f}) | "
          f"hidden {fmt('hidden', space.hiddens)} | depth {fmt('depth', space.depths)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    ctx, logits = load(args.run)
    print(f"{args.run}: weights of the last search epoch: "
          + json.dumps({n: [round(v, 3) for v in torch.softmax(getattr(logits, n).detach(), -1).tolist()]
                        for n in ("attention", "hidden", "depth")}))
    path_losses(ctx)
    for estimator in ("gate", "pair_loss"):
        gradients(ctx, logits, estimator, args.steps, args.seed)


if __name__ == "__main__":
    main()
