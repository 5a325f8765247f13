"""benchmarks/recbole_peer/by_length.py: validation and test NDCG@10 by history length, beside RecBole's ranks."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nasrec.api import train
from nasrec.train import TrainConfig

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "recbole_peer" / "by_length.py"


@pytest.fixture(scope="module")
def by_length():
    spec = importlib.util.spec_from_file_location("recbole_by_length", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_length_groups_split_at_the_edges(by_length):
    groups = by_length.length_groups(np.array([3, 49, 50, 99, 100, 400]), [50, 100])
    assert [label for label, _ in groups] == ["0-49", "50-99", "100+"]
    assert [mask.nonzero()[0].tolist() for _, mask in groups] == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(SystemExit, match="increasing"):
        by_length.length_groups(np.array([1]), [100, 50])


def test_table_puts_recbole_ranks_beside_a_nasrec_run(tmp_path):
    data = tmp_path / "seqs.txt"
    # users 1-12 with 6 to 17 interactions, users 13-20 with 20 each (of their own items, so that the sampled
    # protocols find 100 negatives outside every history): two length groups at edge 10.
    lines = [f"{u} {(u * 13 + t) % 150 + 1}\n" for u in range(1, 13) for t in range(u + 5)]
    lines += [f"{u} {200 + 20 * u + t}\n" for u in range(13, 21) for t in range(20)]
    data.write_text("".join(lines))
    run = tmp_path / "run"
    train(str(data), space="tiny", out=run, config=TrainConfig(epochs=1))
    # RecBole at rank 0 on validation and rank 50 on test for everyone: NDCG@10 1 and 0 in every group.
    users = [str(u) for u in range(1, 21)]
    ranks = tmp_path / "recbole_eval_ranks.json"
    ranks.write_text(json.dumps({"valid": dict.fromkeys(users, 0), "test": dict.fromkeys(users, 50)}))
    out = subprocess.run([sys.executable, str(SCRIPT), "--recbole", str(ranks), "--edges", "10", str(run)],
                         check=True, capture_output=True, text=True, timeout=300).stdout
    lines = out.splitlines()
    # test-input lengths: users 1-5 5..9, users 6-12 10..16, users 13-20 19
    assert "0-9 (5 users)" in lines[0] and "10+ (15 users)" in lines[0]
    assert "| RecBole | valid | 1.0000 | 1.0000 | 1.0000 |" in lines
    assert "| RecBole | test | 0.0000 | 0.0000 | 0.0000 |" in lines
    result = json.loads((run / "result.json").read_text())
    nasrec_test = next(line for line in lines if line.startswith("| run | test |"))
    assert float(nasrec_test.split("|")[3]) == pytest.approx(result["metrics"]["test"]["full"]["ndcg@10"], abs=1e-4)

    nasrec_valid = float(next(line for line in lines if line.startswith("| run | valid |")).split("|")[3])
    paired = {line.split(":")[0]: float(line.split(":")[1].split(",")[0])
              for line in lines if line.startswith("nasrec - ")}
    assert paired["nasrec - RecBole, valid"] == pytest.approx(nasrec_valid - 1.0, abs=1e-4)
    assert paired["nasrec - RecBole, test"] == pytest.approx(float(nasrec_test.split("|")[3]), abs=1e-4)
    assert paired["nasrec - RecBole, test minus valid"] == pytest.approx(
        paired["nasrec - RecBole, test"] - paired["nasrec - RecBole, valid"], abs=2e-4)

    # a second RecBole run at rank 0 on test too: the two runs' per-user mean (test NDCG@10 0.5) is what the
    # paired test compares with
    second = tmp_path / "seed1" / "recbole_eval_ranks.json"
    second.parent.mkdir()
    second.write_text(json.dumps({"valid": dict.fromkeys(users, 0), "test": dict.fromkeys(users, 0)}))
    out = subprocess.run([sys.executable, str(SCRIPT), "--recbole", str(ranks), "--recbole", str(second),
                          "--edges", "10", str(run)], check=True, capture_output=True, text=True, timeout=300).stdout
    lines = out.splitlines()
    assert "| RecBole, mean of 2 runs | test | 0.5000 | 0.5000 | 0.5000 |" in lines
    assert f"| RecBole ({tmp_path.name}) | test | 0.0000 | 0.0000 | 0.0000 |" in lines
    assert "| RecBole (seed1) | test | 1.0000 | 1.0000 | 1.0000 |" in lines
    paired_test = next(line for line in lines if line.startswith("nasrec - RecBole, test:"))
    assert float(paired_test.split(":")[1].split(",")[0]) == pytest.approx(float(nasrec_test.split("|")[3]) - 0.5,
                                                                            abs=1e-4)

    ranks.write_text(json.dumps({"valid": dict.fromkeys(users[:-1], 0), "test": dict.fromkeys(users, 50)}))
    failed = subprocess.run([sys.executable, str(SCRIPT), "--recbole", str(ranks), str(run)],
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0 and "must share their users" in failed.stderr
