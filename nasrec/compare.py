"""Paired comparison of finished runs on the same test users.

Two models evaluated on the same leave-one-out test users differ by less than the spread of a mean over
users suggests, because most of that spread is the users' own difficulty, which both models share. A
paired test looks at the per-user differences instead:

- per-user metric: each run's saved model (`RUN/model`) ranks every test user's target again under the
  full-ranking protocol of its `result.json`; a run without its model files (e.g. brought back from a lent GPU
  without them) is read from the ranks it saved at its test evaluation (`RUN/test_ranks.json`); either way
  the mean must reproduce the reported test figure (checked), and each run says which source it used;
- a group of runs (seeds of one setting) counts as its per-user mean, so `runs` and `baselines` may be
  one run each or several;
- difference of the means with a percentile bootstrap interval over users, and a two-sided paired
  randomisation (sign-flip) test of "no difference"; both seeded, both over test users only, so they say
  how sure the comparison is for these trained models, not across training seeds (the per-run means
  show that spread).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasrec.api import TEST_RANKS_FILE, DataOptions
from nasrec.data import EvalSet, SequenceData, leave_one_out
from nasrec.errors import ConfigError
from nasrec.metrics import row_metrics
from nasrec.models import load_model
from nasrec.train import arch_ranks

METRIC_PATTERN = re.compile(r"^(recall|mrr|ndcg)@([1-9][0-9]*)$")
# The reported test mean may move by a user's worth when thread counts or kernels differ from the run's
# machine (a near-tie flips); beyond this the saved model is not the one that produced result.json.
REPRODUCE_TOLERANCE = 5e-4
_CHUNK = 256  # resamples drawn at once: 256 x users numbers, a few MB on ML-1M


@dataclass(frozen=True)
class PairedTest:
    """`mean_a - mean_b` over `n` paired rows, its bootstrap interval and the randomisation test's p."""

    n: int
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    resamples: int
    seed: int


def paired_test(a: np.ndarray, b: np.ndarray, *, resamples: int = 10_000, confidence: float = 0.95,
                seed: int = 0) -> PairedTest:
    """Bootstrap interval of mean(a - b) over rows, and the two-sided sign-flip test's p-value
    ((extreme + 1) / (resamples + 1), never 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size < 2:
        raise ValueError(f"paired_test needs two 1-D arrays of one length >= 2, got {a.shape} and {b.shape}")
    if resamples < 100:
        raise ConfigError(f"resamples={resamples}: expected at least 100")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence={confidence}: expected a number in (0, 1)")
    d = a - b
    observed = float(d.mean())
    rng = np.random.default_rng(seed)
    boot = np.empty(resamples)
    extreme = 0
    for start in range(0, resamples, _CHUNK):
        m = min(_CHUNK, resamples - start)
        boot[start:start + m] = d[rng.integers(0, d.size, size=(m, d.size))].mean(axis=1)
        flipped = np.abs((d * rng.choice((-1.0, 1.0), size=(m, d.size))).mean(axis=1))
        # a relative slack so that a flip pattern equal to the observed one is counted despite rounding
        extreme += int((flipped >= abs(observed) * (1 - 1e-12)).sum())
    low, high = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
    return PairedTest(n=int(d.size), mean_a=float(a.mean()), mean_b=float(b.mean()), difference=observed,
                      ci_low=float(low), ci_high=float(high), confidence=confidence,
                      p_value=(extreme + 1) / (resamples + 1), resamples=resamples, seed=seed)


@dataclass(frozen=True)
class RunMetric:
    """One finished run's per-user test metric, recomputed from its saved model or read from its saved ranks."""

    run: str
    label: str
    fingerprint: str
    per_user: np.ndarray
    reported: float | None  # result.json's test figure; None when the run did not report this metric
    source: str  # "model" (re-scored) or "saved ranks" (RUN/test_ranks.json)

    @property
    def mean(self) -> float:
        return float(self.per_user.mean())


def check_metric(metric: str) -> tuple[str, int]:
    match = METRIC_PATTERN.match(metric.lower())
    if match is None:
        raise ConfigError(f"--metric {metric!r}: expected recall@K, mrr@K or ndcg@K (full ranking), e.g. ndcg@10")
    return match.group(1), int(match.group(2))


