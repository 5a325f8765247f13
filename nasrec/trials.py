"""Many trials as one search: the Python API under `nasrec search --trials N` (and strategy/budget lists).

It checks everything it can before anything is tracked or scheduled, opens the MLflow parent run, runs the
trials on Ray Tune (`nasrec.orchestration.run_trials`) and closes the parent run with the Pareto front.
`resume_trials` continues a search whose driver died, in the same MLflow parent run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nasrec.api import DataOptions
from nasrec.errors import ConfigError
from nasrec.orchestration import TrialsConfig, check_trials, load_search, run_trials
from nasrec.search import SearchConfig
from nasrec.tracking import SearchTracker, check_tracking_uri, default_tracking_uri

OnTrial = Callable[[dict[str, Any]], None]


@dataclass
class TrialsOutcome:
    rows: list[dict[str, Any]]  # one per trial: status, strategy, budget, metrics, ...
    front: list[dict[str, Any]]  # Pareto front (test NDCG@10 up, FLOPs down), sorted by FLOPs
    tracking_uri: str
    parent_run_id: str
    out: Path

    def counts(self) -> dict[str, int]:
        return {s: sum(r["status"] == s for r in self.rows) for s in ("ok", "failed", "stopped")}


@dataclass
class TrialsPlan:
    """What `start_trials` checked and opened; `run` schedules the trials."""

    data: DataOptions
    base: SearchConfig
    trials: TrialsConfig
    out: Path
    tracker: SearchTracker
    resume: bool = False
    logged_before: int = 0  # trials a resumed search had already logged

    @property
    def n_trials(self) -> int:
        return len(self.trials.strategies) * len(self.trials.budgets) * self.trials.trials

    def run(self, on_trial: OnTrial | None = None) -> TrialsOutcome:
        rows = run_trials(self.data, self.base, self.trials, self.out, tracker=self.tracker, resume=self.resume,
                          on_trial=on_trial)
        front = self.tracker.finish(metric="test")
        assert self.tracker.parent_run_id is not None
        return TrialsOutcome(rows, front, self.tracker.tracking_uri, self.tracker.parent_run_id, self.out)


def start_trials(data: DataOptions | str, base: SearchConfig, trials: TrialsConfig, out: str | Path, *,
                 tracking_uri: str | None = None, command: str = "") -> TrialsPlan:
    """Check the search (data, space, strategies, budgets, Ray address, tracking store), then open its
    MLflow parent run. Nothing is tracked or scheduled when a check fails."""
    data_opts = DataOptions(source=data) if isinstance(data, str) else data
    out = Path(out)
    checked = check_trials(data_opts, base, trials)
    if (out / "search.json").is_file():
        raise ConfigError(f"{out} already holds a search; continue it with --resume {out} or choose another --out")
    uri = tracking_uri or default_tracking_uri()
    check_tracking_uri(uri)
    config: TrialsConfig = checked["trials"]
    tracker = SearchTracker(uri)
    tracker.start(command=command, data=checked["data"], space=base.space, strategies=list(config.strategies),
                  budgets=list(config.budgets),
                  extra={"trials": config.to_dict(), "search": base.to_dict(), "out": str(out)})
    return TrialsPlan(data_opts, base, config, out, tracker)


def resume_trials(path: str | Path, *, address: str | None = None, concurrency: int | None = None,
                  tracking_uri: str | None = None) -> TrialsPlan:
    """Reopen a trials search written to `path` (its search.json) in its MLflow parent run; finished trials
    are neither rerun nor logged twice."""
    path = Path(path)
    saved = load_search(path)
    tracking = saved.get("tracking") or {}
    uri = tracking_uri or tracking.get("tracking_uri")
    if not uri or not tracking.get("parent_run_id"):
        raise ConfigError(f"--resume: {path}/search.json names no MLflow run to continue")
    check_tracking_uri(uri)
    tracker = SearchTracker.resume(uri, tracking["parent_run_id"], tracking.get("experiment") or "nasrec")
    config = replace(saved["trials"], address=address or saved["trials"].address,
                     concurrency=concurrency or saved["trials"].concurrency)
    return TrialsPlan(saved["data"], saved["base"], config, path, tracker, resume=True,
                      logged_before=len(tracker.logged_trials()))
