"""`nasrec ui`: the MLflow UI (an `mlflow server` subprocess) on a local tracking store, bound to 127.0.0.1.

The server runs in its own process group (it starts a uvicorn worker), so `stop_ui` ends all of it.
MLflow's background job runner (GenAI evaluation jobs, unused by nasrec) is off unless
`MLFLOW_SERVER_ENABLE_JOB_EXECUTION` says otherwise: it roughly halves the start-up time on small machines.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import IO, Any
from urllib.parse import urlparse

from nasrec.errors import NasrecError
from nasrec.tracking import artifact_root, default_tracking_uri, sqlite_path


def server_command(tracking_uri: str, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The `mlflow server` command line serving `tracking_uri` (artifacts of a SQLite store next to it)."""
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri,
               "--host", host, "--port", str(port), "--workers", "1"]
    root = artifact_root(tracking_uri)
    if root is not None:  # runs logged through this server (mlflow-artifacts:/) land beside the store too
        command += ["--artifacts-destination", str(root)]
    return command


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise NasrecError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pass another --port") from None


def start_ui(tracking_uri: str, host: str = "127.0.0.1", port: int = 5000, *,
             output: IO[Any] | int | None = None) -> subprocess.Popen:
    """Start `mlflow server` on `tracking_uri`; returns at once (see `wait_ready`, `stop_ui`).

    `output`: where the server's stdout/stderr go (default: inherited; `subprocess.DEVNULL` or a file)."""
    if urlparse(tracking_uri).scheme in ("http", "https"):
        raise NasrecError(f"{tracking_uri} is already an MLflow server: open it in a browser")
    db = sqlite_path(tracking_uri)
    if db is not None:
        db.resolve().parent.mkdir(parents=True, exist_ok=True)
    _check_port(host, port)
    env = dict(os.environ)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    kwargs: dict[str, Any] = {}
    if os.name == "posix":
        kwargs["start_new_session"] = True  # own process group: stop_ui ends the uvicorn worker too
    else:
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
    return subprocess.Popen(server_command(tracking_uri, host, port), env=env, stdout=output,
                            stderr=subprocess.STDOUT if output is not None else None,
                            stdin=subprocess.DEVNULL, **kwargs)


def ui_url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def wait_ready(url: str, timeout: float = 90.0, proc: subprocess.Popen | None = None) -> None:
    """Poll `url/health` until the server answers 200; `NasrecError` on timeout or if `proc` exits first."""
    deadline = time.monotonic() + timeout
    health = url.rstrip("/") + "/health"
    while True:
        if proc is not None and proc.poll() is not None:
            raise NasrecError(f"mlflow server exited with code {proc.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(health, timeout=2.0) as response:  # noqa: S310 (local http only)
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise NasrecError(f"mlflow server at {url} not ready after {timeout:.0f}s")
        time.sleep(0.25)


def stop_ui(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate the server and its workers (the whole process group), killing them if they linger."""
    if proc.poll() is not None:
        return
    if os.name == "posix":
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        if os.name == "posix":
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait(timeout)
    if os.name == "posix":  # workers left behind by a server that exited on its own
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def ui_command(tracking_uri: str | None = None, host: str = "127.0.0.1", port: int = 5000) -> None:
    """Body of `nasrec ui`: serve the store until Ctrl-C."""
    from rich.console import Console

    console = Console()
    uri = tracking_uri or default_tracking_uri()
    if urlparse(uri).scheme in ("http", "https"):
        console.print(f"{uri} is an MLflow server already: open it in a browser")
        return
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        console.print(f"note: {db} does not exist yet; it will be empty until `nasrec search` logs to it")
    proc = start_ui(uri, host, port)
    url = ui_url(host, port)
    # The server runs in its own process group: stop it on SIGTERM/SIGHUP too, not only on Ctrl-C.
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, _interrupt) for sig in _STOP_SIGNALS} if main else {}
    exited_alone = False
    try:
        console.print(f"starting MLflow UI on {url} for {uri} (Ctrl-C stops it)")
        wait_ready(url, timeout=180.0, proc=proc)
        console.print(f"MLflow UI ready: {url}")
        proc.wait()
        exited_alone = True
    except KeyboardInterrupt:
        console.print("stopping the MLflow UI")
    finally:
        stop_ui(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if exited_alone and proc.returncode:
        raise NasrecError(f"mlflow server exited with code {proc.returncode}")

