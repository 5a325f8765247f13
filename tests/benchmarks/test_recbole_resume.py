"""Continuing capped peer runs: run_recbole.py's shuffle replay and run_nasrec.sh's epochs.tsv on --resume."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[2]
PEER = ROOT / "benchmarks" / "recbole_peer"


@pytest.fixture(scope="module")
def run_recbole():
    # Only torch and numpy are imported at module level; RecBole itself is imported inside main(). The
    # script sets RecBole's environment (one thread, torch.load without weights_only) on import: keep it
    # out of the rest of the test session.
    saved = dict(os.environ)
    spec = importlib.util.spec_from_file_location("run_recbole", PEER / "run_recbole.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return module


def shuffled_loader(n: int) -> DataLoader:
    # As RecBole's AbstractDataLoader builds its training loader: shuffle with a generator seeded once.
    generator = torch.Generator()
    generator.manual_seed(0)
    return DataLoader(list(range(n)), batch_size=4, shuffle=True, generator=generator, collate_fn=list)


@pytest.mark.parametrize("n", [20, 22])
def test_skip_shuffles_continues_the_training_order(run_recbole, n):
    uninterrupted = shuffled_loader(n)
    epochs = [list(uninterrupted) for _ in range(5)]
    resumed = shuffled_loader(n)
    run_recbole.skip_shuffles(resumed, 3)
    assert [list(resumed) for _ in range(2)] == epochs[3:]
    assert epochs[3] != epochs[0]  # the order changes from epoch to epoch, so the replay is a real check


def tsv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_run_nasrec_resume_continues_epochs_tsv(tmp_path):
    data = tmp_path / "seqs.txt"
    # 20 users, each 12 consecutive items of 150: leave-one-out keeps a training part, and every user leaves
    # the 100 negatives that the sampled protocols draw outside its history.
    data.write_text("".join(f"{u} {(u * 13 + t) % 150 + 1}\n" for u in range(1, 21) for t in range(12)))
    out = tmp_path / "run"
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "DATA": str(data), "PATH": f"{venv_bin}:{os.environ['PATH']}"}

    def run(extra: str) -> None:
        subprocess.run(["bash", str(PEER / "run_nasrec.sh"), str(out)], check=True, capture_output=True,
                       env={**env, "EXTRA_ARGS": extra}, timeout=300)

    run("--epochs 2")
    first = tsv_rows(out / "epochs.tsv")
    assert [r["epoch"] for r in first] == ["1", "2"]
    run("--epochs 3 --resume")
    rows = tsv_rows(out / "epochs.tsv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert rows[:2] == first
    for column in ("cpu_seconds_since_process_start", "wall_seconds_since_process_start"):
        assert float(rows[2][column]) > float(first[1][column])
    assert len((out / "command.txt").read_text().splitlines()) == 2
