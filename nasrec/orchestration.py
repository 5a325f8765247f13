"""Trials: many pipeline runs (search -> derive -> retrain -> evaluate -> cost) on Ray Tune, proposed by Optuna.

A *trial* is one `run_search` of one strategy at one FLOPs budget with one configuration of the
strategy's declared hyper-parameters (`HyperParam`) plus the learning rate. `run_trials` runs, for every
(strategy, budget) *cell*, one `tune.Tuner` whose `OptunaSearch` study proposes `trials` configurations:

* One Tuner (one Optuna study) per cell, run one after the other. Optuna needs one fixed search space
  per study, and strategies declare different hyper-parameters; a budget is not a knob to optimise but a
  constraint the user sets, so each budget gets its own study and the same number of trials (a budget as
  a study dimension would let single-objective TPE drift to the largest budget and leave the others
  unexplored). `trials` is therefore per cell: `strategies x budgets x trials` pipeline runs in all, and
  every strategy is compared on the same data, the same splits (one pipeline seed, `base.seed`, for all
  trials: it also seeds the leave-one-out split) and the same budgets. `concurrency` caps simultaneous
  trials within a cell.
* objective "ndcg": maximise validation NDCG@10 (TPE). "pareto": maximise validation NDCG@10 and minimise
  FLOPs (NSGA-II). The first configuration of every study is the strategy's defaults.
* `early_stop`: ASHA on validation NDCG@10, reported after every retrain epoch.
* Parameters given in `base.params` (the CLI's `--set`) are held fixed, and so are the parameters that
  set how much work a strategy does (declared `tunable=False`); the others are sampled from their
  declared tuning range (`HyperParam.tune`, else [low, high]).

Trials never write to MLflow. The driver (this process) logs each finished trial through `tracker`
(`nasrec.tracking.SearchTracker` or anything with its methods) as Tune reports it, and again after each
cell for any trial not logged yet, so a resumed search logs what the killed driver had not, and nothing
twice (`tracker.logged_trials()`).

Layout of a search directory `out`:

    out/search.json                       what was asked (for --resume), the cells, the tracking run
    STORAGE/<strategy>-b<i>/              the Tune experiment of one cell (STORAGE: --storage, else out/tune)
    STORAGE/<strategy>-b<i>/runs/<trial>  the trial's run dir: config.json, result.json, model/, ...

With a URI storage (`s3://...`), trials write their run dir locally and report it as a Tune checkpoint;
the driver downloads it to `out/runs/<trial>` before logging it.

Resume: `run_trials(..., resume=True)` restores every cell's experiment with `Tuner.restore` (cells never
started run fresh). Finished and failed trials are not rerun; a trial cut off mid-way restarts in its run
dir, where `run_search` resumes from its last stage and epoch (a trial whose run dir already holds
result.json only reports it again). Tune saves its experiment state every second here
(`TUNE_GLOBAL_CHECKPOINT_S`); a trial started after the last save is unknown to the restored experiment:
its run dir is adopted (logged) if it finished, and the study proposes a replacement otherwise.

Ray: already connected (`ray.init` by the caller): used as is. `address`: joined, left at the end (an
unreachable one is a one-line `NasrecError` within `CONNECT_TIMEOUT_S`). Neither: a local Ray on 127.0.0.1
(no dashboard, bounded object store, worker logs not forwarded), stopped at the end. With Ray Client
(`ray://`), Tune's loop and its callbacks run on the head node: trials are then logged when their cell ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import socket
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ray import tune

from nasrec.api import DataOptions, resolve_max_len, write_json
from nasrec.arch import get_space
from nasrec.errors import ConfigError, NasrecError
from nasrec.search import SearchConfig, check_budget
from nasrec.strategies.base import HyperParam, Strategy, create_strategy, get_strategy, list_strategies
from nasrec.strategies.optuna_search import quiet_optuna

METRIC = "valid_ndcg@10"  # validation NDCG@10 (full ranking): what Optuna and ASHA read
FLOPS = "flops"
TEST_METRIC = "test_ndcg@10"
OBJECTIVES = ("ndcg", "pareto")
ALL = "all"
LR_RANGE = (1e-4, 1e-2)  # the learning rate is tuned on a log scale in this range
# Hyper-parameters that set how much work a strategy does, not how it searches: never tuned.
SEARCH_FILE = "search.json"
LOCAL_OBJECT_STORE_BYTES = 200 * 1024**2  # a local Ray's object store: trials pass little through it
CONNECT_TIMEOUT_S = 5.0
NSGA2_MAX_POPULATION = 50
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@dataclass(frozen=True)
class TrialsConfig:
    """How many pipeline runs, of what, where. `trials` is per (strategy, budget) cell."""

    strategies: tuple[str, ...]
    budgets: tuple[float, ...]
    trials: int = 2
    concurrency: int | None = None  # simultaneous trials (Tune's max_concurrent_trials); None: as resources allow
    cpus_per_trial: float = 1.0  # also each trial's torch thread count (at least 1)
    gpus_per_trial: float = 0.0
    objective: str = "ndcg"  # "ndcg" (TPE) | "pareto" (NSGA-II: NDCG@10 up, FLOPs down)
    early_stop: bool = False  # ASHA on validation NDCG@10 per retrain epoch
    max_failures: int = 0  # retries of a failing trial (tune.FailureConfig)
    address: str | None = None  # "auto" | "host:port" | "ray://host:port"; None: a local Ray of our own
    storage: str | None = None  # Tune storage path (shared dir or URI); None: OUT/tune
    seed: int = 0  # seeds the samplers; the pipeline seed is SearchConfig.seed

    def resolved(self) -> TrialsConfig:
        """Checked, with `all` expanded to every registered strategy and duplicates dropped."""
        names: list[str] = []
        for entry in self.strategies:
            for name in (n.strip() for n in str(entry).split(",")):
                if not name:
                    continue
                names.extend(list_strategies() if name == ALL else [get_strategy(name).name])
        strategies = tuple(dict.fromkeys(names))
        if not strategies:
            raise ConfigError("no strategy given (--strategy NAME[,NAME...] or all)")
        budgets = tuple(dict.fromkeys(float(b) for b in self.budgets))
        if not budgets:
            raise ConfigError("--budget-flops is required (one value or a comma-separated list)")
        for b in budgets:
            if not (b > 0 and math.isfinite(b)):
                raise ConfigError(f"--budget-flops must be positive finite numbers, got {b:g}")
        checks = [
            (self.trials >= 1, f"--trials must be >= 1, got {self.trials}"),
            (self.concurrency is None or self.concurrency >= 1, f"--concurrency must be >= 1, got {self.concurrency}"),
            (self.cpus_per_trial > 0, f"--cpus-per-trial must be > 0, got {self.cpus_per_trial}"),
            (self.gpus_per_trial >= 0, f"--gpus-per-trial must be >= 0, got {self.gpus_per_trial}"),
            (self.objective in OBJECTIVES, f"--objective must be one of {', '.join(OBJECTIVES)}, "
                                           f"got {self.objective!r}"),
            (self.max_failures >= 0, f"--max-failures must be >= 0, got {self.max_failures}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return replace(self, strategies=strategies, budgets=budgets)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["strategies"], d["budgets"] = list(self.strategies), list(self.budgets)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialsConfig:
        return cls(**{**d, "strategies": tuple(d["strategies"]), "budgets": tuple(d["budgets"])})


# --------------------------------------------------------------------------------- search space


def _tunable(p: HyperParam) -> bool:
    """Declared `tunable=False` (effort knobs such as how many candidates to train) are never tuned."""
    return p.tunable


def _distribution(p: HyperParam, owner: str) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if p.type == "bool":
        return CategoricalDistribution([False, True])
    if p.type == "categorical":
        if not p.choices:
            raise ConfigError(f"strategy {owner!r}: categorical hyper-parameter {p.name} declares no choices")
        return CategoricalDistribution(list(p.choices))
    low, high = p.tune if p.tune is not None else (p.low, p.high)
    if low is None or high is None:
        raise ConfigError(f"strategy {owner!r}: hyper-parameter {p.name} has no range [low, high] to tune over")
    if p.log and low <= 0:
        raise ConfigError(f"strategy {owner!r}: hyper-parameter {p.name} is log-scaled but its low is {low}")
    if p.type == "int":
        return IntDistribution(int(low), int(high), log=p.log)
    return FloatDistribution(float(low), float(high), log=p.log)


def param_space(strategy: str, *, fixed: Iterable[str] = (), lr: bool = True) -> dict[str, Any]:
    """The Optuna distributions a study of `strategy` samples: its declared hyper-parameters, except
    `fixed` ones and effort ones, plus `lr` (log-uniform in `LR_RANGE`)."""
    cls = get_strategy(strategy)
    held = set(fixed)
    space = {p.name: _distribution(p, cls.name) for p in cls.hyperparams if p.name not in held and _tunable(p)}
    if lr:
        if "lr" in space:
            raise ConfigError(f"strategy {cls.name!r} declares a hyper-parameter named lr, which trials tune "
                              "as the learning rate")
        from optuna.distributions import FloatDistribution

        space["lr"] = FloatDistribution(*LR_RANGE, log=True)
    return space


def default_point(strategy: str, space: dict[str, Any], lr: float) -> dict[str, Any]:
    """The strategy's defaults (and `lr`, clipped into `LR_RANGE`) as a first point to evaluate."""
    defaults = {p.name: p.default for p in get_strategy(strategy).hyperparams}
    point = {name: defaults[name] for name in space if name != "lr"}
    if "lr" in space:
        point["lr"] = min(max(lr, LR_RANGE[0]), LR_RANGE[1])
    return point


