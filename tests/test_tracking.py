from __future__ import annotations

import copy
import csv
import io
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from nasrec import api
from nasrec.data import SyntheticConfig, generate_synthetic
from nasrec.errors import NasrecError
from nasrec.tracking import (
    SearchTracker,
    check_tracking_uri,
    default_tracking_uri,
    experiment_front,
    pareto_command,
)
from nasrec.train import TrainConfig

EXPERIMENT = "nasrec-test"
pytestmark = pytest.mark.filterwarnings("ignore:.*noload.*")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """One real tiny training run: a result.json and a saved model to log."""
    data = generate_synthetic(SyntheticConfig(n_users=150, n_items=160, mean_len=12, seed=3))
    root = tmp_path_factory.mktemp("trained")
    path = root / "tiny.txt"
    lines = [" ".join([u, *(data.item_ids[i - 1] for i in seq)])
             for u, seq in zip(data.user_ids, data.sequences, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    out = root / "run"
    result = api.train(str(path), space="tiny", arch="min", out=out, max_len=12,
                       config=TrainConfig(epochs=2, batch_size=64, patience=50))
    return result, out


def _variant(result: dict[str, Any], trial: str, flops_x: float, test_gain: float, valid_gain: float
             ) -> dict[str, Any]:
    r = copy.deepcopy(result)
    r["flops"] = int(result["flops"] * flops_x)
    r["metrics"]["test"]["full"]["ndcg@10"] = result["metrics"]["test"]["full"]["ndcg@10"] + test_gain
    r["metrics"]["valid"]["full"]["ndcg@10"] = result["metrics"]["valid"]["full"]["ndcg@10"] + valid_gain
    r.update(strategy="random", strategy_params={"n_candidates": 4}, budget_flops=1e9, trial=trial)
    return r


@pytest.fixture(scope="module")
def search(trained: tuple[dict[str, Any], Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A search of four trials (t0 real; t1..t3 edited copies) and one failed trial, logged to SQLite."""
    result, run_dir = trained
    uri = f"sqlite:///{(tmp_path_factory.mktemp('store') / 'mlruns' / 'mlflow.db').as_posix()}"
    check_tracking_uri(uri)
    tracker = SearchTracker(uri, EXPERIMENT)
    parent = tracker.start(command="nasrec search --strategy random --budget-flops 1e9", data=result["data"],
                           space="tiny", strategies=["random"], budgets=[1e9], extra={"trials": 5})
    # test NDCG: t1 beats t0 at 2x FLOPs, t2 is dominated by t1, t3 is best at 4x.  valid: t2 is best.
    results = {"t0": _variant(result, "t0", 1, 0.0, 0.0), "t1": _variant(result, "t1", 2, 0.10, 0.05),
               "t2": _variant(result, "t2", 3, 0.05, 0.30), "t3": _variant(result, "t3", 4, 0.20, 0.10)}
    runs = {t: tracker.log_trial(t, {"strategy": "random", "seed": i, "lr": 1e-3}, r, run_dir)
            for i, (t, r) in enumerate(results.items())}
    runs["bad"] = tracker.log_failed_trial("bad", {"strategy": "random", "seed": 9},
                                           "Traceback ...\nRuntimeError: CUDA out of memory")
    return {"uri": uri, "parent": parent, "runs": runs, "results": results, "tracker": tracker}


def test_default_tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = default_tracking_uri(tmp_path)
    assert uri == f"sqlite:///{(tmp_path.resolve() / 'mlruns' / 'mlflow.db').as_posix()}"
    assert (tmp_path / "mlruns").is_dir()
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri() == uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert default_tracking_uri(tmp_path) == "http://mlflow.example:5000"


def test_pareto_without_a_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NasrecError, match="no MLflow tracking store"):
        pareto_command()
    assert not (tmp_path / "mlruns").exists()
    with pytest.raises(NasrecError, match="--metric"):
        pareto_command(metric="train")


def test_unreachable_server_fails_fast() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    start = time.monotonic()
    with pytest.raises(NasrecError, match="unreachable") as info:
        check_tracking_uri(f"http://127.0.0.1:{port}", timeout=2.0)
    assert time.monotonic() - start < 10
    assert "\n" not in str(info.value)


def test_unusable_sqlite_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(NasrecError, match="cannot create"):
        check_tracking_uri(f"sqlite:///{tmp_path / 'file' / 'sub' / 'mlflow.db'}")


def test_trial_runs(search: dict[str, Any], trained: tuple[dict[str, Any], Path]) -> None:
    import mlflow.pytorch

    from nasrec.models import load_model
    from nasrec.tracking import _tracking_uri

    client = search["tracker"].client
    run = client.get_run(search["runs"]["t1"])
    assert run.info.status == "FINISHED"
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags["mlflow.parentRunId"] == search["parent"] and tags["nasrec.trial_id"] == "t1"
    assert tags["nasrec.strategy"] == "random" and tags["nasrec.arch_id"] == trained[0]["arch_id"]
    assert json.loads(params["arch"]) == trained[0]["arch"] and params["arch.depth"] == str(trained[0]["arch"]["depth"])
    assert params["config.lr"] == "0.001" and params["strategy_params.n_candidates"] == "4"
    assert metrics["flops"] == search["results"]["t1"]["flops"]
    ndcg = search["results"]["t1"]["metrics"]["test"]["full"]["ndcg@10"]
    assert metrics["test/full/ndcg_at_10"] == pytest.approx(ndcg)
    for split, protocol in (("valid", "full"), ("test", "full"), ("test", "uni100"), ("test", "pop100")):
        for name in ("recall", "mrr", "ndcg"):
            for k in (10, 20):
                assert f"{split}/{protocol}/{name}_at_{k}" in metrics
    assert metrics["params"] == trained[0]["params"] and metrics["latency_ms/batch_1"] > 0
    curve = client.get_metric_history(run.info.run_id, "epoch/loss")
    assert [m.step for m in sorted(curve, key=lambda m: m.step)] == [1, 2]
    assert len(client.get_metric_history(run.info.run_id, "epoch/valid_ndcg_at_10")) == 2
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"arch.json", "result.json", "config.json", "test_ranks.json"} <= names
    logged = json.loads(Path(client.download_artifacts(run.info.run_id, "result.json")).read_text())
    assert logged["flops"] == search["results"]["t1"]["flops"]
    # The model: an MLflow LoggedModel of this run, in this experiment, loadable as the same network.
    outputs = run.outputs.model_outputs
    assert len(outputs) == 1
    model_info = client.get_logged_model(outputs[0].model_id)
    assert model_info.experiment_id == run.info.experiment_id and model_info.source_run_id == run.info.run_id
    with _tracking_uri(search["uri"]):
        model = mlflow.pytorch.load_model(f"models:/{outputs[0].model_id}")
    expected = load_model(trained[1] / "model")
    assert model.arch == expected.arch
    for (name, a), (_, b) in zip(model.state_dict().items(), expected.state_dict().items(), strict=True):
        assert a.equal(b), name


def test_failed_trial(search: dict[str, Any]) -> None:
    client = search["tracker"].client
    run = client.get_run(search["runs"]["bad"])
    assert run.info.status == "FAILED"
    assert run.data.tags["nasrec.error"] == "Traceback ..."
    assert run.data.tags["mlflow.parentRunId"] == search["parent"]
    error = Path(client.download_artifacts(run.info.run_id, "error.txt")).read_text()
    assert "CUDA out of memory" in error


def test_resume_no_duplicates_then_finish(search: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    uri, parent = search["uri"], search["parent"]
    tracker = SearchTracker.resume(uri, parent, EXPERIMENT)
    assert tracker.logged_trials() == {"t0", "t1", "t2", "t3", "bad"}
    assert tracker.logged_trials(include_failed=False) == {"t0", "t1", "t2", "t3"}
    assert tracker.log_trial("t2", {}, search["results"]["t2"], Path("/nonexistent")) == search["runs"]["t2"]
    assert tracker.log_failed_trial("bad", {}, "again") == search["runs"]["bad"]
    assert tracker.log_failed_trial("t0", {}, "late failure") == search["runs"]["t0"]
    children = tracker.client.search_runs([tracker.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")
    assert len(children) == 5

    front = tracker.finish()
    assert [r["trial_id"] for r in front] == ["t0", "t1", "t3"]
    assert front[0]["flops"] < front[1]["flops"] < front[2]["flops"]
    assert set(front[0]) >= {"run_id", "trial_id", "strategy", "arch_id", "arch", "flops", "ndcg@10", "budget"}
    assert front[0]["budget"] == 1e9 and front[0]["strategy"] == "random"
    client = tracker.client
    for trial, run_id in search["runs"].items():
        tags = client.get_run(run_id).data.tags
        if trial == "bad":
            assert "pareto" not in tags
        else:
            assert tags["pareto"] == ("true" if trial in {"t0", "t1", "t3"} else "false")
    parent_run = client.get_run(parent)
    assert parent_run.info.status == "FINISHED"
    assert parent_run.data.metrics["trials"] == 4 and parent_run.data.metrics["failed_trials"] == 1
    assert parent_run.data.params["space"] == "tiny" and parent_run.data.tags["nasrec.data_fingerprint"]
    names = {a.path for a in client.list_artifacts(parent)}
    assert {"pareto.csv", "pareto.png", "trials.csv", "search.json"} <= names
    rows = list(csv.DictReader(io.StringIO(Path(client.download_artifacts(parent, "pareto.csv")).read_text())))
    assert [r["trial_id"] for r in rows] == ["t0", "t1", "t3"]
    assert Path(client.download_artifacts(parent, "pareto.png")).read_bytes()[:4] == b"\x89PNG"

    # The experiment's front: a second search adds a trial dominating t1 (cheaper, better); no model dir.
    second = SearchTracker(uri, EXPERIMENT)
    second.start(command="nasrec search ...", data={"fingerprint": "x"}, space="tiny", strategies=["darts"],
                 budgets=[5e8])
    better = _variant(search["results"]["t0"], "t4", 1.5, 0.12, 0.0)
    second.log_trial("t4", {"strategy": "darts"}, better, Path("/nonexistent"))
    assert [r["trial_id"] for r in second.finish()] == ["t4"]
    assert [r["trial_id"] for r in experiment_front(uri, EXPERIMENT)] == ["t0", "t4", "t3"]
    assert [r["trial_id"] for r in experiment_front(uri, EXPERIMENT, metric="valid")] == ["t0", "t1", "t2"]
    with pytest.raises(NasrecError, match="no MLflow experiment"):
        experiment_front(uri, "missing")
    with pytest.raises(NasrecError, match="--metric"):
        experiment_front(uri, EXPERIMENT, metric="train")

    capsys.readouterr()
    pareto_command(EXPERIMENT, uri, "test", json_out=True)
    assert json.loads(capsys.readouterr().out) == experiment_front(uri, EXPERIMENT)
    pareto_command(EXPERIMENT, uri, "valid", json_out=False)
    assert "Pareto front" in capsys.readouterr().out


def test_logging_failure_is_retried(search: dict[str, Any], trained: tuple[dict[str, Any], Path],
                                    tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    (broken / "model").mkdir(parents=True)
    (broken / "model" / "dims.json").write_text("{not json")
    tracker = SearchTracker(search["uri"], "nasrec-test-retry")
    tracker.start(command="c", data={}, space="tiny", strategies=["random"], budgets=[1e9])
    with pytest.raises(ValueError):
        tracker.log_trial("t0", {}, trained[0], broken)
    assert tracker.logged_trials() == set()
    run_id = tracker.log_trial("t0", {}, trained[0], tmp_path / "no-model")
    assert tracker.logged_trials() == {"t0"}
    statuses = sorted(r.info.status for r in tracker._children())
    assert statuses == ["FINISHED", "KILLED"]
    assert tracker.client.get_run(run_id).data.tags["nasrec.model"].startswith("missing")


def test_resume_unknown_run(search: dict[str, Any]) -> None:
    with pytest.raises(NasrecError, match="cannot resume"):
        SearchTracker.resume(search["uri"], "0" * 32, EXPERIMENT)
