from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nasrec import api
from nasrec.arch import get_space
from nasrec.data import SyntheticConfig, generate_synthetic, leave_one_out
from nasrec.models import ElasticSASRec, ModelDims
from nasrec.models.scoring import full_softmax_cross_entropy
from nasrec.train import TrainConfig, TrainingDiverged, next_item_loss, train_arch


@pytest.fixture(scope="module")
def data_file(synthetic_file) -> Path:
    return synthetic_file(n_users=150, n_items=160, mean_len=12, seed=3)


def _train(data_file: Path, out: Path, epochs: int = 2, **kw: object) -> dict:
    config = TrainConfig(epochs=epochs, batch_size=32, patience=50, seed=kw.pop("seed", 0))  # type: ignore[arg-type]
    return api.train(str(data_file), space="tiny", arch="max", out=out, max_len=12, config=config, **kw)


def test_train_writes_result(data_file: Path, tmp_path: Path) -> None:
    result = _train(data_file, tmp_path / "a")
    saved = json.loads((tmp_path / "a" / "result.json").read_text())
    assert saved["arch"] == result["arch"]
    for protocol in ("full", "uni100", "pop100"):
        assert 0.0 <= saved["metrics"]["test"][protocol]["ndcg@10"] <= 1.0
    assert set(saved["metrics"]["valid"]) == {"full"}
    assert saved["flops"] == saved["counted_flops"]
    assert saved["latency_ms"]["batch_1"] > 0 and saved["latency_ms"]["batch_256"] > 0
    assert saved["data"]["fingerprint"] and saved["seed"] == 0
    assert saved["metrics"]["exclude_history"] is False
    assert (tmp_path / "a" / "model" / "model.pt").is_file()


def test_same_seed_same_metrics(data_file: Path, tmp_path: Path) -> None:
    a = _train(data_file, tmp_path / "a")
    b = _train(data_file, tmp_path / "b")
    assert a["metrics"] == b["metrics"]
    c = _train(data_file, tmp_path / "c", seed=1)
    assert c["metrics"] != a["metrics"]


def test_resume_equals_uninterrupted(data_file: Path, tmp_path: Path) -> None:
    full = _train(data_file, tmp_path / "full", epochs=3)

    class Stop(Exception):
        pass

    def stop_after_two(log: object, state: object) -> None:
        if log.epoch == 2:  # type: ignore[attr-defined]
            raise Stop

    with pytest.raises(Stop):
        _train(data_file, tmp_path / "cut", epochs=3, on_epoch=stop_after_two)
    kept = json.loads((tmp_path / "cut" / "seconds.json").read_text())["train"]  # epochs 1-2, recorded
    resumed = _train(data_file, tmp_path / "cut", epochs=3, resume=True)
    assert resumed["metrics"] == full["metrics"]
    assert resumed["train"]["epochs_run"] == 3
    assert resumed["train"]["seconds"] > kept > 0  # the kept epochs' seconds, and epoch 3's


def test_resume_checks(data_file: Path, tmp_path: Path) -> None:
    with pytest.raises(api.ConfigError, match="no checkpoint"):
        _train(data_file, tmp_path / "none", resume=True)
    _train(data_file, tmp_path / "r", epochs=1)
    with pytest.raises(api.ConfigError, match="different"):
        _train(data_file, tmp_path / "r", epochs=1, resume=True, seed=5)


def test_too_small_catalogue_fails_before_training(tmp_path: Path) -> None:
    path = tmp_path / "small.txt"
    path.write_text("".join(f"{u} " + " ".join(str(i) for i in range(1, 9)) + "\n" for u in range(1, 30)))
    with pytest.raises(api.ConfigError, match="100 negatives"):
        _train(path, tmp_path / "out")
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