def pinned_params(strategies: Sequence[str], params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`--set` values per strategy (each strategy takes the keys it declares); a key no strategy
    declares is an error, as it is for a single run."""
    declared = {s: {p.name for p in get_strategy(s).hyperparams} for s in strategies}
    unknown = sorted(k for k in params if not any(k in names for names in declared.values()))
    if unknown:
        raise ConfigError(f"--set {', '.join(unknown)}: no strategy of this search ({', '.join(strategies)}) "
                          "declares it")
    return {s: {k: v for k, v in params.items() if k in declared[s]} for s in strategies}


# --------------------------------------------------------------------------------------- Ray


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Make Ray put the nodes it starts here (and a driver joining a loopback cluster) on 127.0.0.1.

    On Linux Ray maps `_node_ip_address="127.0.0.1"` back to the machine's first non-loopback address
    and listens on every interface; its macOS/Windows behaviour (`ray_constants.ENABLE_RAY_CLUSTER`
    false: loopback) is what a single-machine run wants. The environment variable reaches the processes
    Ray spawns; the constant covers this process, where `ray` is already imported."""
    from ray._private import ray_constants

    saved_env, saved_flag = os.environ.get(_LOOPBACK_ENV), getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[_LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop(_LOOPBACK_ENV, None)
        else:
            os.environ[_LOOPBACK_ENV] = saved_env
        if saved_flag is not None:
            ray_constants.ENABLE_RAY_CLUSTER = saved_flag


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _host_port(address: str) -> tuple[str, int]:
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname:
        raise NasrecError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        port = parsed.port
    except ValueError:
        raise NasrecError(f"--address {address!r}: the port is not a number") from None
    return parsed.hostname, port or (10001 if parsed.scheme == "ray" else 6379)


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> str:
    """The GCS (or Ray Client) address `address` stands for, after checking that it accepts TCP
    connections within `timeout` seconds; a one-line `NasrecError` otherwise."""
    address = address.strip()
    target = address
    if address == "auto":
        found = None
        with contextlib.suppress(Exception):
            from ray._private.services import find_bootstrap_address

            found = find_bootstrap_address(None)
        target = os.environ.get("RAY_ADDRESS") or found
        if not target:
            raise NasrecError("--address auto: no running Ray cluster found on this machine (start one with "
                              "`ray start --head`, or pass --address HOST:PORT)")
    host, port = _host_port(target)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise NasrecError(f"cannot reach the Ray cluster at {address} ({host}:{port}: {reason}; waited at most "
                          f"{timeout:g}s); start it or check --address") from None
    return target


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None,
                object_store_memory: int = LOCAL_OBJECT_STORE_BYTES) -> Iterator[str]:
    """Ray for the duration of a search. Already connected: used as is. `address`: join that cluster
    (and leave it after). Neither: start a quiet local Ray on 127.0.0.1 (and stop it after)."""
    import ray

    if ray.is_initialized():
        yield "existing"
        return
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address:
        target = check_address(address)
        loopback = not target.startswith("ray://") and _is_loopback(_host_port(target)[0])
        try:
            with loopback_only() if loopback else contextlib.nullcontext():
                ray.init(address=address, **quiet)
        except Exception as exc:  # noqa: BLE001 (any failure to join is the user's to fix)
            with contextlib.suppress(Exception):
                ray.shutdown()
            raise NasrecError(f"cannot join the Ray cluster at {address}: {_one_line(exc)}") from None
        kind = "cluster"
    else:
        with loopback_only():
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     object_store_memory=object_store_memory, **quiet)
        kind = "local"
    try:
        yield kind
    finally:
        ray.shutdown()


