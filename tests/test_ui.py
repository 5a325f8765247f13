from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nasrec.errors import NasrecError
from nasrec.tracking import SearchTracker, check_tracking_uri
from nasrec.ui import server_command, start_ui, stop_ui, ui_command, ui_url, wait_ready

pytestmark = pytest.mark.filterwarnings("ignore:.*noload.*")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_command_keeps_artifacts_beside_the_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    command = server_command(uri, port=5123)
    assert command[1:4] == ["-m", "mlflow", "server"]
    assert command[command.index("--backend-store-uri") + 1] == uri
    assert command[command.index("--host") + 1] == "127.0.0.1" and command[command.index("--port") + 1] == "5123"
    assert command[command.index("--artifacts-destination") + 1] == str(tmp_path.resolve() / "mlruns" / "artifacts")


def test_start_ui_refuses_a_server_uri_and_a_busy_port(tmp_path: Path) -> None:
    with pytest.raises(NasrecError, match="already an MLflow server"):
        start_ui("http://127.0.0.1:5000")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(NasrecError, match="pass another --port"):
            start_ui(f"sqlite:///{tmp_path / 'mlflow.db'}", port=busy.getsockname()[1])


def test_ui_command_on_a_server_uri_just_points_there(capsys: pytest.CaptureFixture[str]) -> None:
    ui_command("http://mlflow.example:5000")
    assert "open it in a browser" in capsys.readouterr().out


@pytest.fixture
def served_store(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A SQLite store holding one logged search, served by `mlflow server`; always stopped afterwards."""
    uri = f"sqlite:///{(tmp_path / 'mlruns' / 'mlflow.db').as_posix()}"
    tracker = SearchTracker(uri, "ui-test")
    parent = tracker.start(command="nasrec search", data={"fingerprint": "abc"}, space="tiny",
                           strategies=["random"], budgets=[1e6])
    child = tracker.log_failed_trial("t0", {"strategy": "random"}, "boom")
    tracker.finish()
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    proc = start_ui(uri, port=port, output=log)
    try:
        yield {"url": ui_url("127.0.0.1", port), "proc": proc, "parent": parent, "child": child,
               "experiment_id": tracker.experiment_id, "log": tmp_path / "server.log", "root": tmp_path}
    finally:
        stop_ui(proc)
        log.close()
    assert proc.poll() is not None


@pytest.mark.slow  # mlflow server takes 15-30 s to start on two shared cores
def test_ui_serves_logged_runs(served_store: dict[str, Any]) -> None:
    url = served_store["url"]
    try:
        wait_ready(url, timeout=150, proc=served_store["proc"])
    except NasrecError:
        print(served_store["log"].read_text()[-3000:])
        raise
    body = json.dumps({"experiment_ids": [served_store["experiment_id"]]}).encode()
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/runs/search", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        runs = json.loads(response.read())["runs"]
    by_id = {r["info"]["run_id"]: r for r in runs}
    assert set(by_id) == {served_store["parent"], served_store["child"]}
    assert by_id[served_store["child"]]["info"]["status"] == "FAILED"
    assert by_id[served_store["parent"]]["info"]["status"] == "FINISHED"

    # The same server as a remote tracking URI: artifacts are proxied into the store's artifacts folder.
    check_tracking_uri(url)
    remote = SearchTracker(url, "remote")
    remote.start(command="nasrec search", data={}, space="tiny", strategies=["random"], budgets=[1e6])
    run_id = remote.log_failed_trial("r0", {"strategy": "random"}, "remote boom")
    assert remote.client.get_run(run_id).info.status == "FAILED"
    proxied = [p for p in (served_store["root"] / "mlruns" / "artifacts").rglob("error.txt") if run_id in str(p)]
    assert len(proxied) == 1 and proxied[0].read_text() == "remote boom"
