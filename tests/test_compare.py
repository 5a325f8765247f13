"""Paired comparison of finished runs (nasrec.compare, `nasrec compare`)."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, run_main

from nasrec import api
from nasrec.compare import compare_runs, paired_test, run_metric
from nasrec.data import leave_one_out, load_data
from nasrec.errors import ConfigError
from nasrec.metrics import metrics_from_ranks, row_metrics
from nasrec.train import TrainConfig

MAX_LEN = 12


# --- the statistics -------------------------------------------------------------------------------


def test_row_metrics_average_to_metrics_from_ranks():
    ranks = torch.tensor([0, 1, 3, 9, 10, 57, 2, 0])
    means = metrics_from_ranks(ranks, ks=(5, 10))
    for k in (5, 10):
        rows = row_metrics(ranks, k)
        for name, values in rows.items():
            assert float(values.mean()) == pytest.approx(means[name], abs=1e-15)
    assert row_metrics(ranks, 10)["ndcg@10"][1].item() == pytest.approx(1 / np.log2(3))
    assert row_metrics(ranks, 10)["mrr@10"][4].item() == 0.0  # rank 10 is outside the top 10


def test_identical_runs_have_no_difference():
    a = np.random.default_rng(0).random(500)
    t = paired_test(a, a.copy(), resamples=500)
    assert t.difference == 0.0 and t.ci_low == 0.0 and t.ci_high == 0.0
    assert t.p_value == 1.0  # every sign pattern is as extreme as a zero difference


def test_constant_shift_is_certain():
    b = np.random.default_rng(1).random(300)
    t = paired_test(b + 0.1, b, resamples=1000)
    assert t.difference == pytest.approx(0.1)
    assert t.ci_low == pytest.approx(0.1) and t.ci_high == pytest.approx(0.1)
    assert t.p_value == pytest.approx(1 / 1001)  # no flip pattern reaches it; p is never 0


def test_sign_flip_p_value_matches_exact_enumeration():
    rng = np.random.default_rng(2)
    d = rng.normal(0.3, 1.0, size=10)
    observed = abs(d.mean())
    patterns = np.array(list(itertools.product((-1.0, 1.0), repeat=d.size)))
    exact = float((np.abs((patterns * d).mean(axis=1)) >= observed * (1 - 1e-12)).mean())
    t = paired_test(d, np.zeros_like(d), resamples=40_000, seed=3)
    assert t.p_value == pytest.approx(exact, abs=0.01)


def test_bootstrap_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(4)
    a, b = rng.normal(1.0, 1.0, 4000), rng.normal(0.9, 1.0, 4000)
    t = paired_test(a, b, resamples=4000, seed=5)
    half = 1.96 * (a - b).std(ddof=1) / np.sqrt(a.size)
    assert t.ci_low == pytest.approx(t.difference - half, abs=0.15 * half)
    assert t.ci_high == pytest.approx(t.difference + half, abs=0.15 * half)
    assert t.ci_low < 0.1 < t.ci_high


def test_paired_test_is_seeded():
    rng = np.random.default_rng(6)
    a, b = rng.random(200), rng.random(200)
    assert paired_test(a, b, resamples=300, seed=7) == paired_test(a, b, resamples=300, seed=7)
    assert paired_test(a, b, resamples=300, seed=7).ci_low != paired_test(a, b, resamples=300, seed=8).ci_low


@pytest.mark.parametrize(("a", "b", "kwargs", "error"), [
    (np.ones(5), np.ones(4), {}, ValueError),
    (np.ones(1), np.ones(1), {}, ValueError),
    (np.ones(5), np.ones(5), {"resamples": 10}, ConfigError),
    (np.ones(5), np.ones(5), {"confidence": 1.0}, ConfigError),
])
def test_paired_test_rejects_bad_input(a, b, kwargs, error):
    with pytest.raises(error):
        paired_test(a, b, **kwargs)


# --- finished runs --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(synthetic_file, tmp_path_factory) -> dict[str, Path]:
    """Three tiny trained runs on one dataset (two archs, two seeds of one) and one on another dataset."""
    data = str(synthetic_file(n_users=150, n_items=160, mean_len=12, seed=11))
    other = str(synthetic_file(n_users=120, n_items=160, mean_len=12, seed=12))
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for name, source, arch, seed in (("min0", data, "min", 0), ("max0", data, "max", 0), ("max1", data, "max", 1),
                                     ("other", other, "min", 0)):
        api.train(source, space="tiny", arch=arch, max_len=MAX_LEN, out=root / name, device="cpu",
                  config=TrainConfig(epochs=2, batch_size=64, patience=50, seed=seed))
        made[name] = root / name
    return made


def test_run_metric_reproduces_result_json(runs):
    result = json.loads((runs["max0"] / "result.json").read_text())
    config = json.loads((runs["max0"] / "config.json").read_text())
    data = load_data(config["data"]["source"])
    for metric in ("ndcg@10", "recall@20", "mrr@10"):
        scored = run_metric(runs["max0"], metric, data)
        assert scored.per_user.shape == (len(leave_one_out(data).test.targets),)
        assert scored.mean == pytest.approx(result["metrics"]["test"]["full"][metric], abs=1e-12)
        assert scored.reported == result["metrics"]["test"]["full"][metric]
    unreported = run_metric(runs["max0"], "ndcg@5", data)  # not among the run's Ks: computed, nothing to check
    assert unreported.reported is None
    top10 = run_metric(runs["max0"], "ndcg@10", data).per_user
    assert np.all(unreported.per_user <= top10)  # a top-5 hit has the same gain at 10


def test_compare_groups_are_per_user_means(runs):
    report = compare_runs([runs["max0"], runs["max1"]], [runs["min0"]], resamples=200)
    means = [row["mean"] for row in report["runs"]]
    assert report["test"]["mean_a"] == pytest.approx(np.mean(means), abs=1e-12)
    assert report["test"]["mean_b"] == pytest.approx(report["baselines"][0]["mean"], abs=1e-12)
    assert report["test"]["difference"] == pytest.approx(report["test"]["mean_a"] - report["test"]["mean_b"])
    assert report["baselines"][0]["label"].startswith("train L")
    assert report["data"]["users"] == 150


def test_a_run_against_itself(runs):
    report = compare_runs([runs["max0"]], [runs["max0"]], resamples=200)
    assert report["test"]["difference"] == 0.0 and report["test"]["p_value"] == 1.0


def test_runs_of_other_data_are_refused(runs):
    with pytest.raises(ConfigError, match="different data options"):
        compare_runs([runs["max0"]], [runs["other"]], resamples=200)


def test_a_model_that_does_not_match_its_result_is_refused(runs, tmp_path):
    tampered = tmp_path / "tampered"
    shutil.copytree(runs["max0"], tampered)
    shutil.rmtree(tampered / "model")
    shutil.copytree(runs["min0"] / "model", tampered / "model")
    with pytest.raises(ConfigError, match="do not belong together"):
        compare_runs([tampered], [runs["min0"]], resamples=200)


def test_data_moved_needs_the_data_option(runs, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(runs["max0"], moved)
    config = json.loads((moved / "config.json").read_text())
    source = config["data"]["source"]
    config["data"]["source"] = str(tmp_path / "gone.txt")
    (moved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="--data"):
        compare_runs([moved], [moved], resamples=200)
    report = compare_runs([moved], [moved], resamples=200, data=source)
    assert report["runs"][0]["mean"] == pytest.approx(report["runs"][0]["reported"], abs=1e-12)


def test_cli_compare_json(runs, capsys, monkeypatch):
    code, out, _ = run_main(["compare", str(runs["max0"]), str(runs["max1"]), "--baseline", str(runs["min0"]),
                          "--resamples", "200", "--json"], capsys, monkeypatch)
    assert code == 0
    report = json.loads(out)
    assert len(report["runs"]) == 2 and len(report["baselines"]) == 1
    assert report["test"]["resamples"] == 200


@pytest.mark.parametrize(("args", "needles"), [
    (["{missing}", "--baseline", "{min0}"], ["no result.json", "missing"]),
    (["{max0}", "--baseline", "{min0}", "--metric", "hr@10"], ["--metric", "ndcg@K"]),
    (["{max0}", "--baseline", "{other}"], ["different data options"]),
])
def test_cli_compare_bad_input(runs, tmp_path, capsys, monkeypatch, args, needles):
    paths = {"missing": str(tmp_path / "missing"), **{k: str(v) for k, v in runs.items()}}
    code, _, err = run_main([a.format(**paths) for a in ["compare", *args]], capsys, monkeypatch)
    assert_one_line_error(code, err, *needles)


# --- runs without their model files: the saved test ranks ---------------------------------------------

def _without_model(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    shutil.rmtree(dest / "model")
    return dest


def test_saved_test_ranks_reproduce_result_json(runs):
    result = json.loads((runs["max0"] / "result.json").read_text())
    saved = json.loads((runs["max0"] / api.TEST_RANKS_FILE).read_text())
    assert saved["protocol"] == "full" and saved["data_fingerprint"] == result["data"]["fingerprint"]
    recomputed = metrics_from_ranks(torch.tensor(saved["ranks"]))
    for name, value in result["metrics"]["test"]["full"].items():
        assert recomputed[name] == pytest.approx(value, abs=1e-12)


def test_a_run_without_its_model_is_compared_from_its_saved_ranks(runs, tmp_path):
    bare = _without_model(runs["max0"], tmp_path / "bare")
    config = json.loads((runs["max0"] / "config.json").read_text())
    data = load_data(config["data"]["source"])
    from_model, from_ranks = run_metric(runs["max0"], "ndcg@10", data), run_metric(bare, "ndcg@10", data)
    assert (from_model.source, from_ranks.source) == ("model", "saved ranks")
    np.testing.assert_array_equal(from_model.per_user, from_ranks.per_user)
    report = compare_runs([bare], [runs["min0"]], resamples=200)
    assert report["runs"][0]["source"] == "saved ranks" and report["baselines"][0]["source"] == "model"
    assert report["test"] == compare_runs([runs["max0"]], [runs["min0"]], resamples=200)["test"]


def test_saved_ranks_that_do_not_fit_are_refused(runs, tmp_path):
    bare = _without_model(runs["max0"], tmp_path / "bare")
    path = bare / api.TEST_RANKS_FILE
    saved = json.loads(path.read_text())
    for change, needle in (({"ranks": saved["ranks"][:-1]}, "non-negative integer ranks"),
                           ({"data_fingerprint": "0" * 64}, "expected full ranking"),
                           ({"exclude_history": not saved["exclude_history"]}, "history excluded"),
                           ({"ranks": [r + 1 for r in saved["ranks"]]}, "do not belong together")):
        path.write_text(json.dumps({**saved, **change}))
        with pytest.raises(ConfigError, match=needle):
            compare_runs([bare], [runs["min0"]], resamples=200)
    (bare / api.TEST_RANKS_FILE).unlink()
    with pytest.raises(ConfigError, match="neither its model"):
        compare_runs([bare], [runs["min0"]], resamples=200)