# ------------------------------------------------------------------------------------- trials


@dataclass(frozen=True)
class Cell:
    """One (strategy, budget) pair: one Tune experiment, one Optuna study."""

    strategy: str
    budget: float
    index: int  # position of the budget in TrialsConfig.budgets

    @property
    def name(self) -> str:
        return f"{self.strategy}-b{self.index}"


@dataclass(frozen=True)
class TrialSpec:
    """What every trial of a cell shares; shipped to the workers with `tune.with_parameters`."""

    data: DataOptions
    base: SearchConfig  # strategy, budget and pinned params of the cell already set
    strategy_cls: type[Strategy]  # registered in the worker if it is not (test or out-of-tree strategies)
    threads: int
    run_root: str | None  # where run dirs go (shared storage); None: locally, returned as a checkpoint


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _run_trial(config: dict[str, Any], spec: TrialSpec) -> None:
    """The Tune trainable: one pipeline run; validation NDCG@10 reported per retrain epoch, then the result."""
    import ray
    import torch

    from nasrec.search import run_search
    from nasrec.strategies.base import list_strategies as registered
    from nasrec.strategies.base import register_strategy

    torch.set_num_threads(spec.threads)
    if spec.strategy_cls.name not in registered():
        register_strategy(spec.strategy_cls)
    context = tune.get_context()
    trial_id = context.get_trial_id()
    node_id = ray.get_runtime_context().get_node_id()
    run_dir = (Path(spec.run_root) if spec.run_root else Path.cwd() / "nasrec_runs") / trial_id
    params = {k: v for k, v in config.items() if k != "lr"}
    search_config = replace(spec.base, params={**spec.base.params, **params}, lr=config.get("lr", spec.base.lr))
    derived: dict[str, float] = {}
    common = {"run_dir": str(run_dir), "node_id": node_id}

    def on_stage(name: str, info: dict[str, Any]) -> None:
        if name == "derived":
            derived[FLOPS] = float(info["flops"])

    def on_retrain_epoch(log: Any, _state: Any) -> None:
        tune.report({METRIC: float(log.valid["ndcg@10"]), FLOPS: derived.get(FLOPS, float("nan")),
                     "epoch": log.epoch, "phase": "retrain", **common})

    result_file = run_dir / "result.json"
    if result_file.is_file():  # finished before an interruption: report it, do not rerun it
        result = json.loads(result_file.read_text())
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "error.json").unlink(missing_ok=True)  # from an earlier attempt
        try:
            result = run_search(spec.data, search_config, run_dir, resume=(run_dir / "config.json").is_file(),
                                on_stage=on_stage, on_retrain_epoch=on_retrain_epoch)
        except Exception as exc:
            write_json(run_dir / "error.json", {"error": _one_line(exc), "node_id": node_id,
                                                "traceback": traceback.format_exc()})
            raise
    final = {METRIC: float(result["metrics"]["valid"]["full"]["ndcg@10"]), FLOPS: float(result["flops"]),
             TEST_METRIC: float(result["metrics"]["test"]["full"]["ndcg@10"]), "arch_id": result["arch_id"],
             "phase": "done", "pipeline_done": True, **common}
    if spec.run_root:
        tune.report(final)
    else:
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(str(run_dir)))


