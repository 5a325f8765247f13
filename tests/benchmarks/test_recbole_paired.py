"""benchmarks/recbole_peer/paired.py: RecBole's saved ranks, mapped onto nasrec's test users."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "recbole_peer" / "paired.py"


@pytest.fixture(scope="module")
def paired():
    spec = importlib.util.spec_from_file_location("recbole_paired", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_ranks(path: Path, ranks: dict[str, int], reported: float, **extra) -> Path:
    path.write_text(json.dumps({"protocol": "full", "exclude_history": False,
                                "reported_test": {"ndcg@10": reported}, "ranks": ranks, **extra}))
    return path


def ndcg(rank: int) -> float:
    return 1 / math.log2(rank + 2) if rank < 10 else 0.0


def test_ranks_follow_nasrec_user_order(paired, tmp_path):
    ranks = {"u1": 0, "u2": 3, "u3": 40}
    path = write_ranks(tmp_path / "r.json", ranks, (ndcg(0) + ndcg(3)) / 3)
    per_user, reported = paired.recbole_per_user(path, ["u3", "u1", "u2"], "ndcg@10")
    assert per_user.tolist() == pytest.approx([0.0, 1.0, ndcg(3)])
    assert reported == pytest.approx((1 + ndcg(3)) / 3)


def test_several_recbole_runs_are_averaged_per_user(paired, tmp_path):
    a = write_ranks(tmp_path / "a.json", {"u1": 0, "u2": 3}, (1 + ndcg(3)) / 2)
    b = write_ranks(tmp_path / "b.json", {"u1": 20, "u2": 1}, ndcg(1) / 2)
    mean, runs = paired.recbole_side([a, b], ["u2", "u1"], "ndcg@10")
    assert mean.tolist() == pytest.approx([(ndcg(3) + ndcg(1)) / 2, 0.5])
    assert [(path, reported) for path, _, reported in runs] == [(a, pytest.approx((1 + ndcg(3)) / 2)),
                                                                 (b, pytest.approx(ndcg(1) / 2))]


def test_other_users_are_refused(paired, tmp_path):
    path = write_ranks(tmp_path / "r.json", {"u1": 0, "u2": 3}, (1 + ndcg(3)) / 2)
    with pytest.raises(SystemExit, match="1 nasrec test users without a RecBole rank"):
        paired.recbole_per_user(path, ["u1", "u2", "u9"], "ndcg@10")


def test_ranks_that_miss_the_reported_metric_are_refused(paired, tmp_path):
    path = write_ranks(tmp_path / "r.json", {"u1": 0, "u2": 3}, 0.5)
    with pytest.raises(SystemExit, match="ranks and report do not belong together"):
        paired.recbole_per_user(path, ["u1", "u2"], "ndcg@10")


def test_history_excluded_ranks_are_refused(paired, tmp_path):
    path = write_ranks(tmp_path / "r.json", {"u1": 0}, 1.0)
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "exclude_history": True}))
    with pytest.raises(SystemExit, match="history kept"):
        paired.recbole_per_user(path, ["u1"], "ndcg@10")


def test_runs_that_dropped_history_are_refused(paired, tmp_path):
    for name, exclude in (("kept", False), ("dropped", True)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(json.dumps({"metrics": {"exclude_history": exclude}}))
    paired.check_history_kept([tmp_path / "kept"])
    with pytest.raises(SystemExit, match="dropped: trained with --exclude-history"):
        paired.check_history_kept([tmp_path / "kept", tmp_path / "dropped"])