def test_early_stopping_and_best_weights(data_file: Path) -> None:
    data = generate_synthetic(SyntheticConfig(n_users=150, n_items=160, mean_len=12, seed=3))
    splits = leave_one_out(data)
    space = get_space("tiny")
    model = ElasticSASRec(ModelDims.for_space(space, data.n_items, 12).for_arch(space.max_arch()))
    # lr 0 never improves after epoch 1, so patience 2 stops after epoch 3.
    state = train_arch(model, model.arch, splits.train, splits.valid, data.n_items, 12,
                       TrainConfig(epochs=20, batch_size=32, lr=0.0, patience=2))
    assert state.epoch == 3 and state.best_epoch == 1
    assert state.stop_reason(TrainConfig(epochs=20, patience=2)) == "patience"
    # min_epochs: patience may not stop it before epoch 5 (the same non-improving run, now 5 epochs long).
    model = ElasticSASRec(ModelDims.for_space(space, data.n_items, 12).for_arch(space.max_arch()))
    state = train_arch(model, model.arch, splits.train, splits.valid, data.n_items, 12,
                       TrainConfig(epochs=20, batch_size=32, lr=0.0, patience=2, min_epochs=5))
    assert state.epoch == 5 and state.best_epoch == 1
    assert state.stop_reason(TrainConfig(epochs=20, patience=2, min_epochs=6)) is None
    # min_epochs above the epoch limit is refused (the limit and the time budget stay hard limits).
    with pytest.raises(api.ConfigError, match="min_epochs"):
        TrainConfig(epochs=3, min_epochs=4)


def test_resume_of_a_run_started_before_an_option_existed(data_file: Path, tmp_path: Path) -> None:
    """A config.json written by an older nasrec lacks the options added since; it ran with their defaults,
    so it resumes; one that ran with another value than the default does not."""
    out = tmp_path / "old"
    _train(data_file, out, epochs=1)
    config_file = out / "config.json"
    saved = json.loads(config_file.read_text())
    del saved["train"]["weight_decay"], saved["train"]["min_epochs"]
    config_file.write_text(json.dumps(saved))
    assert _train(data_file, out, epochs=2, resume=True)["train"]["epochs_run"] == 2
    saved["train"]["weight_decay"] = 0.5
    config_file.write_text(json.dumps(saved))
    with pytest.raises(api.ConfigError, match="different train"):
        _train(data_file, out, epochs=3, resume=True)


def test_time_budget_stops_between_epochs(data_file: Path, tmp_path: Path) -> None:
    """A budget smaller than one epoch: the first epoch finishes, no second starts, the reason is recorded."""
    config = TrainConfig(epochs=5, batch_size=32, patience=50, max_seconds=1e-6)
    result = api.train(str(data_file), space="tiny", arch="max", out=tmp_path / "t", max_len=12, config=config)
    assert result["train"]["epochs_run"] == 1 and result["train"]["stopped_by"] == "time"
    assert result["train"]["max_seconds"] == 1e-6
    # A larger budget on --resume continues the run that stopped on time.
    more = TrainConfig(epochs=2, batch_size=32, patience=50, max_seconds=3600.0)
    resumed = api.train(str(data_file), space="tiny", arch="max", out=tmp_path / "t", max_len=12, config=more,
                        resume=True)
    assert resumed["train"]["epochs_run"] == 2 and resumed["train"]["stopped_by"] == "epochs"
    assert _train(data_file, tmp_path / "e", epochs=2)["train"]["stopped_by"] == "epochs"
    with pytest.raises(api.ConfigError, match="max_seconds"):
        TrainConfig(max_seconds=0)


def test_loss_drops_all_padding_columns_exactly() -> None:
    """Batches of short windows (what group_by_length makes) skip their all-padding columns; the loss is
    the one over the full padded width, for both attention kinds."""
    torch.manual_seed(0)
    for attention in ("softmax", "linear"):
        dims = ModelDims(n_items=50, max_len=12, hidden=16, inner=(32, 32), embedding=16, heads=2,
                         attention=attention, dropout=0.0)
        model = ElasticSASRec(dims).eval()
        inputs = torch.randint(1, 51, (5, 12))
        inputs[:, :7] = 0  # every row at most 5 items long
        inputs[0, 7:9] = 0
        targets = torch.where(inputs > 0, torch.randint(1, 51, (5, 12)), 0)
        hidden = model(inputs, model.arch)  # the full width, no trimming
        mask = targets > 0
        full = full_softmax_cross_entropy(model.final_states(hidden[mask], model.arch), model.item_matrix(model.arch),
                                          targets[mask] - 1)
        torch.testing.assert_close(next_item_loss(model, inputs, targets, model.arch), full, rtol=1e-5, atol=1e-6)