def _one_line(exc: BaseException | str, limit: int = 500) -> str:
    """`Type: message` of the innermost cause (Ray wraps a trial's exception), on one line."""
    if isinstance(exc, str) or type(exc).__name__ == "TuneError":  # an error file's text: its last line
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        text = lines[-1] if lines else "unknown error"
    else:
        seen: set[int] = set()
        while id(exc) not in seen:
            seen.add(id(exc))
            inner = getattr(exc, "cause", None) or exc.__cause__
            if not isinstance(inner, BaseException):
                break
            exc = inner
        message = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {message[0].strip()}" if message else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


_TRIAL_DIR = re.compile(r"^trial_(\S+)$")  # see _trial_dirname


@dataclass
class _CellDriver:
    """Driver-side bookkeeping of one cell: turns finished trials into rows and tracker runs."""

    cell: Cell
    seed: int
    tracker: Any
    logged: set[str]
    announced: set[str]
    on_trial: Callable[[dict[str, Any]], None] | None
    out: Path
    early_stop: bool
    run_root: str | None
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    def config_of(self, searched: dict[str, Any]) -> dict[str, Any]:
        return {"strategy": self.cell.strategy, "budget_flops": self.cell.budget, "seed": self.seed, **searched}

    def record(self, trial_id: str, searched: dict[str, Any] | None, last: dict[str, Any] | None,
               error: Any, finished: bool, checkpoint: Any = None) -> dict[str, Any]:
        last = dict(last or {})
        config = self.config_of({k: v for k, v in (searched or {}).items()})
        run_dir = Path(last["run_dir"]) if last.get("run_dir") else None
        if run_dir is None and self.run_root is not None:  # a trial that failed before reporting anything
            run_dir = Path(self.run_root) / trial_id
        if checkpoint is not None and last.get("pipeline_done"):  # URI storage: fetch the run dir
            local = self.out / "runs" / trial_id
            if not (local / "result.json").is_file():
                checkpoint.to_directory(str(local))
            run_dir = local
        if error is not None:
            status = "failed"
        elif last.get("pipeline_done"):
            status = "ok"
        elif finished or self.early_stop:
            status = "stopped"
        else:
            status = "unfinished"
        message = None
        if status == "failed":
            message = _one_line(error)
            if run_dir is not None and (run_dir / "error.json").is_file():
                with contextlib.suppress(OSError, ValueError):
                    message = json.loads((run_dir / "error.json").read_text())["error"]
        row = {"trial_id": trial_id, "strategy": self.cell.strategy, "budget": self.cell.budget, "config": config,
               "status": status, "flops": last.get(FLOPS) if status != "failed" else None,
               METRIC: last.get(METRIC) if status != "failed" else None,
               TEST_METRIC: last.get(TEST_METRIC), "run_dir": str(run_dir) if run_dir else None,
               "node_id": last.get("node_id"), "error": message}
        self.rows[trial_id] = row
        self._log(row, run_dir)
        if trial_id not in self.announced and status in ("ok", "failed", "stopped"):
            self.announced.add(trial_id)
            if self.on_trial is not None:
                self.on_trial(row)
        return row

    def _log(self, row: dict[str, Any], run_dir: Path | None) -> None:
        trial_id = row["trial_id"]
        if self.tracker is None or trial_id in self.logged or row["status"] not in ("ok", "failed"):
            return
        try:
            if row["status"] == "ok":
                assert run_dir is not None
                result = json.loads((run_dir / "result.json").read_text())
                self.tracker.log_trial(trial_id, row["config"], result, run_dir)
            else:
                self.tracker.log_failed_trial(trial_id, row["config"], row["error"] or "failed")
        except Exception as exc:  # noqa: BLE001 (a tracking outage must not stop the search)
            warnings.warn(f"trial {trial_id}: could not log it ({_one_line(exc)}); a --resume logs it later",
                          stacklevel=2)
            return
        self.logged.add(trial_id)

    def from_trial(self, trial: Any) -> None:
        """From a Tune `Trial` (callback on this driver, as trials finish)."""
        error = None
        if trial.status == "ERROR":
            error = trial.get_error() or "failed"
        self.record(trial.trial_id, trial.config, trial.last_result, error, trial.status == "TERMINATED",
                    trial.checkpoint)

    def adopt_orphans(self, pinned: dict[str, Any]) -> None:
        """Finished run dirs Tune does not know: a trial that started and finished after the last snapshot of
        the experiment state before the driver was killed. Its pipeline result stands; log it too."""
        if self.run_root is None or not Path(self.run_root).is_dir():
            return
        for run_dir in sorted(Path(self.run_root).iterdir()):
            result_file, config_file = run_dir / "result.json", run_dir / "config.json"
            if run_dir.name in self.rows or not (result_file.is_file() and config_file.is_file()):
                continue
            result = json.loads(result_file.read_text())
            search = json.loads(config_file.read_text())["search"]
            searched = {k: v for k, v in search["params"].items() if k not in pinned}
            last = {METRIC: result["metrics"]["valid"]["full"]["ndcg@10"], FLOPS: float(result["flops"]),
                    TEST_METRIC: result["metrics"]["test"]["full"]["ndcg@10"], "run_dir": str(run_dir),
                    "pipeline_done": True}
            self.record(run_dir.name, {**searched, "lr": search["lr"]}, last, None, True)

    def from_result(self, result: Any) -> None:
        """From a `ResultGrid` entry (after the cell; also covers Ray Client, where callbacks run remotely)."""
        metrics = dict(result.metrics or {})
        trial_id = metrics.get("trial_id")
        if not trial_id:
            match = _TRIAL_DIR.match(Path(str(result.path)).name)
            trial_id = match.group(1) if match else Path(str(result.path)).name
        searched = result.config
        if searched is None:
            with contextlib.suppress(Exception):
                searched = json.loads((Path(str(result.path)) / "params.json").read_text())
        self.record(trial_id, searched, metrics, result.error, False, result.checkpoint)


