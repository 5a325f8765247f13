"""MLflow tracking of searches: one parent run per search, one nested child run per evaluated architecture.

Written from the driver only (one writer: SQLite does not like concurrent writers), with `MlflowClient`
and explicit run ids, never the fluent active-run stack, so trials can be logged in any order as they
finish. Layout in the tracking store:

* experiment `nasrec` (or `--experiment`); for a local `sqlite:///DIR/mlflow.db` store its artifacts go to
  `DIR/artifacts/<experiment>/`.
* parent run (tag `nasrec.kind=search`): params = command line, data (incl. fingerprint), space,
  strategies, budgets and extras; artifact `search.json`; at the end `pareto.csv`, `trials.csv`,
  `pareto.png` and the metrics `trials`, `failed_trials`, `front_size`.
* child run per trial (tag `nasrec.kind=trial`, `nasrec.trial_id`, `mlflow.parentRunId`): params = the
  arch (`arch.*` and `arch` JSON) and the trial configuration (`config.*`); metrics = FLOPs, params,
  latency, `valid/full/*` and `test/{full,uni100,pop100}/*` (`@` becomes `_at_`: `ndcg@10` is
  `ndcg_at_10`, since MLflow names allow no `@`), per-epoch curves `epoch/*` (step = epoch) and search
  curves `search/*`; artifacts `arch.json`, `result.json`, `config.json`, `trace.json`, `test_ranks.json`; the model
  logged with `mlflow.pytorch.log_model` (an MLflow 3 LoggedModel of the run); tag `pareto=true|false` after
  `finish`. A failed trial's run is FAILED with tag `nasrec.error` and artifact `error.txt`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from nasrec.errors import NasrecError
from nasrec.pareto import pareto_front, plot_front

DEFAULT_EXPERIMENT = "nasrec"
METRICS = ("valid", "test")  # the --metric choices: NDCG@10 of the full ranking on that split

TAG_KIND = "nasrec.kind"
TAG_TRIAL = "nasrec.trial_id"
TAG_ERROR = "nasrec.error"
TAG_PARETO = "pareto"
TAG_PARENT = "mlflow.parentRunId"
TAG_RUN_NAME = "mlflow.runName"

_MAX_PARAM = 6000  # MLflow's limits
_MAX_TAG = 8000
_BATCH_METRICS = 1000
_BATCH_PARAMS_TAGS = 100
_NAME_BAD = re.compile(r"[^/\w.\- ]")
ROW_FIELDS = ("run_id", "trial_id", "strategy", "arch_id", "arch", "flops", "ndcg@10", "budget", "parent_run_id")


# ----------------------------------------------------------------------------------------------- URIs


def default_tracking_uri(root: Path | str | None = None, *, create: bool = True) -> str:
    """`MLFLOW_TRACKING_URI` if set; else `sqlite:///<root or cwd>/mlruns/mlflow.db` (creating `mlruns/`
    unless `create=False`)."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    directory = (Path(root) if root is not None else Path.cwd()).resolve() / "mlruns"
    if create:
        directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(directory / 'mlflow.db').as_posix()}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (None for other URIs and in-memory databases)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path)


def artifact_root(uri: str) -> Path | None:
    """Where a local SQLite store keeps artifacts: `<db dir>/artifacts` (None for other stores)."""
    db = sqlite_path(uri)
    return None if db is None else db.resolve().parent / "artifacts"


def _one_line(exc: BaseException | str, limit: int = 300) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _bounded_http(timeout: float) -> contextlib.AbstractContextManager[None]:
    """MLflow retries HTTP requests for minutes by default; during a probe: no retries, a short timeout."""
    return _environ(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(max(1, math.ceil(timeout))))


