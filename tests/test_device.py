"""Device selection (`--device`) and, where torch sees a CUDA device, every pipeline on it.

The CUDA tests are skipped on machines without one (CI here); they ran on a lent H100 (see
docs/benchmarks.md, "GPU runs")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nasrec import api, cli, cost
from nasrec.arch import get_space, parse_arch
from nasrec.device import resolve_device
from nasrec.errors import ConfigError
from nasrec.models import ElasticSASRec, ModelDims, export, load_model
from nasrec.search import SearchConfig, check_budget, run_search
from nasrec.train import TrainConfig

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="torch sees no CUDA device")
MAX_LEN = 12


def test_auto_takes_cuda_only_when_torch_sees_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x", ""])
def test_unknown_device_names_fail_with_the_choices(name):
    with pytest.raises(ConfigError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_device(name)


def test_cuda_without_a_cuda_device_fails_before_any_work(monkeypatch, synthetic_file, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="sees no CUDA device; use --device cpu"):
        resolve_device("cuda")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli.app, ["train", "--data", str(synthetic_file()), "--space", "tiny",
                                          "--epochs", "1", "--device", "cuda", "--out", str(out)])
    assert isinstance(result.exception, ConfigError), result.output  # exit code 2 through `nasrec` (tests/test_cli.py)
    assert "no CUDA device" in str(result.exception)
    assert not out.exists()  # nothing was started


def test_cpu_results_record_the_device(synthetic_file, tmp_path):
    result = api.train(str(synthetic_file()), space="tiny", arch="min", max_len=MAX_LEN, out=tmp_path / "run",
                       config=TrainConfig(epochs=1, batch_size=64), device="cpu")
    assert result["machine"]["device"] == "cpu"


# --- on a CUDA device ---------------------------------------------------------------------------------


@needs_cuda
def test_train_on_cuda_end_to_end_and_resume(synthetic_file, tmp_path):
    data = str(synthetic_file(n_users=200, n_items=200))
    out = tmp_path / "run"
    config = TrainConfig(epochs=2, batch_size=64)

    class Stop(Exception):
        pass

    def stop(_log, _state) -> None:
        raise Stop

    with pytest.raises(Stop):  # killed after epoch 1: the checkpoint holds the CUDA RNG state too
        api.train(data, space="tiny", arch="max", max_len=MAX_LEN, out=out, config=config, device="cuda",
                  on_epoch=stop)
    result = api.train(data, space="tiny", arch="max", max_len=MAX_LEN, out=out, config=config, device="cuda",
                       resume=True)
    assert result["train"]["epochs_run"] == 2
    assert result["machine"]["device"].startswith("cuda")
    assert 0.0 <= result["metrics"]["test"]["full"]["ndcg@10"] <= 1.0
    assert result["latency_ms"]["batch_1"] > 0
    model = load_model(out / "model")  # saved from the GPU, loads on the CPU
    assert next(model.parameters()).device.type == "cpu"


@needs_cuda
def test_cuda_and_cpu_models_score_alike():
    space = get_space("tiny")
    torch.manual_seed(0)
    supernet = ElasticSASRec(ModelDims.for_space(space, 50, MAX_LEN)).eval()
    arch = parse_arch("min", space)
    inputs = torch.randint(0, 51, (8, MAX_LEN))
    on_cpu = export(supernet, arch).score_last(inputs)
    gpu_model = export(supernet.cuda(), arch)
    assert next(gpu_model.parameters()).device.type == "cuda"
    on_gpu = gpu_model.score_last(inputs.cuda()).cpu()
    finite = torch.isfinite(on_cpu)
    assert torch.equal(finite, torch.isfinite(on_gpu))
    assert torch.allclose(on_cpu[finite], on_gpu[finite], atol=1e-4)
    assert cost.counted_flops(gpu_model, MAX_LEN) == cost.counted_flops(export(supernet.cpu(), arch), MAX_LEN)


@needs_cuda
@pytest.mark.parametrize("strategy", ["darts", "proxyless", "recnas", "easrec", "random"])
def test_search_on_cuda_within_budget(strategy, synthetic_file, tmp_path):
    data = str(synthetic_file(n_users=200, n_items=200))
    dataset = api.DataOptions(source=data).load()
    rng = check_budget(get_space("tiny"), 1e15, dataset.n_items, MAX_LEN, gates=2 if strategy == "easrec" else 0)
    budget = rng.min_flops + 0.5 * (rng.max_flops - rng.min_flops)
    params = {"n_candidates": 2} if strategy == "random" else {}
    cfg = SearchConfig(strategy=strategy, budget_flops=budget, space="tiny", params=params, max_len=MAX_LEN,
                       search_epochs=2, retrain_epochs=1, batch_size=64, device="cuda")
    result = run_search(data, cfg, tmp_path / "run")
    assert result["flops"] <= budget
    assert result["machine"]["device"].startswith("cuda")


@needs_cuda
def test_a_cpu_search_resumes_on_cuda(synthetic_file, tmp_path):
    data = str(synthetic_file(n_users=200, n_items=200))
    dataset = api.DataOptions(source=data).load()
    rng = check_budget(get_space("tiny"), 1e15, dataset.n_items, MAX_LEN)
    cfg = SearchConfig(strategy="darts", budget_flops=rng.max_flops, space="tiny", max_len=MAX_LEN,
                       search_epochs=2, retrain_epochs=2, batch_size=64, device="cpu")
    out = tmp_path / "run"

    class Stop(Exception):
        pass

    def stop(log, _state) -> None:
        raise Stop

    with pytest.raises(Stop):
        run_search(data, cfg, out, on_retrain_epoch=stop)
    resumed = run_search(data, SearchConfig(**{**cfg.to_dict(), "device": "cuda"}), out, resume=True)
    assert resumed["machine"]["device"].startswith("cuda")
    assert json.loads(Path(out / "result.json").read_text())["retrain"]["epochs_run"] == 2
