"""Random search: the floor every differentiable strategy must beat.

Sample `n_candidates` distinct archs uniformly among those of the space within the FLOPs budget,
train each briefly from scratch as its own dense model on the search-train windows, score it on the
arch-validation rows (full-ranking NDCG@10) and keep the best. No weight sharing: the supernet is not
trained, so the pipeline retrains the chosen arch from scratch.

A checkpoint is written after every candidate, so `--resume` does not retrain finished candidates.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import torch

from nasrec.arch import Arch, SearchSpace
from nasrec.errors import ConfigError, DataError
from nasrec.metrics import full_ranking_ranks, metrics_from_ranks
from nasrec.models.sasrec import ElasticSASRec
from nasrec.strategies.base import HyperParam, SearchContext, SearchResult, Strategy, register_strategy

MAX_ENUMERATED_ARCHS = 500_000  # the space is enumerated to find the archs within the budget
SELECTION_METRIC = "ndcg@10"


@register_strategy
class RandomSearch(Strategy):
    name = "random"
    summary = ("uniform sample of archs within the budget, each trained briefly from scratch, "
               "best arch-valid NDCG@10 wins")
    hyperparams: ClassVar[tuple[HyperParam, ...]] = (
        HyperParam("n_candidates", "int", 8, 1, 1000, help="distinct archs sampled within the budget", tunable=False),
        HyperParam("epochs_per_candidate", "int", 1, 1, 100,
                   help="training epochs of each candidate on the search-train windows", tunable=False),
    )
    trains_supernet = False

    def progress_steps(self, ctx: SearchContext) -> int:
        return len(self.candidates(ctx))

    def check_space(self, space: SearchSpace) -> None:
        if len(space) > MAX_ENUMERATED_ARCHS:
            raise ConfigError(f"strategy 'random': space {space.name!r} has {len(space):,} archs, more than "
                              f"the {MAX_ENUMERATED_ARCHS:,} it can enumerate")

    # -- sampling ----------------------------------------------------------------------------------
    def candidates(self, ctx: SearchContext) -> list[Arch]:
        """The archs to evaluate, in evaluation order: a seeded uniform sample without replacement
        of the archs within the budget (all of them when fewer than `n_candidates` fit)."""
        feasible = sorted((a for a in ctx.space if ctx.flops(a) <= ctx.budget_flops), key=Arch.to_json)
        if not feasible:  # the pipeline checks the budget first; this guards direct use
            raise ConfigError(f"strategy 'random': no arch of space {ctx.space.name!r} is within the "
                              f"budget of {ctx.budget_flops:.4g} FLOPs")
        n = min(self.params["n_candidates"], len(feasible))
        picked = np.random.default_rng(ctx.seed).choice(len(feasible), size=n, replace=False)
        return [feasible[i] for i in picked.tolist()]

    # -- one candidate -----------------------------------------------------------------------------
    def evaluate_candidate(self, ctx: SearchContext, arch: Arch, index: int) -> dict[str, Any]:
        """Train `arch` from scratch on search-train windows, score it on arch-valid rows."""
        from nasrec.train import train_step

        start = time.perf_counter()
        # Each candidate's init, dropout and batches depend on (seed, index) only, so a resumed
        # search trains the remaining candidates exactly as an uninterrupted one would.
        torch.manual_seed(ctx.seed * 1_000_003 + index)
        model = ElasticSASRec(ctx.supernet.dims.for_arch(arch)).to(ctx.device)
        model.input_observer = ctx.source.saw  # the split checks hold for random too
        optimizer = torch.optim.Adam(model.parameters(), lr=ctx.lr)
        losses: list[float] = []
        model.train()
        for epoch in range(self.params["epochs_per_candidate"]):
            for step, (x, y) in enumerate(ctx.train_batches(epoch)):
                where = f"candidate {index + 1}, epoch {epoch + 1}, step {step + 1}"
                losses.append(train_step(model, x, y, arch, optimizer, where,
                                         step=lambda: ctx.step(optimizer, "weights")))
        score = arch_valid_ndcg(ctx, model)
        return {
            "candidate": index + 1,
            "arch": arch.to_dict(),
            "flops": int(ctx.flops(arch)),
            SELECTION_METRIC: score,
            "weight_loss": sum(losses) / len(losses) if losses else None,
            "seconds": time.perf_counter() - start,
        }

    # -- the search ----------------------------------------------------------------------------------
    def search(self, ctx: SearchContext) -> SearchResult:
        if len(ctx.arch_valid) == 0:
            raise DataError("strategy 'random': no arch-validation rows (every user history is too short "
                            "to hold one item out of training)")
        archs = self.candidates(ctx)
        order = [a.to_json() for a in archs]
        trace: list[dict[str, Any]] = []
        saved = ctx.load_state()
        if saved is not None:
            _, state = saved
            if state.get("order") != order:
                raise ConfigError("--resume: the checkpointed random search sampled other candidates; "
                                  "use the same options or another --out")
            trace = list(state["trace"])

        for index in range(len(trace), len(archs)):
            row = self.evaluate_candidate(ctx, archs[index], index)
            trace.append(row)
            ctx.save_state(index + 1, {"order": order, "trace": trace})
            if ctx.on_epoch is not None:
                ctx.on_epoch(index + 1, row)

        scores = {Arch.from_dict(r["arch"]).to_json(): float(r[SELECTION_METRIC]) for r in trace}
        # Best arch-valid NDCG@10; at equal accuracy the cheaper arch, then the canonical JSON order.
        best = max(trace, key=lambda r: (r[SELECTION_METRIC], -r["flops"], Arch.from_dict(r["arch"]).to_json()))
        return SearchResult(arch=Arch.from_dict(best["arch"]),
                            preference=lambda a: scores.get(a.to_json(), float("-inf")), trace=trace,
                            extra={"evaluated": len(trace), "best_" + SELECTION_METRIC: best[SELECTION_METRIC]})


def arch_valid_ndcg(ctx: SearchContext, model: ElasticSASRec) -> float:
    """Full-ranking NDCG@10 of `model` (its whole arch) on the arch-validation rows."""
    was_training = model.training
    model.eval()
    ranks = []
    with torch.no_grad():
        for x, y in ctx.arch_valid_batches():
            ranks.append(full_ranking_ranks(model.score_last(x), y))
    model.train(was_training)
    return metrics_from_ranks(torch.cat(ranks), ks=(10,))[SELECTION_METRIC]