_DRIVERS: dict[str, _CellDriver] = {}  # callback key -> the driver of a running cell (this process only)


class _TrialLogger(tune.Callback):
    """Hands finished trials to this process's `_CellDriver`. Holds a key, not the tracker, so the run
    config Tune pickles for `Tuner.restore` stays small and a restoring driver re-attaches its own."""

    def __init__(self, key: str) -> None:
        self.key = key

    def _handle(self, trial: Any) -> None:
        driver = _DRIVERS.get(self.key)
        if driver is None:
            return
        try:
            driver.from_trial(trial)
        except Exception as exc:  # noqa: BLE001 (never break Tune's loop; the sweep after the cell retries)
            warnings.warn(f"trial {trial.trial_id}: {_one_line(exc)}", stacklevel=2)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._handle(trial)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._handle(trial)


def _storage(storage: str | None, out: Path) -> str:
    if storage is None:
        return str((out / "tune").resolve())
    if storage.startswith("file://"):
        return str(Path(storage[len("file://"):]).resolve())
    if "://" in storage:
        return storage.rstrip("/")
    return str(Path(storage).expanduser().resolve())


def _is_uri(storage: str) -> bool:
    return "://" in storage


def _absolute_data(data: DataOptions | str) -> DataOptions:
    """Trials run in other directories (Tune changes into each trial's): make a relative file absolute."""
    opts = DataOptions(source=data) if isinstance(data, str) else data
    if opts.source != "synthetic" and Path(opts.source).exists():
        opts = replace(opts, source=str(Path(opts.source).resolve()))
    return opts