def check_tracking_uri(uri: str, timeout: float = 3.0) -> None:
    """Raise a one-line `NasrecError` if the tracking store `uri` cannot be used; call before any training.

    HTTP(S): `GET /health` with `timeout` (any HTTP answer counts as reachable), then one API call without
    retries. SQLite: creates the database's directory, then opens the store (creating its tables on first
    use). Other URIs: one API call."""
    uri = (uri or "").strip()
    if not uri:
        raise NasrecError("empty MLflow tracking URI (--tracking-uri / MLFLOW_TRACKING_URI)")
    scheme = urlparse(uri).scheme.lower()
    if scheme in ("http", "https"):
        health = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=timeout) as response:  # noqa: S310 (http(s) only)
                response.read(64)
        except urllib.error.HTTPError:
            pass  # the server answered (auth, proxy path...): the API call below says more
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NasrecError(f"MLflow tracking server {uri} is unreachable ({_one_line(reason)}); start it "
                              "(`nasrec ui`, `mlflow server`) or pass another --tracking-uri") from None
    db = sqlite_path(uri)
    if db is not None:
        try:
            db.resolve().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NasrecError(f"tracking store {uri}: cannot create {db.parent} ({_one_line(exc)})") from None
    try:
        from mlflow import MlflowClient

        with _bounded_http(timeout):
            MlflowClient(uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 (any failure of the store is the user's to fix)
        hint = ""
        if scheme in ("", "file"):
            hint = "; use sqlite:///PATH/mlflow.db (MLflow 3 refuses plain ./mlruns file stores)"
        raise NasrecError(f"MLflow tracking URI {uri} is not usable: {_one_line(exc)}{hint}") from None


# ----------------------------------------------------------------------------------------- small helpers


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(uri)


def metric_name(*parts: str) -> str:
    """An MLflow-safe metric/param name: `@` -> `_at_`, other odd characters -> `_`."""
    return _NAME_BAD.sub("_", "/".join(parts).replace("@", "_at_"))


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _MAX_PARAM else text[: _MAX_PARAM - 3] + "..."


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    """Nested dicts become `prefix.key.sub` params; lists and scalars are JSON/str values."""
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    else:
        out[_NAME_BAD.sub("_", prefix.replace("@", "_at_"))] = _param_value(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _tag_value(text: str) -> str:
    return text if len(text) <= _MAX_TAG else text[: _MAX_TAG - 3] + "..."


@contextlib.contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """`mlflow.<flavor>.log_model` resolves the store from the global tracking URI: point it at ours."""
    try:
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri
    except ImportError:  # private helper moved: set and restore the public global
        import mlflow

        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(previous)
        return
    with _use_tracking_uri(uri):
        yield


class _DropPickleWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Pickle" not in record.getMessage()


def _history(result: dict[str, Any]) -> list[dict[str, Any]]:
    for key in ("retrain", "train"):  # `nasrec search` results say retrain, `nasrec train` ones train
        section = result.get(key)
        if isinstance(section, dict) and isinstance(section.get("history"), list):
            return section["history"]
    return []


def _arch_label(arch: Any) -> str:
    if not isinstance(arch, dict):
        return str(arch)
    try:
        from nasrec.arch import Arch

        return Arch.from_dict(arch).label
    except Exception:  # noqa: BLE001 (a label is cosmetic: fall back to the JSON)
        return json.dumps(arch, sort_keys=True, separators=(",", ":"))


def _trial_metrics(result: dict[str, Any], run_dir: Path | None) -> list[tuple[str, float, int]]:
    """(name, value, step) of a trial: cost, quality, timings, per-epoch and search curves."""
    rows: list[tuple[str, float, int]] = []

    def add(name: str, value: Any, step: int = 0) -> None:
        number = _number(value)
        if number is not None:
            rows.append((name, number, step))

    for key in ("flops", "counted_flops", "params", "search_seconds", "retrain_seconds", "budget_flops"):
        add(key, result.get(key))
    for key, value in (result.get("latency_ms") or {}).items():
        add(metric_name("latency_ms", str(key)), value)
    metrics = result.get("metrics") or {}
    for split in METRICS:
        for protocol, values in (metrics.get(split) or {}).items():
            if isinstance(values, dict):
                for key, value in values.items():
                    add(metric_name(split, protocol, key), value)
    for key in ("retrain", "train"):
        section = result.get(key)
        if isinstance(section, dict):
            add("epochs_run", section.get("epochs_run"))
            add("best_epoch", section.get("best_epoch"))
            break
    for row in _history(result):
        epoch = int(row.get("epoch", 0))
        for key, value in row.items():
            if key != "epoch":
                add(metric_name("epoch", key), value, epoch)
    trace_file = run_dir / "trace.json" if run_dir is not None else None
    if trace_file is not None and trace_file.is_file():
        try:
            epochs = json.loads(trace_file.read_text()).get("epochs") or []
        except (OSError, ValueError, AttributeError):
            epochs = []
        for step, row in enumerate(epochs if isinstance(epochs, list) else [], start=1):
            if isinstance(row, dict):
                for key, value in row.items():
                    if key != "epoch" and (_number(value) is not None and math.isfinite(float(value))):
                        add(metric_name("search", key), value, int(row.get("epoch", step)))
    return rows


def _row(run: Any, metric: str) -> dict[str, Any]:
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    budget = metrics.get("budget_flops")
    if budget is None and params.get("budget_flops") not in (None, "None", "null"):
        with contextlib.suppress(ValueError):
            budget = float(params["budget_flops"])
    return {
        "run_id": run.info.run_id,
        "trial_id": tags.get(TAG_TRIAL, ""),
        "strategy": tags.get("nasrec.strategy", ""),
        "arch_id": tags.get("nasrec.arch_id", ""),
        "arch": tags.get("nasrec.arch_label", params.get("arch", "")),
        "flops": metrics.get("flops"),
        "ndcg@10": metrics.get(metric_name(metric, "full", "ndcg@10")),
        "budget": budget,
        "parent_run_id": tags.get(TAG_PARENT, ""),
    }


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise NasrecError(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}")


def front_of(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
    """The front rows of `rows` (NDCG@10 up, FLOPs down), sorted by FLOPs, and their indices in `rows`."""
    indices = pareto_front([(r["ndcg@10"], r["flops"]) for r in rows])
    front = sorted((rows[i] for i in indices), key=lambda r: (r["flops"], -r["ndcg@10"], r["trial_id"]))
    return front, indices


def _search_all(client: Any, experiment_ids: list[str], filter_string: str) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, max_results=1000,
                                  page_token=token, order_by=["attributes.start_time ASC"])
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _csv_text(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# -------------------------------------------------------------------------------------------- tracker


class SearchTracker:
    """The parent run of one search and its children, logged through `MlflowClient` with explicit ids."""

    def __init__(self, tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.client = _client(tracking_uri)
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self._trials: dict[str, tuple[str, str]] = {}  # trial id -> (run id, status)

    # --- parent run

    def _ensure_experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(self.experiment)
        if experiment is None:
            root = artifact_root(self.tracking_uri)
            location = None if root is None else (root / _NAME_BAD.sub("_", self.experiment)).as_uri()
            try:
                return self.client.create_experiment(self.experiment, artifact_location=location,
                                                     tags={"nasrec": "true"})
            except MlflowException:  # created meanwhile by another process
                experiment = self.client.get_experiment_by_name(self.experiment)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage != "active":
            raise NasrecError(f"MLflow experiment {self.experiment!r} is deleted in {self.tracking_uri}: restore it "
                              "(`mlflow experiments restore`) or pass another --experiment")
        return experiment.experiment_id

    def start(self, *, command: str, data: dict, space: str, strategies: list[str], budgets: list[float],
              extra: dict | None = None) -> str:
        """Create the parent run of a search; returns its run id (keep it to `resume`)."""
        self.experiment_id = self._ensure_experiment()
        fingerprint = str(data.get("fingerprint") or (data.get("data") or {}).get("fingerprint") or "")
        tags = {TAG_KIND: "search", TAG_RUN_NAME: f"search {','.join(strategies)} {time.strftime('%Y-%m-%d %H:%M')}",
                "nasrec.command": _tag_value(command), "nasrec.data_fingerprint": fingerprint,
                "nasrec.space": space, "nasrec.strategies": ",".join(strategies),
                "mlflow.note.content": _tag_value(f"`{command}`")}
        run = self.client.create_run(self.experiment_id, tags=tags)
        self.parent_run_id = run.info.run_id
        params: dict[str, str] = {"command": _param_value(command), "space": space,
                                  "strategies": _param_value(strategies), "budgets": _param_value(budgets)}
        _flatten("data", data, params)
        if extra:
            _flatten("extra", extra, params)
        self._log_batch(self.parent_run_id, params=params)
        payload = {"command": command, "data": data, "space": space, "strategies": strategies,
                   "budgets": budgets, "extra": extra or {}}
        self._log_text(self.parent_run_id, "search.json", json.dumps(payload, indent=2, default=str))
        self._trials = {}
        return self.parent_run_id

    @classmethod
    def resume(cls, tracking_uri: str, parent_run_id: str, experiment: str = DEFAULT_EXPERIMENT) -> SearchTracker:
        """Reattach to the parent run of an interrupted search (reopened as RUNNING until `finish`)."""
        tracker = cls(tracking_uri, experiment)
        try:
            run = tracker.client.get_run(parent_run_id)
        except Exception as exc:  # noqa: BLE001
            raise NasrecError(f"cannot resume: no MLflow run {parent_run_id} in {tracking_uri} "
                              f"({_one_line(exc)})") from None
        if run.data.tags.get(TAG_KIND) != "search":
            raise NasrecError(f"cannot resume: MLflow run {parent_run_id} is not the parent run of a nasrec search")
        tracker.experiment_id = run.info.experiment_id
        tracker.parent_run_id = parent_run_id
        if run.info.status != "RUNNING":
            tracker.client.update_run(parent_run_id, status="RUNNING")
        tracker._load_trials()
        return tracker

    def _children(self) -> list[Any]:
        return _search_all(self.client, [self._require_started()[0]],
                           f"tags.`{TAG_PARENT}` = '{self.parent_run_id}'")

    def _load_trials(self) -> None:
        rank = {"FINISHED": 3, "FAILED": 2, "RUNNING": 1}
        self._trials = {}
        for run in self._children():
            trial = run.data.tags.get(TAG_TRIAL)
            if trial is None:
                continue
            known = self._trials.get(trial)
            if known is None or rank.get(run.info.status, 0) > rank.get(known[1], 0):
                self._trials[trial] = (run.info.run_id, run.info.status)

    def _require_started(self) -> tuple[str, str]:
        if self.experiment_id is None or self.parent_run_id is None:
            raise RuntimeError("SearchTracker: call start() or resume() first")
        return self.experiment_id, self.parent_run_id

    def logged_trials(self, *, include_failed: bool = True) -> set[str]:
        """Trial ids with a FINISHED child run (and FAILED ones unless `include_failed=False`)."""
        wanted = {"FINISHED", "FAILED"} if include_failed else {"FINISHED"}
        return {trial for trial, (_run, status) in self._trials.items() if status in wanted}

    # --- children

    def _new_child(self, trial_id: str, run_name: str, tags: dict[str, str]) -> str:
        experiment_id, parent = self._require_started()
        stale = self._trials.get(trial_id)
        if stale is not None and stale[1] == "RUNNING":  # an earlier driver died while logging it
            self.client.set_tag(stale[0], "nasrec.superseded", "true")
            self.client.set_terminated(stale[0], "KILLED")
        all_tags = {TAG_PARENT: parent, TAG_KIND: "trial", TAG_TRIAL: trial_id, TAG_RUN_NAME: run_name, **tags}
        run = self.client.create_run(experiment_id, tags=all_tags)
        self._trials[trial_id] = (run.info.run_id, "RUNNING")
        return run.info.run_id

    def log_trial(self, trial_id: str, config: dict, result: dict, run_dir: Path) -> str:
        """Log one evaluated architecture as a FINISHED child run; returns its run id.

        Idempotent per `trial_id`: a trial already logged as FINISHED is not logged again. The model is
        loaded from `run_dir/model` and logged with `mlflow.pytorch.log_model`."""
        trial_id, config = str(trial_id), config or {}
        known = self._trials.get(trial_id)
        if known is not None and known[1] == "FINISHED":
            return known[0]
        run_dir = Path(run_dir)
        arch = result.get("arch")
        label = _arch_label(arch)
        strategy = str(result.get("strategy") or config.get("strategy") or "train")
        tags = {"nasrec.strategy": strategy, "nasrec.arch_id": str(result.get("arch_id", "")),
                "nasrec.arch_label": label, "nasrec.space": str(result.get("space", "")),
                "nasrec.budget_flops": str(result.get("budget_flops", "")),
                "nasrec.data_fingerprint": str((result.get("data") or {}).get("fingerprint", "")),
                "nasrec.run_dir": str(run_dir)}
        if known is not None and known[1] == "FAILED":
            tags["nasrec.retry_of"] = known[0]
        run_id = self._new_child(trial_id, f"{trial_id} {strategy} {label}", tags)
        try:
            params: dict[str, str] = {"arch": _param_value(arch), "arch_id": str(result.get("arch_id", ""))}
            _flatten("arch", arch, params)
            _flatten("config", config, params)
            for key in ("strategy", "space", "budget_flops", "seed", "max_len", "projected"):
                if key in result:
                    params[key] = _param_value(result[key])
            if result.get("strategy_params"):
                _flatten("strategy_params", result["strategy_params"], params)
            self._log_batch(run_id, params=params, metrics=_trial_metrics(result, run_dir))
            self._log_text(run_id, "arch.json", json.dumps(arch, indent=2, default=str))
            self._log_text(run_id, "result.json", json.dumps(result, indent=2, default=str))
            self._log_text(run_id, "config.json", json.dumps(config, indent=2, default=str))
            from nasrec.api import TEST_RANKS_FILE  # here: nasrec.api imports torch, this module stays light

            for name in ("trace.json", TEST_RANKS_FILE):  # the ranks: `nasrec compare` from the artifacts alone
                if (run_dir / name).is_file():
                    self.client.log_artifact(run_id, str(run_dir / name))
            self._log_model(run_id, trial_id, run_dir / "model")
            self.client.set_terminated(run_id, "FINISHED")
        except BaseException as exc:
            # KILLED, not FAILED: the trial itself succeeded, so it does not count as logged and a later
            # call (a resumed search) logs it again in a new run.
            self._trials[trial_id] = (run_id, "KILLED")
            with contextlib.suppress(Exception):
                self.client.set_tag(run_id, TAG_ERROR, _tag_value(f"logging failed: {_one_line(exc)}"))
            with contextlib.suppress(Exception):
                self.client.set_terminated(run_id, "KILLED")
            raise
        self._trials[trial_id] = (run_id, "FINISHED")
        return run_id

    def _log_model(self, run_id: str, trial_id: str, model_dir: Path) -> None:
        if not (model_dir / "dims.json").is_file():
            self.client.set_tag(run_id, "nasrec.model", f"missing: no saved model in {model_dir}")
            return
        import mlflow.pytorch
        import torch

        from nasrec.models import load_model

        model = load_model(model_dir)
        experiment_id, _ = self._require_started()
        # Create the LoggedModel ourselves: log_model would put it in the fluent "current" experiment.
        logged = self.client.create_logged_model(experiment_id=experiment_id, name="model", source_run_id=run_id,
                                                 tags={TAG_TRIAL: trial_id})
        try:
            from importlib.metadata import version

            nasrec_req = f"nasrec=={version('nasrec')}"
        except Exception:  # noqa: BLE001 (not installed as a distribution)
            nasrec_req = "nasrec"
        extra = [str(model_dir / name) for name in ("dims.json", "arch.json") if (model_dir / name).is_file()]
        pickle_log = logging.getLogger("mlflow.pytorch")
        quiet = _DropPickleWarning()
        pickle_log.addFilter(quiet)
        quiet_bars = {} if "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" in os.environ else {
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}  # no tqdm bars over the CLI's progress display
        try:
            with _tracking_uri(self.tracking_uri), _environ(**quiet_bars):
                info = mlflow.pytorch.log_model(
                    model, name="model", run_id=run_id, model_id=logged.model_id,
                    serialization_format="pickle",  # pt2 would need torch.export of the model
                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", nasrec_req],
                    extra_files=extra or None)
        finally:
            pickle_log.removeFilter(quiet)
        self.client.set_tag(run_id, "nasrec.model_uri", info.model_uri)

    def log_failed_trial(self, trial_id: str, config: dict, error: str) -> str:
        """Log a trial that raised as a FAILED child run (tag `nasrec.error`, artifact `error.txt`).

        Idempotent per `trial_id`: nothing is logged for a trial already logged (FINISHED or FAILED)."""
        trial_id, config = str(trial_id), config or {}
        known = self._trials.get(trial_id)
        if known is not None and known[1] in ("FINISHED", "FAILED"):
            return known[0]
        strategy = str(config.get("strategy", ""))
        run_id = self._new_child(trial_id, f"{trial_id} {strategy} failed".replace("  ", " "),
                                 {"nasrec.strategy": strategy, TAG_ERROR: _tag_value(_one_line(error, 1000))})
        try:
            params: dict[str, str] = {}
            _flatten("config", config, params)
            self._log_batch(run_id, params=params)
            self._log_text(run_id, "error.txt", str(error))
            self._log_text(run_id, "config.json", json.dumps(config, indent=2, default=str))
        finally:
            self.client.set_terminated(run_id, "FAILED")
            self._trials[trial_id] = (run_id, "FAILED")
        return run_id

    # --- end

    def finish(self, metric: str = "test", status: str = "FINISHED") -> list[dict]:
        """Pareto front over this search's FINISHED children (NDCG@10 of `metric` up, FLOPs down).

        Writes `pareto.csv` (the front), `trials.csv` (every finished trial, with a `pareto` column) and
        `pareto.png` to the parent run, tags every finished child `pareto=true|false`, logs the counts
        and ends the parent run with `status`. Returns the front rows sorted by FLOPs."""
        _check_metric(metric)
        _, parent = self._require_started()
        children = self._children()
        finished = [r for r in children if r.info.status == "FINISHED" and r.data.tags.get(TAG_TRIAL) is not None]
        rows = [_row(r, metric) for r in finished]
        front, indices = front_of(rows)
        on_front = set(indices)
        for i, row in enumerate(rows):
            row["pareto"] = i in on_front
            self.client.set_tag(row["run_id"], TAG_PARETO, "true" if i in on_front else "false")
        self._write_front(parent, rows, front, indices, metric)
        failed = sum(r.info.status == "FAILED" for r in children)
        summary = [("trials", float(len(rows)), 0), ("failed_trials", float(failed), 0),
                   ("front_size", float(len(front)), 0)]
        best = [r["ndcg@10"] for r in rows if r["ndcg@10"] is not None and math.isfinite(r["ndcg@10"])]
        if best:
            summary.append((metric_name(f"best_{metric}", "ndcg@10"), max(best), 0))
        self._log_batch(parent, metrics=summary, tags={"nasrec.pareto_metric": metric})
        self.client.set_terminated(parent, status)
        return [{k: r[k] for k in ROW_FIELDS} for r in front]

    def _write_front(self, run_id: str, rows: list[dict[str, Any]], front: list[dict[str, Any]],
                     indices: list[int], metric: str) -> None:
        ordered = sorted(rows, key=lambda r: (r["flops"] is None, r["flops"] or 0, r["trial_id"]))
        self._log_text(run_id, "pareto.csv", _csv_text(front, ROW_FIELDS))
        self._log_text(run_id, "trials.csv", _csv_text(ordered, (*ROW_FIELDS, "pareto")))
        with tempfile.TemporaryDirectory() as tmp:
            png = plot_front([(r["ndcg@10"], r["flops"]) for r in rows], Path(tmp) / "pareto.png", front=indices,
                             labels=[r["arch"] or r["trial_id"] for r in rows],
                             quality_label=f"{metric} NDCG@10 (full ranking)",
                             title=f"Pareto front of {len(rows)} trials ({len(front)} on the front)")
            self.client.log_artifact(run_id, str(png))

    # --- low level

    def _log_batch(self, run_id: str, *, params: dict[str, str] | None = None,
                   metrics: list[tuple[str, float, int]] | None = None, tags: dict[str, str] | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        param_list = [Param(k, v) for k, v in (params or {}).items()]
        tag_list = [RunTag(k, v) for k, v in (tags or {}).items()]
        metric_list = [Metric(k, v, now, step) for k, v, step in (metrics or [])]
        for i in range(0, len(param_list), _BATCH_PARAMS_TAGS):
            self.client.log_batch(run_id, params=param_list[i:i + _BATCH_PARAMS_TAGS])
        for i in range(0, len(tag_list), _BATCH_PARAMS_TAGS):
            self.client.log_batch(run_id, tags=tag_list[i:i + _BATCH_PARAMS_TAGS])
        for i in range(0, len(metric_list), _BATCH_METRICS):
            self.client.log_batch(run_id, metrics=metric_list[i:i + _BATCH_METRICS])

    def _log_text(self, run_id: str, name: str, text: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_text(text)
            self.client.log_artifact(run_id, str(path))


# --------------------------------------------------------------------------------------- experiment front


def experiment_front(tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT, metric: str = "test") -> list[dict]:
    """The Pareto front over every FINISHED trial run of `experiment` (all its searches), sorted by FLOPs."""
    _check_metric(metric)
    client = _client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage != "active":
        raise NasrecError(f"no MLflow experiment {experiment!r} in {tracking_uri}; run `nasrec search` first "
                          "or pass --experiment / --tracking-uri")
    runs = _search_all(client, [found.experiment_id],
                       f"tags.`{TAG_KIND}` = 'trial' and attributes.status = 'FINISHED'")
    rows = [_row(r, metric) for r in runs]
    front, _ = front_of(rows)
    return [{k: r[k] for k in ROW_FIELDS} for r in front]


def pareto_command(experiment: str = DEFAULT_EXPERIMENT, tracking_uri: str | None = None, metric: str = "test",
                   json_out: bool = False) -> None:
    """Body of `nasrec pareto`: print the experiment's front as a table or JSON."""
    import sys

    from rich.console import Console
    from rich.table import Table

    _check_metric(metric)
    uri = tracking_uri or default_tracking_uri(create=False)
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise NasrecError(f"no MLflow tracking store at {db}: run `nasrec search` first or pass --tracking-uri")
    check_tracking_uri(uri)
    rows = experiment_front(uri, experiment, metric)
    if json_out:
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    table = Table(title=f"Pareto front of experiment {experiment!r}: {metric} NDCG@10 up, FLOPs down")
    for column, justify in (("flops", "right"), (f"{metric} ndcg@10", "right"), ("strategy", "left"),
                            ("arch", "left"), ("budget", "right"), ("trial", "left"), ("run id", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        budget = f"{r['budget']:.3g}" if isinstance(r["budget"], float) else str(r["budget"] or "")
        table.add_row(f"{r['flops']:,.0f}", f"{r['ndcg@10']:.4f}", r["strategy"], r["arch"], budget,
                      r["trial_id"], r["run_id"])
    console = Console()
    console.print(table)
    if not rows:
        console.print("no finished trials yet")
