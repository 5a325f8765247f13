"""Test helper (not a test module): test-only pieces for the orchestration tests, and a driver process.

* `QuickTest`: a strategy that derives the smallest arch without training (so a trial is a 1-epoch
  retrain), and fails on purpose: `x < fail_below` raises `TrainingDiverged` (what a NaN loss raises),
  `x > flaky_above` makes the first attempt of the trial raise (a transient fault). It appends its run
  dir name to `<runs dir>/searches.log` each time its search runs, so tests can count pipeline executions.
* `FileTracker`: the `SearchTracker` interface over a JSON-lines file, usable across processes.
* As a script: one driver of a `quick_test` search, for the SIGKILL / resume test:

      python driver_script.py --out OUT --data FILE --tracker FILE --budget B [--budget B2] [--address A]
                              [--trials N] [--sleep S] [--resume]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, ClassVar

from nasrec.strategies.base import HyperParam, SearchContext, SearchResult, Strategy
from nasrec.train import TrainingDiverged

STRATEGY = "quick_test"
MAX_LEN = 12


class QuickTest(Strategy):
    name = STRATEGY
    summary = "test only: the smallest arch without training; fails on purpose when told to"
    hyperparams: ClassVar[tuple[HyperParam, ...]] = (
        HyperParam("x", "float", 0.5, 0.0, 1.0, help="tuned; the trial diverges when x < fail_below"),
        HyperParam("fail_below", "float", 0.0, 0.0, 1.0, help="pin it (--set)"),
        HyperParam("flaky_above", "float", 1.0, 0.0, 1.0, help="pin it (--set): the first attempt raises when "
                   "x > flaky_above"),
        HyperParam("sleep", "float", 0.0, 0.0, 60.0, help="pin it (--set): seconds the search takes"),
    )
    trains_supernet = False

    def search(self, ctx: SearchContext) -> SearchResult:
        assert ctx.checkpoint is not None
        run_dir = ctx.checkpoint.parent
        with open(run_dir.parent / "searches.log", "a") as log:
            log.write(run_dir.name + "\n")
        time.sleep(self.params["sleep"])
        marker = run_dir / "flaky.marker"
        if self.params["x"] > self.params["flaky_above"] and not marker.exists():
            marker.touch()
            raise RuntimeError("flaky: the first attempt fails")
        if self.params["x"] < self.params["fail_below"]:
            raise TrainingDiverged(f"loss is nan (x={self.params['x']:.3f} < {self.params['fail_below']})")
        return SearchResult(arch=ctx.space.min_arch(), preference=None, trace=[{"x": self.params["x"]}])


class FileTracker:
    """`SearchTracker`'s methods over a JSON-lines file (one line per logged trial)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def logged_trials(self) -> set[str]:
        return {e["trial_id"] for e in self.entries()}

    def _append(self, entry: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(entry, default=str) + "\n")

    def log_trial(self, trial_id: str, config: dict, result: dict, run_dir: Path) -> str:
        assert (Path(run_dir) / "result.json").is_file() and (Path(run_dir) / "model").is_dir()
        self._append({"kind": "ok", "trial_id": trial_id, "config": config, "flops": result["flops"],
                      "fingerprint": result["data"]["fingerprint"], "run_dir": str(run_dir)})
        return trial_id

    def log_failed_trial(self, trial_id: str, config: dict, error: str) -> str:
        self._append({"kind": "failed", "trial_id": trial_id, "config": config, "error": error})
        return trial_id


def quick_base(**params: Any) -> Any:
    from nasrec.search import SearchConfig

    return SearchConfig(strategy=STRATEGY, budget_flops=1.0, space="tiny", max_len=MAX_LEN, search_epochs=1,
                        retrain_epochs=1, batch_size=64, params={"fail_below": 0.0, "flaky_above": 1.0, "sleep": 0.0,
                                                                 **params})


def main() -> None:
    from nasrec.orchestration import TrialsConfig, run_trials
    from nasrec.strategies.base import register_strategy

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--tracker", required=True)
    parser.add_argument("--budget", type=float, action="append", required=True)
    parser.add_argument("--address")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()

    register_strategy(QuickTest)
    trials = TrialsConfig(strategies=(STRATEGY,), budgets=tuple(args.budget), trials=args.trials, concurrency=1,
                          address=args.address)
    ray_info: dict[str, Any] = {}

    def on_trial(_row: dict[str, Any]) -> None:  # runs in this driver while its Ray is up
        import ray

        ray_info.update(gcs_address=ray.get_runtime_context().gcs_address,
                        nodes=sorted({n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}))

    rows = run_trials(args.data, quick_base(sleep=args.sleep), trials, args.out, tracker=FileTracker(args.tracker),
                      resume=args.resume, on_trial=on_trial)
    mode = "resume" if args.resume else "start"
    (Path(args.out) / f"rows-{mode}.json").write_text(json.dumps(rows, indent=2, default=str))
    (Path(args.out) / f"ray-{mode}.json").write_text(json.dumps(ray_info))


if __name__ == "__main__":
    main()