def _absolute_space(base: SearchConfig) -> SearchConfig:
    if Path(base.space).suffix in (".yaml", ".yml") and Path(base.space).is_file():
        return replace(base, space=str(Path(base.space).resolve()))
    return base


def _manifest(data: DataOptions, base: SearchConfig, trials: TrialsConfig) -> dict[str, Any]:
    """What must not change between a search and its resume (address and concurrency may)."""
    t = trials.to_dict()
    for key in ("address", "concurrency"):
        t.pop(key)
    return {"data": asdict(data), "base": base.to_dict(), "trials": t}


def load_search(out: str | Path) -> dict[str, Any]:
    """The `search.json` of a search directory: data, base, trials, storage, cells, tracking."""
    path = Path(out) / SEARCH_FILE
    if not path.is_file():
        raise ConfigError(f"--resume: {out} holds no earlier trials search (no {SEARCH_FILE})")
    saved = json.loads(path.read_text())
    saved["data"] = DataOptions(**saved["data"])
    saved["base"] = SearchConfig(**saved["base"])
    saved["trials"] = TrialsConfig.from_dict({**saved["trials"], "address": saved.get("address"),
                                              "concurrency": saved.get("concurrency")})
    return saved


def check_trials(data: DataOptions | str, base: SearchConfig, trials: TrialsConfig) -> dict[str, Any]:
    """Everything checkable before Ray starts (and before a tracking run is opened): the options, the
    strategies and their `--set` values, the space, the data, every budget against the smallest arch,
    that the cluster address (if any) answers.
    Returns {"trials": the resolved TrialsConfig, "data": the data summary (with its fingerprint)}."""
    from nasrec.api import data_summary

    trials = trials.resolved()
    data_opts = _absolute_data(data)
    base = _absolute_space(base)
    pinned = pinned_params(trials.strategies, base.params)
    space = get_space(base.space)
    max_len = resolve_max_len(space, base.max_len)
    for name in trials.strategies:
        create_strategy(name, pinned[name]).check_space(space)
        param_space(name, fixed=pinned[name])
    dataset = data_opts.load()
    for budget in trials.budgets:
        check_budget(space, budget, dataset.n_items, max_len)
    if trials.address:
        check_address(trials.address)
    return {"trials": trials, "data": data_summary(dataset)}


