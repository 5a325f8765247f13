"""Optuna: black-box multi-objective search over the space, the baseline for the one-shot strategies.

An Optuna study with the NSGA-II sampler proposes archs directly from the space's choices (hidden width,
embedding, heads, attention kind, depth, the inner width of each block); each proposal within the FLOPs
budget is trained briefly from scratch as its own dense model and scored on the arch-validation rows,
exactly as the `random` strategy does. Objectives: arch-valid NDCG@10 up, FLOPs down.

Only archs within the budget are trained: an over-budget proposal is told to the study as infeasible
(constrained NSGA-II: its constraint is `flops - budget > 0`) without training, and a proposal of an arch
already trained is told its earlier scores; neither counts as a candidate. If the sampler keeps proposing
such archs (`MAX_ASKS_PER_CANDIDATE` proposals per candidate), the remaining candidates are a seeded
uniform sample of the untried archs within the budget. The derived arch is the feasible candidate with
the best arch-valid NDCG@10 (ties: fewer FLOPs, then the canonical JSON). No weight sharing: the
supernet is not trained, so the pipeline retrains the chosen arch from scratch.

A checkpoint (the study, the trace and the counters) is written after every candidate, so `--resume`
neither retrains finished candidates nor changes what the sampler proposes next.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from nasrec.arch import Arch, SearchSpace
from nasrec.errors import ConfigError, DataError
from nasrec.strategies.base import HyperParam, SearchContext, SearchResult, register_strategy
from nasrec.strategies.random_search import SELECTION_METRIC, RandomSearch

MAX_ASKS_PER_CANDIDATE = 20  # proposals (over budget or already trained) tolerated per candidate
CONSTRAINT = "flops_over_budget"  # Optuna 5 trial constraint: feasible when <= 0


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna logs every study and trial at INFO; keep the CLI output to nasrec's own lines."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def arch_params(space: SearchSpace, arch: Arch) -> dict[str, Any]:
    """The study parameters that `sample_arch` turns into `arch` (for enqueueing a known arch)."""
    params: dict[str, Any] = {}
    if len(space.hiddens) > 1:
        params["hidden"] = arch.hidden
    if len(space.embedding_widths(arch.hidden)) > 1:
        params[f"embedding@{arch.hidden}"] = arch.embedding
    if len(space.heads) > 1:
        params["heads"] = arch.heads
    if len(space.attentions) > 1:
        params["attention"] = arch.attention
    if len(space.depths) > 1:
        params["depth"] = arch.depth
    if len(space.inner_widths(arch.hidden)) > 1:
        if space.inner_per_block:
            params.update({f"inner{i}@{arch.hidden}": w for i, w in enumerate(arch.inner)})
        else:
            params[f"inner@{arch.hidden}"] = arch.inner[0]
    return params


def sample_arch(trial: Any, space: SearchSpace) -> Arch:
    """One arch of `space` from an Optuna trial (define-by-run; a choice with one option is not asked).

    Widths that depend on the hidden width are separate parameters per hidden width (`inner0@32`), so
    every parameter keeps one fixed set of choices, as Optuna requires."""

    def choose(name: str, options: tuple[Any, ...]) -> Any:
        return options[0] if len(options) == 1 else trial.suggest_categorical(name, list(options))

    hidden = choose("hidden", space.hiddens)
    embedding = choose(f"embedding@{hidden}", space.embedding_widths(hidden))
    heads = choose("heads", space.heads)
    attention = choose("attention", space.attentions)
    depth = choose("depth", space.depths)
    widths = space.inner_widths(hidden)
    if space.inner_per_block:
        inner = tuple(choose(f"inner{i}@{hidden}", widths) for i in range(depth))
    else:
        inner = (choose(f"inner@{hidden}", widths),) * depth
    return space.validate(Arch(depth, hidden, inner, embedding, heads, attention))


def pareto_indices(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the (quality up, cost down) points no other point dominates."""
    front = []
    for i, (q, c) in enumerate(points):
        dominated = any((q2 >= q and c2 <= c) and (q2 > q or c2 < c) for j, (q2, c2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


@register_strategy
class OptunaSearch(RandomSearch):
    """Shares the candidate training and scoring of `random`; only the proposals differ."""

    name = "optuna"
    summary = (
        "NSGA-II (Optuna) over the space's choices, arch-valid NDCG@10 up and FLOPs down; each "
        "proposal within the budget trained briefly from scratch, best arch-valid NDCG@10 wins"
    )
    hyperparams: ClassVar[tuple[HyperParam, ...]] = (
        HyperParam("n_trials", "int", 8, 1, 1000, help="archs within the budget trained and scored", tunable=False),
        HyperParam(
            "epochs_per_candidate",
            "int",
            1,
            1,
            100,
            help="training epochs of each candidate on the search-train windows",
            tunable=False,
        ),
        HyperParam(
            "population_size", "int", 8, 2, 1000, help="NSGA-II population (the first one is random)", tunable=False
        ),
    )
    trains_supernet = False

    def progress_steps(self, ctx: SearchContext) -> int:
        return min(self.params["n_trials"], len(self._feasible(ctx)))

    def _feasible(self, ctx: SearchContext) -> list[Arch]:
        feasible = sorted((a for a in ctx.space if ctx.flops(a) <= ctx.budget_flops), key=Arch.to_json)
        if not feasible:  # the pipeline checks the budget first; this guards direct use
            raise ConfigError(
                f"strategy 'optuna': no arch of space {ctx.space.name!r} is within the "
                f"budget of {ctx.budget_flops:.4g} FLOPs"
            )
        return feasible

    def candidates(self, ctx: SearchContext) -> list[Arch]:  # `random`'s sampling does not apply
        raise NotImplementedError("strategy 'optuna' proposes archs with its study; see search()")

    def _new_study(self, seed: int) -> Any:
        import optuna

        from nasrec.optuna_samplers import nsga2_sampler

        # Constrained NSGA-II reads each trial's constraints (`Trial.set_constraint`, Optuna >= 5); the
        # study is pickled into every checkpoint, hence the picklable sampler.
        sampler = nsga2_sampler(population_size=self.params["population_size"], seed=seed)
        return optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)

    def search(self, ctx: SearchContext) -> SearchResult:
        with quiet_optuna():
            return self._search(ctx)

    def _search(self, ctx: SearchContext) -> SearchResult:
        if len(ctx.arch_valid) == 0:
            raise DataError(
                "strategy 'optuna': no arch-validation rows (every user history is too short "
                "to hold one item out of training)"
            )
        feasible = self._feasible(ctx)
        target = min(self.params["n_trials"], len(feasible))
        signature = {"budget": ctx.budget_flops, "space": ctx.space.name, "seed": ctx.seed, "params": self.params}
        trace: list[dict[str, Any]] = []
        counters = {"proposals": 0, "over_budget": 0, "repeated": 0, "filled": 0}
        study = None
        saved = ctx.load_state()
        if saved is not None:
            _, state = saved
            if state.get("signature") != signature:
                raise ConfigError(
                    "--resume: the checkpointed optuna search was run with other options; "
                    "use the same options or another --out"
                )
            study, trace, counters = pickle.loads(state["study"]), list(state["trace"]), dict(state["counters"])
        if study is None:
            study = self._new_study(ctx.seed)

        scores = {Arch.from_dict(r["arch"]).to_json(): r for r in trace}
        max_proposals = MAX_ASKS_PER_CANDIDATE * target
        rng = np.random.default_rng(ctx.seed + 7_919)
        while len(trace) < target:
            if counters["proposals"] >= max_proposals:  # the sampler is stuck outside the budget: fill up
                untried = [a for a in feasible if a.to_json() not in scores]
                pick = untried[int(rng.integers(len(untried)))]
                study.enqueue_trial(arch_params(ctx.space, pick))
                counters["filled"] += 1
            trial = study.ask()
            arch = sample_arch(trial, ctx.space)
            counters["proposals"] += 1
            flops = int(ctx.flops(arch))
            trial.set_constraint(CONSTRAINT, float(flops - ctx.budget_flops))
            trial.set_user_attr("arch", arch.to_json())
            key = arch.to_json()
            if flops > ctx.budget_flops:
                counters["over_budget"] += 1
                study.tell(trial, [0.0, float(flops)])
                continue
            if key in scores:
                counters["repeated"] += 1
                study.tell(trial, [scores[key][SELECTION_METRIC], float(flops)])
                continue
            row = self.evaluate_candidate(ctx, arch, len(trace))
            row["optuna_trial"] = trial.number
            study.tell(trial, [row[SELECTION_METRIC], float(flops)])
            trace.append(row)
            scores[key] = row
            ctx.save_state(
                len(trace), {"signature": signature, "study": pickle.dumps(study), "trace": trace, "counters": counters}
            )
            if ctx.on_epoch is not None:
                ctx.on_epoch(len(trace), row)

        best = max(trace, key=lambda r: (r[SELECTION_METRIC], -r["flops"], Arch.from_dict(r["arch"]).to_json()))
        front = pareto_indices([(r[SELECTION_METRIC], r["flops"]) for r in trace])
        preference = {k: float(r[SELECTION_METRIC]) for k, r in scores.items()}
        return SearchResult(
            arch=Arch.from_dict(best["arch"]),
            preference=lambda a: preference.get(a.to_json(), float("-inf")),
            trace=trace,
            extra={
                "evaluated": len(trace),
                "best_" + SELECTION_METRIC: best[SELECTION_METRIC],
                "front": [trace[i]["candidate"] for i in sorted(front)],
                "sampler": "NSGA-II",
                **counters,
            },
        )
