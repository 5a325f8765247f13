"""A driver killed mid-search (SIGKILL) and resumed by another process: nothing lost, rerun or logged twice.

The first driver joins the shared 2-node cluster (`--address`) and is killed once its first trial has
finished; the second one resumes without `--address`, so nasrec starts (and stops) a local Ray of its own
on 127.0.0.1 and restores the experiment there. Two budgets: the killed one's cell is restored, the other
cell, never started, runs fresh.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
TRIALS = 2  # per cell


def driver(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE / "driver_script.py"), *args],
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float) -> str:
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        raise AssertionError(f"driver timed out:\n{output[-3000:]}") from None
    assert proc.returncode == 0, output[-3000:]
    return output


def processes_of(gcs_address: str) -> list[str]:
    """Command lines of the processes (gcs_server, raylet, workers) of the Ray whose GCS is `gcs_address`."""
    port = gcs_address.rsplit(":", 1)[1]
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if gcs_address in args or f"--gcs_server_port={port}" in args:
                found.append(args)
    return found


def test_killed_driver_resumes_without_losing_or_repeating_trials(ray_cluster, data_file, budget, tmp_path):
    out, log = tmp_path / "search", tmp_path / "tracker.jsonl"
    args = ["--out", str(out), "--data", data_file, "--tracker", str(log), "--budget", str(budget),
            "--budget", str(budget * 1.2), "--trials", str(TRIALS), "--sleep", "1.0"]
    runs = out / "tune" / "quick_test-b0" / "runs"

    first = driver([*args, "--address", ray_cluster])
    # A hung driver, not a slow one: its first trial takes seconds idle, over 90 s beside two benchmark jobs.
    deadline = time.monotonic() + 300
    while not list(runs.glob("*/result.json")):  # the first trial has finished its pipeline
        if first.poll() is not None or time.monotonic() > deadline:
            first.kill()
            raise AssertionError(f"no trial finished before the driver ended:\n{first.communicate()[0][-3000:]}")
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL
    done_before = {p.parent.name for p in runs.glob("*/result.json")}
    assert 1 <= len(done_before) < TRIALS
    assert not (out / "tune" / "quick_test-b1").exists()

    # The bound catches a hung driver, not a slow one: the resumed driver starts its own Ray and runs three
    # trials, ~40 s on the idle 2-core machine and over 120 s beside two benchmark jobs.
    finish(driver([*args, "--resume"]), timeout=360)

    rows = json.loads((out / "rows-resume.json").read_text())
    trial_ids = [r["trial_id"] for r in rows]
    assert len(rows) == len(set(trial_ids)) and all(r["status"] == "ok" for r in rows), rows
    budgets = [r["budget"] for r in rows]
    # A trial Tune had not recorded when the driver died is replaced: the first cell may hold one more.
    assert budgets.count(budget) >= TRIALS and budgets.count(budget * 1.2) == TRIALS
    assert done_before <= set(trial_ids)  # finished trials are not lost
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(e["trial_id"] for e in entries) == sorted(trial_ids)  # logged exactly once, over both drivers
    assert {e["kind"] for e in entries} == {"ok"} and len({e["fingerprint"] for e in entries}) == 1
    searches = (runs / "searches.log").read_text().split()
    for trial_id in done_before:  # a finished pipeline is not run again
        assert searches.count(trial_id) == 1, searches
    for row in rows:
        assert Path(row["run_dir"], "result.json").is_file() and row["flops"] <= row["budget"]

    # The resuming driver started its own Ray on the loopback interface, and stopped it.
    local = json.loads((out / "ray-resume.json").read_text())
    assert local["gcs_address"].startswith("127.0.0.1:") and local["gcs_address"] != ray_cluster
    assert local["nodes"] == ["127.0.0.1"]
    deadline = time.monotonic() + 15
    while processes_of(local["gcs_address"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_of(local["gcs_address"]) == []