def _study(cell: Cell, trials: TrialsConfig, base: SearchConfig, fixed: Iterable[str]) -> Any:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from nasrec.optuna_samplers import nsga2_sampler

    space = param_space(cell.strategy, fixed=fixed)
    seed = trials.seed * 1_000 + cell.index
    metric: Any
    mode: Any
    if trials.objective == "pareto":
        population = max(2, min(NSGA2_MAX_POPULATION, math.ceil(trials.trials / 2)))
        sampler: Any = nsga2_sampler(population_size=population, seed=seed)  # Tune pickles the searcher
        metric, mode = [METRIC, FLOPS], ["max", "min"]
    else:
        sampler = optuna.samplers.TPESampler(seed=seed)
        metric, mode = METRIC, "max"
    return OptunaSearch(space=space, metric=metric, mode=mode, sampler=sampler,
                        points_to_evaluate=[default_point(cell.strategy, space, base.lr)])


def _tuner(cell: Cell, spec: TrialSpec, trials: TrialsConfig, storage: str, key: str, resume: bool) -> Any:
    trainable = tune.with_resources(tune.with_parameters(_run_trial, spec=spec),
                                    {"cpu": trials.cpus_per_trial, "gpu": trials.gpus_per_trial})
    path = f"{storage}/{cell.name}"
    if resume and tune.Tuner.can_restore(path):
        return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False,
                                  restart_errored=False)
    scheduler = None
    if trials.early_stop:
        from ray.tune.schedulers import ASHAScheduler

        # One report per retrain epoch, then the final one.
        scheduler = ASHAScheduler(metric=METRIC, mode="max", time_attr="training_iteration",
                                  max_t=spec.base.retrain_epochs + 1, grace_period=1, reduction_factor=2)
    with quiet_optuna():
        searcher = _study(cell, trials, spec.base, spec.base.params)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=trials.trials,
                                    max_concurrent_trials=trials.concurrency, reuse_actors=True,
                                    trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(name=cell.name, storage_path=storage, verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=trials.max_failures),
                                  callbacks=[_TrialLogger(key)]),
    )


@contextlib.contextmanager
def _tune_environment() -> Iterator[None]:
    """Defaults for the Tune runs of a search (an environment value the user set wins): no progress
    tables (the caller reports trials through `on_trial`), and the experiment state saved every second
    instead of every 10+, so a killed driver loses at most a second of Tune's bookkeeping."""
    defaults = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    added = [k for k in defaults if k not in os.environ]
    os.environ.update({k: defaults[k] for k in added})
    # Tune logs every failed attempt with its traceback; nasrec reports failed trials itself (on_trial, the
    # tracker, the rows) and Tune keeps each trial's error.txt in its trial directory.
    tune_logger = logging.getLogger("ray.tune")
    level = tune_logger.level
    tune_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        tune_logger.setLevel(level)
        for key in added:
            os.environ.pop(key, None)


def _warn_unshared_storage(trials: TrialsConfig, remote: bool) -> None:
    """Without --storage, run dirs go to OUT/tune on whichever machine runs the trial."""
    import ray

    if trials.storage is not None or remote:
        return
    hosts = {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}
    if len(hosts) > 1:
        warnings.warn(f"the Ray cluster spans {len(hosts)} machines but no --storage was given: trials write "
                      "their run dirs under OUT/tune on the machine that runs them; pass --storage (a directory "
                      "every node mounts, or s3://...)", stacklevel=3)