def _read_run(run: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(result.json, config.json) of a finished `nasrec train` or `nasrec search` run with its model or its
    saved test ranks."""
    for needed in ("result.json", "config.json"):
        if not (run / needed).is_file():
            raise ConfigError(f"{run}: not a finished nasrec run (no {needed}); pass the --out directory of "
                              "`nasrec train` or `nasrec search`")
    if not (run / "model" / "dims.json").is_file() and not (run / TEST_RANKS_FILE).is_file():
        raise ConfigError(f"{run}: neither its model (model/dims.json) nor its saved test ranks ({TEST_RANKS_FILE}) "
                          "are there: a run needs one of them to be compared")
    try:
        return json.loads((run / "result.json").read_text()), json.loads((run / "config.json").read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{run}: unreadable JSON ({exc})") from exc


def arch_label(arch: dict[str, Any]) -> str:
    """`L2 h96 i128.128 softmax g2` from an arch's JSON form (`g` and the gate count only when it has gates)."""
    inner = ".".join(str(i) for i in arch["inner"]) if isinstance(arch["inner"], list) else arch["inner"]
    gates = arch.get("gates") or 0
    return f"L{arch['depth']} h{arch['hidden']} i{inner} {arch['attention']}" + (f" g{gates}" if gates else "")


def run_label(result: dict[str, Any]) -> str:
    """`easrec L2 h96 i128.128 softmax g2`: the strategy (`train` for a single trained arch) and the arch."""
    return f"{result.get('strategy') or 'train'} {arch_label(result['arch'])}"


def run_metric(run: str | Path, metric: str, data: SequenceData, test: EvalSet | None = None) -> RunMetric:
    """The per-user full-ranking `metric` of `run`'s saved model on `data`'s test users (`test`: the test split
    of `data`, when the caller already holds it)."""
    kind, k = check_metric(metric)
    run = Path(run)
    result, config = _read_run(run)
    if result["data"]["fingerprint"] != data.fingerprint:
        raise ConfigError(f"{run}: trained on data {result['data']['fingerprint'][:12]}, not on "
                          f"{data.name} ({data.fingerprint[:12]}): the runs must share their test users")
    exclude_history = bool(result["metrics"].get("exclude_history", False))
    test = leave_one_out(data).test if test is None else test
    if (run / "model" / "dims.json").is_file():
        source = "model"
        model = load_model(run / "model")
        batch_size = int(config.get("train", {}).get("eval_batch_size", 256))  # the run's own batching
        ranks = arch_ranks(model, model.arch, test, data.n_items, int(result["max_len"]),
                           exclude_history=exclude_history, batch_size=batch_size)["full"]
    else:
        source = "saved ranks"
        ranks = saved_test_ranks(run, data.fingerprint, exclude_history, len(test.targets))
    per_user = row_metrics(ranks, k)[f"{kind}@{k}"].numpy()
    reported = result["metrics"]["test"]["full"].get(f"{kind}@{k}")
    if reported is not None and abs(float(per_user.mean()) - reported) > REPRODUCE_TOLERANCE:
        raise ConfigError(f"{run}: its {source} give{'s' if source == 'model' else ''} test {kind}@{k} "
                          f"{per_user.mean():.5f}, its result.json {reported:.5f}: {source} and result.json do not "
                          "belong together")
    return RunMetric(run=str(run), label=run_label(result), fingerprint=data.fingerprint,
                     per_user=per_user, reported=None if reported is None else float(reported), source=source)


def saved_test_ranks(run: Path, fingerprint: str, exclude_history: bool, rows: int) -> torch.Tensor:
    """`RUN/test_ranks.json`'s ranks, checked against the data, protocol and number of test rows."""
    path = run / TEST_RANKS_FILE
    try:
        saved = json.loads(path.read_text())
        ranks, protocol = saved["ranks"], saved["protocol"]
        saved_fingerprint, saved_exclude = saved["data_fingerprint"], bool(saved["exclude_history"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a test-ranks file of nasrec ({exc!r})") from exc
    if protocol != "full" or saved_fingerprint != fingerprint or saved_exclude != exclude_history:
        raise ConfigError(f"{path}: ranks of protocol {protocol!r}, data {str(saved_fingerprint)[:12]}, history "
                          f"excluded {saved_exclude}; expected full ranking on {fingerprint[:12]} with history "
                          f"excluded {exclude_history}")
    if not isinstance(ranks, list) or len(ranks) != rows or not all(isinstance(r, int) and r >= 0 for r in ranks):
        raise ConfigError(f"{path}: expected {rows} non-negative integer ranks, one per test user")
    return torch.tensor(ranks, dtype=torch.long)


def _data_of(runs: list[Path], data: str | None) -> SequenceData:
    """The one dataset every run was trained on (loaded once), checked before any model is scored."""
    options: set[str] = set()
    for run in runs:
        _, config = _read_run(run)
        opts = DataOptions(**config["data"])
        options.add(json.dumps(asdict(replace(opts, source=data) if data else opts), sort_keys=True))
    if len(options) > 1:
        raise ConfigError("the runs were trained on different data options; compare runs of one dataset: "
                          + " vs ".join(sorted(options)))
    opts = DataOptions(**json.loads(options.pop()))
    if opts.source != "synthetic" and not Path(opts.source).exists():
        raise ConfigError(f"data {opts.source!r} (from {runs[0]}/config.json) is not found from "
                          f"{Path.cwd()}; pass --data PATH")
    return opts.load()


def compare_runs(runs: Sequence[str | Path], baselines: Sequence[str | Path], *, metric: str = "ndcg@10",
                 resamples: int = 10_000, confidence: float = 0.95, seed: int = 0, data: str | None = None,
                 on_run: Callable[[RunMetric], None] | None = None) -> dict[str, Any]:
    """Paired test of `runs` (their per-user mean) against `baselines` on the shared test users."""
    if not runs or not baselines:
        raise ConfigError("compare needs at least one run and one baseline")
    check_metric(metric)
    groups = {"runs": [Path(r) for r in runs], "baselines": [Path(r) for r in baselines]}
    dataset = _data_of([*groups["runs"], *groups["baselines"]], data)
    test = leave_one_out(dataset).test  # the same rows for every run: split once
    scored: dict[str, list[RunMetric]] = {"runs": [], "baselines": []}
    for group, paths in groups.items():
        for run in paths:
            scored[group].append(run_metric(run, metric, dataset, test))
            if on_run is not None:
                on_run(scored[group][-1])
    a = np.mean([r.per_user for r in scored["runs"]], axis=0)
    b = np.mean([r.per_user for r in scored["baselines"]], axis=0)
    test = paired_test(a, b, resamples=resamples, confidence=confidence, seed=seed)
    return {
        "metric": f"{metric.lower()} (full ranking, test)",
        "data": {"name": dataset.name, "fingerprint": dataset.fingerprint, "users": dataset.n_users},
        **{group: [{"run": r.run, "label": r.label, "mean": r.mean, "reported": r.reported, "source": r.source}
                   for r in rows]
           for group, rows in scored.items()},
        "ratio": test.mean_a / test.mean_b if test.mean_b > 0 else math.inf,
        "test": asdict(test),
    }
