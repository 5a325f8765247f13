"""The pipeline every strategy shares:

    load data -> splits -> supernet from the space -> strategy.search -> derived arch
      -> budget guarantee -> retrain (inherited weights, or from scratch) -> test once -> cost -> result.json

Each finished stage is written to the output directory before the next starts, so `--resume`
continues from the last one (and from the last epoch inside the search and the retrain).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from nasrec import cost as cost_mod
from nasrec.api import (
    DataOptions,
    StageClock,
    check_sampled_protocols,
    data_summary,
    evaluated_arch,
    resolve_max_len,
    write_json,
    write_test_ranks,
)
from nasrec.arch import Arch, SearchSpace, get_space
from nasrec.budget import MAX_PROJECTION_ARCHS, PROJECTION_FILL, enforce_budget, space_archs
from nasrec.data import leave_one_out
from nasrec.device import resolve_device
from nasrec.errors import ConfigError
from nasrec.models import ElasticSASRec, ModelDims, export, save_model
from nasrec.strategies.base import SearchContext, SearchResult, Strategy, create_strategy
from nasrec.train import EpochLog, TrainConfig, TrainState, train_arch


@dataclass(frozen=True)
class SearchConfig:
    strategy: str
    budget_flops: float
    space: str = "tiny"
    params: dict[str, Any] = field(default_factory=dict)  # the strategy's hyper-parameters (--set)
    max_len: int | None = None
    search_epochs: int = 10
    retrain_epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-3
    patience: int = 10
    min_epochs: int = 0  # retraining: patience may not stop it before this epoch
    seed: int = 0
    retrain_from_scratch: bool = False
    exclude_history: bool = False
    all_windows: bool = True  # long histories contribute every max_len window (search and retrain)
    window_stride: int | None = None  # overlapping windows (see nasrec.data.training_windows)
    device: str = "auto"  # auto (CUDA when torch sees one), cpu, cuda, cuda:N; a resumed run may change it
    projection_fill: float = PROJECTION_FILL  # budget guarantee: least FLOPs share of the budget to keep

    def __post_init__(self) -> None:
        # Checked here, not when the retrain starts: after the search would be too late.
        if not 0.0 <= self.projection_fill <= 1.0:
            raise ConfigError("projection_fill (--projection-fill) must be between 0 and 1, "
                              f"got {self.projection_fill}")
        if not 0 <= self.min_epochs <= self.retrain_epochs:
            raise ConfigError(f"min_epochs (--min-epochs) must be between 0 and retrain_epochs (--retrain-epochs, "
                              f"{self.retrain_epochs}), got {self.min_epochs}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BudgetCheck:
    min_flops: int
    max_flops: int
    unconstrained: bool  # the budget is above the largest arch


def check_budget(space: SearchSpace, budget: float, n_items: int, max_len: int, gates: int = 0) -> BudgetCheck:
    """Fail before any training if no arch fits; note when the budget constrains nothing.
    `gates`: the data-aware gates every arch of the strategy carries (they cost FLOPs too)."""
    if not (budget > 0 and math.isfinite(budget)):
        raise ConfigError(f"--budget-flops must be a positive finite number, got {budget:g}")
    rng = cost_mod.flops_range(space, n_items, max_len, gates)
    if budget < rng.min_flops:
        raise ConfigError(f"--budget-flops {budget:.4g} is below the smallest arch of space {space.name!r}: "
                          f"{rng.min_flops:,} FLOPs ({rng.min_arch.label}) at max_len {max_len} with "
                          f"{n_items:,} items")
    return BudgetCheck(rng.min_flops, rng.max_flops, budget >= rng.max_flops)


def _stage(out: Path, name: str) -> Path:
    return out / f"{name}.json"


def run_search(data: DataOptions | str, config: SearchConfig, out: str | Path = "runs/search", *,
               resume: bool = False,
               on_stage: Callable[[str, dict[str, Any]], None] | None = None,
               on_search_epoch: Callable[[int, dict[str, Any]], None] | None = None,
               on_retrain_epoch: Callable[[EpochLog, TrainState], None] | None = None) -> dict[str, Any]:
    """One architecture search end to end; returns (and writes) `out/result.json`."""
    data_opts = DataOptions(source=data) if isinstance(data, str) else data
    out = Path(out)
    notify = on_stage or (lambda _name, _info: None)
    # Everything checkable without data, before anything is loaded or trained.
    strategy: Strategy = create_strategy(config.strategy, config.params)
    space = get_space(config.space)
    max_len = resolve_max_len(space, config.max_len)
    strategy.check_space(space)
    device = resolve_device(config.device)
    run_config = {"data": data_opts.__dict__, "search": config.to_dict()}
    if resume:
        if not _stage(out, "config").is_file():
            raise ConfigError(f"--resume: {out} holds no earlier `nasrec search` run (no config.json)")
        changed = _resume_differences(json.loads(_stage(out, "config").read_text()), run_config)
        if changed:
            raise ConfigError(f"--resume: {out} was started with other {', '.join(changed)}; "
                              "use the same options or another --out")

    dataset = data_opts.load()
    run_config["data_fingerprint"] = dataset.fingerprint
    if resume and json.loads(_stage(out, "config").read_text()).get("data_fingerprint") != dataset.fingerprint:
        raise ConfigError(f"--resume: the data changed since {out} was started (fingerprint differs)")
    dims = strategy.supernet_dims(ModelDims.for_space(space, dataset.n_items, max_len))
    budget = check_budget(space, config.budget_flops, dataset.n_items, max_len, dims.gates)
    if budget.unconstrained:
        warnings.warn(f"--budget-flops {config.budget_flops:.4g} is above the largest arch of {space.name!r} "
                      f"({budget.max_flops:,} FLOPs): it does not constrain the search", stacklevel=2)
    splits = leave_one_out(dataset, seed=config.seed)
    check_sampled_protocols(splits)
    out.mkdir(parents=True, exist_ok=True)
    write_json(_stage(out, "config"), run_config)
    notify("data", {"data": data_summary(dataset), "budget": asdict(budget), "max_len": max_len})

    def flops(arch: Arch) -> int:
        return cost_mod.flops(arch, dataset.n_items, max_len)

    torch.manual_seed(config.seed)
    supernet = ElasticSASRec(dims).to(device)
    clock = StageClock(out, resume)  # search and retrain seconds across --resume
    supernet_file = out / "supernet.pt"
    search_done = _stage(out, "search")
    if resume and search_done.is_file():
        if not supernet_file.is_file():
            raise ConfigError(f"--resume: {search_done} records a finished search but {supernet_file} is missing "
                              "(copied without it?); restore it, or delete search.json to search again")
        done = json.loads(search_done.read_text())
        supernet.load_state_dict(torch.load(supernet_file, weights_only=True, map_location=device))
        derived, trace, search_seconds = Arch.from_dict(done["derived"]), done["trace"], done["seconds"]
        preference = None if done["preference"] is None else table_preference(done["preference"])
        extra = done.get("extra", {})
    else:
        def search_epoch_done(epoch: int, row: dict[str, Any]) -> None:
            clock.tick()
            if on_search_epoch is not None:
                on_search_epoch(epoch, row)

        ctx = SearchContext(supernet=supernet, space=space, search_train=splits.search_train,
                            arch_valid=splits.arch_valid, n_items=dataset.n_items, max_len=max_len,
                            budget_flops=config.budget_flops, epochs=config.search_epochs,
                            batch_size=config.batch_size, lr=config.lr, seed=config.seed, flops=flops,
                            checkpoint=out / "search_checkpoint.pt", on_epoch=search_epoch_done,
                            resume=resume, all_windows=config.all_windows, window_stride=config.window_stride,
                            projection_fill=config.projection_fill)
        notify("search", {"strategy": strategy.name, "params": strategy.params, "steps": strategy.progress_steps(ctx)})
        clock.start("search")
        result: SearchResult = strategy.search(ctx)
        search_seconds = clock.tick()
        supernet.input_observer = None
        derived, trace, extra = result.arch, result.trace, result.extra
        preference = result.preference
        # Record the preference over the whole space so a resumed run projects identically.
        feasible = [] if preference is None else _feasible(space, flops, config, derived.gates)
        table = None if preference is None else {a.to_json(): preference(a) for a in feasible}
        torch.save(supernet.state_dict(), supernet_file)
        write_json(search_done, {"derived": derived.to_dict(), "trace": trace, "seconds": search_seconds,
                                 "preference": table, "extra": extra})
        if table is not None:
            preference = table_preference(table)
    write_json(out / "trace.json", {"strategy": strategy.name, "params": strategy.params, "epochs": trace})

    chosen, projection = enforce_budget(derived, space, config.budget_flops, flops, preference,
                                        config.projection_fill)
    notify("derived", {"arch": chosen, "projection": projection, "flops": flops(chosen)})

    train_config = TrainConfig(epochs=config.retrain_epochs, batch_size=config.batch_size, lr=config.lr,
                               patience=config.patience, min_epochs=config.min_epochs, seed=config.seed,
                               exclude_history=config.exclude_history,
                               all_windows=config.all_windows, window_stride=config.window_stride)
    inherit = strategy.trains_supernet and not config.retrain_from_scratch
    if inherit:
        model = export(supernet, chosen)
    else:
        torch.manual_seed(config.seed)
        model = ElasticSASRec(supernet.dims.for_arch(chosen)).to(device)
    notify("retrain", {"inherit": inherit})
    clock.start("retrain")

    def retrain_epoch_done(log: EpochLog, state: TrainState) -> None:
        clock.tick()
        if on_retrain_epoch is not None:
            on_retrain_epoch(log, state)

    state = train_arch(model, chosen, splits.train, splits.valid, dataset.n_items, max_len, train_config,
                       checkpoint=out / "retrain_checkpoint.pt", resume=resume, on_epoch=retrain_epoch_done)
    retrain_seconds = clock.tick()

    result_json, test_ranks = evaluated_arch(model, chosen, space.name, splits, max_len, train_config, state)
    curve = {k: result_json.pop(k) for k in ("epochs_run", "best_epoch", "stopped_by", "history")}
    result_json.update({
        "strategy": strategy.name,
        "strategy_params": strategy.params,
        "budget_flops": config.budget_flops,
        "budget_unconstrained": budget.unconstrained,
        "projected": projection["projected"],
        "projection": projection,
        "search_seconds": search_seconds,
        "retrain_seconds": retrain_seconds,
        "retrain": {"inherited_weights": inherit, **curve},
        "search_extra": extra,
    })
    save_model(model, out / "model")
    write_test_ranks(out, test_ranks, result_json)
    write_json(out / "result.json", result_json)
    return result_json


def _feasible(space: SearchSpace, flops: Callable[[Arch], int], config: SearchConfig, gates: int) -> list[Arch]:
    if len(space) > MAX_PROJECTION_ARCHS:
        return []
    return [a for a in space_archs(space, gates) if flops(a) <= config.budget_flops]


def _resume_differences(earlier: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The options (`search.patience`, `data.source`, ...) a resumed run would change. The device may change
    (resume a CPU run on a GPU); options added to nasrec since the run started count at their defaults."""
    defaults = {f.name: f.default for f in fields(SearchConfig) if f.default is not MISSING}
    before = {"data": earlier.get("data", {}), "search": {**defaults, **earlier.get("search", {})}}
    changed = []
    for section in ("data", "search"):
        old, new = before[section], now[section]
        for key in sorted((set(old) | set(new)) - {"device"}):
            if json.dumps(old.get(key), sort_keys=True) != json.dumps(new.get(key), sort_keys=True):
                changed.append(f"{section}.{key}")
    return changed


def table_preference(table: dict[str, float]) -> Callable[[Arch], float]:
    """The preference saved in search.json (arch JSON -> score) as a function; archs not in it: -inf."""
    return lambda arch: table.get(arch.to_json(), float("-inf"))