def _tracking_info(tracker: Any) -> dict[str, Any] | None:
    info = {k: getattr(tracker, k, None) for k in ("tracking_uri", "experiment", "parent_run_id")}
    return info if any(v is not None for v in info.values()) else None


def run_trials(data: DataOptions | str, base: SearchConfig, trials: TrialsConfig, out: str | Path, *,
               tracker: Any, resume: bool = False,
               on_trial: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run `trials` configurations of every (strategy, budget) cell through Ray Tune + Optuna.

    `base` holds what every trial shares (space, epochs, batch size, seed, `--set` values); its strategy
    and budget are replaced per cell. `tracker` (or None) logs each finished trial from this process.
    Returns one row per trial: trial_id, strategy, budget, config, status (ok | failed | stopped |
    unfinished), flops, valid_ndcg@10, test_ndcg@10, run_dir, node_id, error."""
    trials = trials.resolved()
    data_opts = _absolute_data(data)
    base = _absolute_space(base)
    out = Path(out).resolve()
    manifest = _manifest(data_opts, base, trials)
    search_file = out / SEARCH_FILE
    if resume:
        saved = json.loads(search_file.read_text()) if search_file.is_file() else None
        if saved is None:
            raise ConfigError(f"--resume: {out} holds no earlier trials search (no {SEARCH_FILE})")
        if json.dumps({k: saved[k] for k in manifest}, sort_keys=True) != json.dumps(manifest, sort_keys=True):
            raise ConfigError(f"--resume: {out} was started with other options; use the same ones or another --out")
        storage, search_id = saved["storage"], saved["search_id"]
    else:
        if search_file.is_file():
            raise ConfigError(f"{out} already holds a search ({SEARCH_FILE}); resume it or choose another --out")
        storage, search_id = _storage(trials.storage, out), uuid.uuid4().hex[:12]
    pinned = pinned_params(trials.strategies, base.params)
    fingerprint = check_trials(data_opts, base, trials)["data"]["fingerprint"]
    if resume and saved.get("data_fingerprint") not in (None, fingerprint):
        raise ConfigError(f"--resume: the data changed since {out} was started (fingerprint differs)")
    cells = [Cell(s, b, i) for s in trials.strategies for i, b in enumerate(trials.budgets)]
    out.mkdir(parents=True, exist_ok=True)
    write_json(search_file, {**manifest, "search_id": search_id, "storage": storage, "data_fingerprint": fingerprint,
                             "address": trials.address, "concurrency": trials.concurrency,
                             "cells": [{"name": c.name, "strategy": c.strategy, "budget": c.budget} for c in cells],
                             "tracking": _tracking_info(tracker)})

    logged: set[str] = set(tracker.logged_trials()) if tracker is not None else set()
    announced: set[str] = set()
    rows: list[dict[str, Any]] = []
    remote = _is_uri(storage)
    with ray_session(trials.address), quiet_optuna(), _tune_environment():
        _warn_unshared_storage(trials, remote)
        for cell in cells:
            spec = TrialSpec(data=data_opts,
                             base=replace(base, strategy=cell.strategy, budget_flops=cell.budget,
                                          params=pinned[cell.strategy]),
                             strategy_cls=get_strategy(cell.strategy),
                             threads=max(1, math.floor(trials.cpus_per_trial)),
                             run_root=None if remote else f"{storage}/{cell.name}/runs")
            driver = _CellDriver(cell=cell, seed=base.seed, tracker=tracker, logged=logged, announced=announced,
                                 on_trial=on_trial, out=out, early_stop=trials.early_stop, run_root=spec.run_root)
            key = f"{search_id}/{cell.name}"
            _DRIVERS[key] = driver
            try:
                results = _tuner(cell, spec, trials, storage, key, resume).fit()
                for result in results:  # trials a killed driver finished, or callbacks that ran elsewhere
                    driver.from_result(result)
                driver.adopt_orphans(pinned[cell.strategy])
            finally:
                _DRIVERS.pop(key, None)
            rows.extend(driver.rows[t] for t in sorted(driver.rows))
    return rows
