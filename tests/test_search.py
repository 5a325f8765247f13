"""The search pipeline (`nasrec.search.run_search`) with every registered strategy, on tiny data.

Strategies added later (one module under nasrec/strategies/) are covered automatically: the tests
parametrize over `list_strategies()`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nasrec import cost
from nasrec.api import TEST_RANKS_FILE, DataOptions
from nasrec.arch import Arch, get_space
from nasrec.data import EvalSet, Splits, SyntheticConfig, generate_synthetic, leave_one_out
from nasrec.errors import ConfigError
from nasrec.metrics import metrics_from_ranks
from nasrec.models import ElasticSASRec, ModelDims
from nasrec.search import PROJECTION_FILL, SearchConfig, check_budget, enforce_budget, run_search
from nasrec.strategies._differentiable import DifferentiableStrategy
from nasrec.strategies.base import SearchContext, create_strategy, get_strategy, list_strategies

SPACE = "tiny"
MAX_LEN = 12
STRATEGIES = sorted(list_strategies())
# Cheaper than the defaults where a strategy's cost scales with a hyper-parameter.
FAST_PARAMS: dict[str, dict[str, Any]] = {"random": {"n_candidates": 3}, "optuna": {"n_trials": 3}}


def write_lines(path: Path, seed: int = 0) -> Path:
    """A small synthetic dataset in the `lines` format (`user i1 i2 ...`)."""
    # 200 items: the sampled protocols need 100 negatives outside every history.
    data = generate_synthetic(SyntheticConfig(n_users=200, n_items=200, mean_len=12, seed=seed))
    path.write_text("".join(f"{u} {' '.join(map(str, s.tolist()))}\n"
                            for u, s in zip(data.user_ids, data.sequences, strict=True)))
    return path


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> str:
    return str(write_lines(tmp_path_factory.mktemp("data") / "tiny.txt"))


@pytest.fixture(scope="module")
def dataset(data_file):
    return DataOptions(source=data_file).load()


@pytest.fixture(scope="module")
def flops_range(dataset):
    b = check_budget(get_space(SPACE), 1.0e12, dataset.n_items, MAX_LEN)
    return b.min_flops, b.max_flops


def budget_at(flops_range, fraction: float) -> float:
    lo, hi = flops_range
    return lo + fraction * (hi - lo)


def config(strategy: str, budget: float, **kw: Any) -> SearchConfig:
    base: dict[str, Any] = dict(strategy=strategy, budget_flops=budget, space=SPACE,
                                params=FAST_PARAMS.get(strategy, {}), max_len=MAX_LEN, search_epochs=2,
                                retrain_epochs=1, batch_size=64, seed=0)
    return SearchConfig(**{**base, **kw})


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


# --- every strategy, end to end -------------------------------------------------------------------

# 1 seed x 2 budgets + 1 budget x 2 seeds.
CASES = [(0, 0.4), (0, 0.7), (1, 0.4)]


@pytest.mark.parametrize("seed,fraction", CASES, ids=[f"seed{s}-budget{f}" for s, f in CASES])
@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_end_to_end_within_budget(name, seed, fraction, data_file, dataset, flops_range, tmp_path):
    budget = budget_at(flops_range, fraction)
    out = tmp_path / "run"
    stages: list[str] = []
    result = run_search(data_file, config(name, budget, seed=seed), out, on_stage=lambda s, _i: stages.append(s))

    assert stages == ["data", "search", "derived", "retrain"]
    on_disk = read_json(out / "result.json")
    assert on_disk == json.loads(json.dumps(result))
    arch = get_space(SPACE).validate(Arch.from_dict(on_disk["arch"]))
    assert on_disk["flops"] == cost.flops(arch, dataset.n_items, MAX_LEN) <= budget
    assert on_disk["counted_flops"] == on_disk["flops"]
    assert on_disk["params"] > 0
    assert on_disk["latency_ms"]
    assert 0.0 <= on_disk["metrics"]["valid"]["full"]["ndcg@10"] <= 1.0
    for protocol in ("full", "uni100", "pop100"):
        assert 0.0 <= on_disk["metrics"]["test"][protocol]["ndcg@10"] <= 1.0
    ranks = read_json(out / TEST_RANKS_FILE)["ranks"]  # what `nasrec compare` reads when the model is not there
    assert metrics_from_ranks(torch.tensor(ranks)) == pytest.approx(on_disk["metrics"]["test"]["full"], abs=1e-12)
    assert on_disk["strategy"] == name
    assert on_disk["strategy_params"] == create_strategy(name, FAST_PARAMS.get(name, {})).params
    assert on_disk["budget_flops"] == budget
    assert on_disk["search_seconds"] >= 0 and on_disk["retrain_seconds"] >= 0
    assert isinstance(on_disk["projected"], bool)
    assert on_disk["projection"]["projected"] == on_disk["projected"]
    assert on_disk["seed"] == seed
    assert on_disk["retrain"]["inherited_weights"] == get_strategy(name).trains_supernet

    trace = read_json(out / "trace.json")
    assert trace["strategy"] == name and isinstance(trace["epochs"], list) and trace["epochs"]


# --- a strategy run directly on a SearchContext built like run_search builds it --------------------


def search_context(splits: Splits, budget: float, seed: int, strategy: Any = None) -> SearchContext:
    space = get_space(SPACE)
    n_items = splits.data.n_items
    torch.manual_seed(seed)
    dims = ModelDims.for_space(space, n_items, MAX_LEN)
    supernet = ElasticSASRec(dims if strategy is None else strategy.supernet_dims(dims))
    return SearchContext(supernet=supernet, space=space, search_train=splits.search_train,
                         arch_valid=splits.arch_valid, n_items=n_items, max_len=MAX_LEN, budget_flops=budget,
                         epochs=2, batch_size=64, lr=1e-3, seed=seed,
                         flops=lambda a: cost.flops(a, n_items, MAX_LEN))


def strip_times(value: Any) -> Any:
    """A trace without its wall-clock fields."""
    if isinstance(value, dict):
        return {k: strip_times(v) for k, v in value.items() if "second" not in k and not k.endswith("time")}
    if isinstance(value, list):
        return [strip_times(v) for v in value]
    return value


_SEARCHES: dict[str, list[tuple[SearchContext, Any]]] = {}


@pytest.fixture(scope="module")
def searched(dataset, flops_range):
    """Each strategy searched twice with the same seed (cached per module)."""
    splits = leave_one_out(dataset, seed=0)
    budget = budget_at(flops_range, 0.5)

    def get(name: str) -> list[tuple[SearchContext, Any]]:
        if name not in _SEARCHES:
            runs = []
            for _ in range(2):
                strategy = create_strategy(name, FAST_PARAMS.get(name, {}))
                ctx = search_context(splits, budget, seed=0, strategy=strategy)
                runs.append((ctx, strategy.search(ctx)))
            _SEARCHES[name] = runs
        return _SEARCHES[name]

    get.splits = splits  # type: ignore[attr-defined]
    return get


@pytest.mark.parametrize("name", STRATEGIES)
def test_derivation_is_deterministic_for_a_seed(name, searched):
    (_, first), (_, second) = searched(name)
    assert first.arch == second.arch
    assert json.dumps(strip_times(first.trace), sort_keys=True) == json.dumps(strip_times(second.trace),
                                                                            sort_keys=True)
    space = get_space(SPACE)
    space.validate(first.arch)
    if first.preference is not None:  # the preference is deterministic too
        for arch in list(space)[:8]:
            a, b = first.preference(arch), second.preference(arch)
            assert a == b or (math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("name", STRATEGIES)
def test_search_reads_only_its_splits(name, searched):
    ctx, _ = searched(name)[0]
    steps = set(ctx.source.steps)
    assert steps, "the strategy stepped no optimizer through SearchContext.step"
    # Architecture weights step only on arch-validation rows, network weights only on search-train windows.
    assert steps <= {("arch", "arch_valid"), ("weights", "search_train")}
    params = create_strategy(name, FAST_PARAMS.get(name, {})).params
    if issubclass(get_strategy(name), DifferentiableStrategy) and params.get("warmup_epochs", 0) < ctx.epochs:
        assert steps == {("arch", "arch_valid"), ("weights", "search_train")}  # both levels stepped

    # The context holds no validation or test split: nothing there can read them.
    splits = searched.splits
    names = {f.name for f in dataclasses.fields(SearchContext)}
    assert not names & {"valid", "test", "splits", "train", "data"}
    for f in dataclasses.fields(SearchContext):
        value = getattr(ctx, f.name)
        assert not isinstance(value, Splits)
        assert value is not splits.valid and value is not splits.test
        if isinstance(value, EvalSet):
            assert f.name == "arch_valid"
    assert ctx.arch_valid is splits.arch_valid
    # Arch-valid targets are training items: no user's arch-valid target is their valid or test target
    # position (the arch-valid input is strictly shorter than the training history).
    for i, user in enumerate(ctx.arch_valid.users.tolist()):
        assert len(ctx.arch_valid.inputs[i]) == len(splits.train[user]) - 1
    assert sum(len(s) for s in ctx.search_train) < sum(len(s) for s in splits.train)


# --- the budget guarantee -------------------------------------------------------------------------


def test_budget_below_the_minimum_fails_before_training(data_file, flops_range, tmp_path):
    lo, _ = flops_range
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=f"{lo:,}"):
        run_search(data_file, config("darts", lo * 0.9), out)
    assert not out.exists() or not any(out.iterdir())  # no supernet.pt, no checkpoint, nothing
    with pytest.raises(ConfigError, match="positive"):
        check_budget(get_space(SPACE), 0.0, 200, MAX_LEN)


def test_budget_above_the_maximum_warns_and_runs(data_file, flops_range, tmp_path):
    _, hi = flops_range
    with pytest.warns(UserWarning, match="does not constrain"):
        result = run_search(data_file, config("darts", hi * 2, search_epochs=1), tmp_path / "run")
    assert result["budget_unconstrained"] is True
    assert result["projected"] is False and result["flops"] <= hi


def test_overshooting_derivation_is_projected_onto_the_budget(data_file, flops_range, tmp_path):
    lo, _ = flops_range
    budget = lo * 1.01  # only the smallest archs fit; DARTS (no resource term) derives a bigger one
    result = run_search(data_file, config("darts", budget), tmp_path / "run")
    on_disk = read_json(tmp_path / "run" / "result.json")
    assert on_disk["projected"] is True is result["projected"]
    assert on_disk["projection"]["derived_flops"] > budget
    assert on_disk["flops"] <= budget
    assert on_disk["projection"]["derived"] != on_disk["arch"]
    assert on_disk["projection"]["fill"] == PROJECTION_FILL  # the rule that chose it is recorded


def _projection_case() -> tuple[Any, Any, float, list[Arch], list[Arch]]:
    """The tiny space, its FLOPs, a budget at its median arch, and the feasible and infeasible archs."""
    space = get_space(SPACE)

    def flops(a: Arch) -> int:
        return cost.flops(a, 200, MAX_LEN)

    archs = sorted(space, key=flops)
    budget = flops(archs[len(archs) // 2])
    return space, flops, budget, [a for a in archs if flops(a) <= budget], [a for a in archs if flops(a) > budget]


def test_enforce_budget_takes_the_preferred_feasible_arch():
    space, flops, budget, feasible, infeasible = _projection_case()
    derived = space.max_arch()
    assert flops(derived) > budget

    # fill 0: the preferred feasible arch wins, even over a more preferred infeasible one.
    target = feasible[1]
    scores = {target: 5.0, infeasible[0]: 10.0}
    chosen, info = enforce_budget(derived, space, budget, flops, lambda a: scores.get(a, 0.0), fill=0.0)
    assert chosen == target
    assert info["projected"] is True and info["derived_flops"] == flops(derived)
    assert info["derived"] == derived.to_dict()

    # Ties go to more FLOPs.
    chosen, _ = enforce_budget(derived, space, budget, flops, lambda a: 1.0, fill=0.0)
    assert flops(chosen) == max(flops(a) for a in feasible)
    cheap_pair = {feasible[0], feasible[1]}
    chosen, _ = enforce_budget(derived, space, budget, flops, lambda a: 1.0 if a in cheap_pair else 0.0, fill=0.0)
    assert chosen == max(cheap_pair, key=flops)

    # A derived arch within budget is kept whatever the preference says.
    chosen, info = enforce_budget(feasible[0], space, budget, flops, lambda a: 1.0 if a == target else 0.0)
    assert chosen == feasible[0] and info["projected"] is False

    # No preference: the closest feasible arch to the derived one.
    chosen, info = enforce_budget(derived, space, budget, flops, None)
    assert flops(chosen) <= budget and info["preference"] == "closeness to derived"


def test_enforce_budget_keeps_the_share_of_the_budget_it_is_told():
    space, flops, budget, feasible, _ = _projection_case()
    derived = space.max_arch()
    fill = 0.8
    cheap = [a for a in feasible if flops(a) < fill * budget]
    band = [a for a in feasible if flops(a) >= fill * budget]
    assert cheap and len(band) >= 2, "the tiny space must have archs on both sides of the band"

    # The strategy prefers the cheapest arch most; the projection takes the most preferred arch in the band.
    scores = {cheap[0]: 10.0, band[0]: 5.0}
    chosen, info = enforce_budget(derived, space, budget, flops, lambda a: scores.get(a, 0.0), fill=fill)
    assert chosen == band[0] and flops(chosen) >= fill * budget
    assert info["fill"] == fill and info["fill_band_empty"] is False
    # The rule before the band (fill 0) takes the cheap arch.
    chosen, _ = enforce_budget(derived, space, budget, flops, lambda a: scores.get(a, 0.0), fill=0.0)
    assert chosen == cheap[0]

    # No arch of the band has a finite preference (random scored only some archs): every feasible arch counts.
    scored = {cheap[0]: 0.3, cheap[-1]: 0.5}
    chosen, info = enforce_budget(derived, space, budget, flops, lambda a: scored.get(a, -math.inf), fill=fill)
    assert chosen == cheap[-1] and info["fill_band_empty"] is True

    # A budget between two archs' FLOPs with fill 1: no arch costs exactly the budget, so the band is empty and
    # the most preferred feasible arch is taken.
    assert all(flops(a) != budget + 1 for a in space)
    chosen, info = enforce_budget(derived, space, budget + 1, flops, lambda a: scores.get(a, 0.0), fill=1.0)
    assert info["fill_band_empty"] is True and chosen == cheap[0]


def test_projection_fill_out_of_range_is_refused_before_any_work():
    with pytest.raises(ConfigError, match="projection_fill"):
        SearchConfig(strategy="darts", budget_flops=1e6, projection_fill=1.5)


# --- resume ---------------------------------------------------------------------------------------


class Interrupt(Exception):
    pass


def test_resume_after_an_interrupted_retrain_skips_the_search(data_file, flops_range, tmp_path):
    cfg = config("darts", budget_at(flops_range, 0.5), retrain_epochs=2)
    reference = run_search(data_file, cfg, tmp_path / "reference")

    def stop_after_first(log, _state) -> None:
        if log.epoch == 1:
            raise Interrupt

    out = tmp_path / "run"
    with pytest.raises(Interrupt):
        run_search(data_file, cfg, out, on_retrain_epoch=stop_after_first)
    assert not (out / "result.json").exists()
    assert (out / "search.json").is_file() and (out / "retrain_checkpoint.pt").is_file()

    search_epochs: list[int] = []
    retrain_epochs: list[int] = []
    resumed = run_search(data_file, cfg, out, resume=True, on_search_epoch=lambda e, _r: search_epochs.append(e),
                         on_retrain_epoch=lambda log, _s: retrain_epochs.append(log.epoch))
    assert search_epochs == []  # the search stage was not rerun
    assert retrain_epochs == [2]  # nor the first retrain epoch
    assert resumed["arch"] == reference["arch"]
    assert resumed["projection"] == reference["projection"]
    assert read_json(out / "trace.json")["epochs"] == read_json(tmp_path / "reference" / "trace.json")["epochs"]
    assert [h["loss"] for h in resumed["retrain"]["history"]] == pytest.approx(
        [h["loss"] for h in reference["retrain"]["history"]])

    # Other options -> refused; so is a directory that holds no search.
    with pytest.raises(ConfigError, match=r"other search\.seed;"):
        run_search(data_file, dataclasses.replace(cfg, seed=1), out, resume=True)
    with pytest.raises(ConfigError, match=r"other search\.min_epochs, search\.patience;"):
        run_search(data_file, dataclasses.replace(cfg, patience=3, min_epochs=1), out, resume=True)
    # A run started before an option existed ran with its default: it resumes (here: it is finished).
    saved = read_json(out / "config.json")
    del saved["search"]["min_epochs"]
    (out / "config.json").write_text(json.dumps(saved))
    assert run_search(data_file, cfg, out, resume=True)["arch"] == reference["arch"]
    with pytest.raises(ConfigError, match="min_epochs"):
        config("darts", 1.0, retrain_epochs=2, min_epochs=3)
    with pytest.raises(ConfigError, match="no earlier"):
        run_search(data_file, cfg, tmp_path / "empty", resume=True)
    train_dir = tmp_path / "train-run"
    train_dir.mkdir()
    (train_dir / "config.json").write_text(json.dumps({"data": {}, "space": SPACE, "arch": {}, "train": {}}))
    with pytest.raises(ConfigError, match="resume"):
        run_search(data_file, cfg, train_dir, resume=True)


def test_a_resumed_retrain_reports_the_seconds_of_the_work_it_kept(data_file, flops_range, tmp_path):
    cfg = config("darts", budget_at(flops_range, 0.5), retrain_epochs=3)
    pause = 5.0

    def pause_then_stop(log, _state) -> None:
        if log.epoch == 1:
            time.sleep(pause)  # inside epoch 2 as the clock sees it: its tick comes after this callback
        if log.epoch == 2:
            raise Interrupt

    out = tmp_path / "run"
    with pytest.raises(Interrupt):
        run_search(data_file, cfg, out, on_retrain_epoch=pause_then_stop)
    before = read_json(out / "seconds.json")
    assert before["retrain"] >= pause and before["search"] > 0
    resumed = run_search(data_file, cfg, out, resume=True)
    assert resumed["retrain"]["epochs_run"] == 3
    # Without the clock a resumed run reports only its own epoch 3, well under the pause.
    assert resumed["retrain_seconds"] > before["retrain"]
    assert resumed["search_seconds"] >= before["search"]  # read back from search.json, written after the last tick


def test_resume_inside_the_search_continues_from_the_last_epoch(data_file, flops_range, tmp_path):
    cfg = config("darts", budget_at(flops_range, 0.5), search_epochs=3, retrain_epochs=1)
    out = tmp_path / "run"

    def stop_after_first(epoch: int, _row) -> None:
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_search(data_file, cfg, out, on_search_epoch=stop_after_first)
    epochs: list[int] = []
    resumed = run_search(data_file, cfg, out, resume=True, on_search_epoch=lambda e, _r: epochs.append(e))
    assert epochs == [2, 3]
    assert len(read_json(out / "trace.json")["epochs"]) == 3
    assert resumed["flops"] <= cfg.budget_flops


def test_resume_without_the_searched_supernet_says_what_is_missing(data_file, flops_range, tmp_path):
    cfg = config("darts", budget_at(flops_range, 0.5), search_epochs=1, retrain_epochs=1)
    out = tmp_path / "run"
    run_search(data_file, cfg, out)
    (out / "supernet.pt").unlink()
    with pytest.raises(ConfigError, match="supernet.pt is missing"):
        run_search(data_file, cfg, out, resume=True)


# --- retrain from scratch vs inherited weights ------------------------------------------------------


def test_retrain_from_scratch_is_recorded(data_file, flops_range, tmp_path):
    budget = budget_at(flops_range, 0.5)
    inherited = run_search(data_file, config("darts", budget, search_epochs=1), tmp_path / "inherited")
    scratch = run_search(data_file, config("darts", budget, search_epochs=1, retrain_from_scratch=True),
                         tmp_path / "scratch")
    assert inherited["retrain"]["inherited_weights"] is True
    assert scratch["retrain"]["inherited_weights"] is False
    assert read_json(tmp_path / "scratch" / "result.json")["retrain"]["inherited_weights"] is False
    assert scratch["arch"] == inherited["arch"]  # same search, only the retrain differs
    # Different starting weights, different retrained model.
    assert not np.isclose(scratch["retrain"]["history"][0]["loss"], inherited["retrain"]["history"][0]["loss"])