def test_nan_loss_names_the_step(data_file: Path) -> None:
    data = generate_synthetic(SyntheticConfig(n_users=150, n_items=160, mean_len=12, seed=3))
    splits = leave_one_out(data)
    space = get_space("tiny")
    model = ElasticSASRec(ModelDims.for_space(space, data.n_items, 12).for_arch(space.max_arch()))
    with torch.no_grad():
        model.item_emb.weight[5].fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="epoch 1, step 1"):
        train_arch(model, model.arch, splits.train, splits.valid, data.n_items, 12, TrainConfig(epochs=1))


def test_lr_schedules() -> None:
    steps = 10  # per epoch; 3 epochs
    constant = TrainConfig(epochs=3, lr=0.1)
    assert [constant.lr_at(s, steps) for s in (0, 15, 29)] == [0.1, 0.1, 0.1]
    linear = TrainConfig(epochs=3, lr=0.1, lr_schedule="linear")
    assert linear.lr_at(0, steps) == pytest.approx(0.1) and linear.lr_at(15, steps) == pytest.approx(0.05)
    assert linear.lr_at(29, steps) == pytest.approx(0.1 / 30)  # the last step still learns
    cosine = TrainConfig(epochs=3, lr=0.1, lr_schedule="cosine")
    assert cosine.lr_at(15, steps) == pytest.approx(0.05)
    assert cosine.lr_at(5, steps) > linear.lr_at(5, steps) and cosine.lr_at(25, steps) < linear.lr_at(25, steps)
    values = [cosine.lr_at(s, steps) for s in range(30)]
    assert all(a > b > 0 for a, b in zip(values, values[1:], strict=False))
    # Warm-up of one epoch: 1/10 .. 10/10 of the peak, then the decay over the remaining 20 steps.
    warm = TrainConfig(epochs=3, lr=0.1, lr_schedule="linear", warmup_epochs=1)
    assert [warm.lr_at(s, steps) for s in (0, 9)] == pytest.approx([0.01, 0.1])
    assert warm.lr_at(10, steps) == pytest.approx(0.1) and warm.lr_at(20, steps) == pytest.approx(0.05)
    with pytest.raises(api.ConfigError, match="lr_schedule .* got 'step'"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(api.ConfigError, match="warmup_epochs"):
        TrainConfig(epochs=3, warmup_epochs=3)


def test_training_steps_use_the_scheduled_lr(monkeypatch: pytest.MonkeyPatch) -> None:
    import nasrec.train as train_mod

    seen: list[float] = []
    real_step = train_mod.train_step

    def spy(model, inputs, targets, arch, optimizer, where, step=None):  # type: ignore[no-untyped-def]
        seen.append(optimizer.param_groups[0]["lr"])
        return real_step(model, inputs, targets, arch, optimizer, where, step)

    monkeypatch.setattr(train_mod, "train_step", spy)
    data = generate_synthetic(SyntheticConfig(n_users=150, n_items=160, mean_len=12, seed=3))
    splits = leave_one_out(data)
    space = get_space("tiny")
    model = ElasticSASRec(ModelDims.for_space(space, data.n_items, 12).for_arch(space.max_arch()))
    config = TrainConfig(epochs=2, batch_size=32, lr=0.01, lr_schedule="cosine", patience=50)
    train_arch(model, model.arch, splits.train, splits.valid, data.n_items, 12, config)
    per_epoch = len(seen) // 2
    assert per_epoch > 1 and seen == pytest.approx([config.lr_at(s, per_epoch) for s in range(2 * per_epoch)])


def test_resume_with_a_decaying_lr(data_file: Path, tmp_path: Path) -> None:
    """The schedule continues exactly on --resume; its horizon (--epochs) may not change there."""
    def run(out: Path, **kw: object) -> dict:
        config = TrainConfig(epochs=kw.pop("epochs", 3), batch_size=32, patience=50, lr=0.01,  # type: ignore[arg-type]
                             lr_schedule="linear")
        return api.train(str(data_file), space="tiny", arch="max", out=out, max_len=12, config=config, **kw)

    full = run(tmp_path / "full")

    class Stop(Exception):
        pass

    def stop_after_one(log: object, state: object) -> None:
        raise Stop

    with pytest.raises(Stop):
        run(tmp_path / "cut", on_epoch=stop_after_one)
    with pytest.raises(api.ConfigError, match="different train"):
        run(tmp_path / "cut", epochs=4, resume=True)
    assert run(tmp_path / "cut", resume=True)["metrics"] == full["metrics"]
