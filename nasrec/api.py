"""The Python API under the CLI: each CLI command parses its options and calls one function here."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nasrec import cost as cost_mod
from nasrec.arch import Arch, SearchSpace, get_space, parse_arch
from nasrec.data import SequenceData, Splits, leave_one_out, load_data
from nasrec.device import describe_device, model_device, resolve_device
from nasrec.errors import ConfigError
from nasrec.metrics import metrics_from_ranks
from nasrec.models import ElasticSASRec, ModelDims, save_model
from nasrec.train import EpochLog, TrainConfig, TrainState, arch_ranks, evaluate_arch, train_arch

TEST_PROTOCOLS = ("full", "uni100", "pop100")
TEST_RANKS_FILE = "test_ranks.json"


@dataclass(frozen=True)
class DataOptions:
    """Where the interactions come from and how they are filtered."""

    source: str = "synthetic"
    format: str = "auto"
    min_seq_len: int = 3
    kcore: int = 0
    user_col: str | None = None
    item_col: str | None = None
    time_col: str | None = None

    def load(self) -> SequenceData:
        return load_data(self.source, format=self.format, min_seq_len=self.min_seq_len, kcore=self.kcore,
                         user_col=self.user_col, item_col=self.item_col, time_col=self.time_col)


def resolve_max_len(space: SearchSpace, max_len: int | None) -> int:
    """The sequence length of a run: the space's unless lowered; never above what the supernet holds."""
    if max_len is None:
        return space.supernet.max_len
    if not 1 <= max_len <= space.supernet.max_len:
        raise ConfigError(f"--max-len {max_len} is outside 1..{space.supernet.max_len} "
                          f"(the max_len of space {space.name!r})")
    return max_len


def data_summary(data: SequenceData) -> dict[str, Any]:
    return {"name": data.name, "fingerprint": data.fingerprint, "users": data.n_users, "items": data.n_items,
            "interactions": data.n_interactions, "dropped_users": data.dropped_users}


def machine_summary(device: torch.device | None = None) -> dict[str, Any]:
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": describe_device(device or torch.device("cpu"))}


def test_report(model: ElasticSASRec, arch: Arch, splits: Splits, max_len: int, config: TrainConfig
                ) -> tuple[dict[str, Any], torch.Tensor]:
    """Validation (full) and the one test evaluation (full, uni100, pop100) of a trained arch, with the
    full-ranking rank of each test row's target (for `write_test_ranks`)."""
    n_items = splits.data.n_items
    common = {"exclude_history": config.exclude_history, "popularity": splits.item_popularity,
              "seed": config.seed, "batch_size": config.eval_batch_size}
    valid = evaluate_arch(model, arch, splits.valid, n_items, max_len, **common)
    ranks = arch_ranks(model, arch, splits.test, n_items, max_len, protocols=TEST_PROTOCOLS, **common)
    test = {protocol: metrics_from_ranks(r) for protocol, r in ranks.items()}
    return {"valid": valid, "test": test, "exclude_history": config.exclude_history,
            "sampled_negatives": {"uni100": "100 uniform", "pop100": "100 by training-split popularity"}}, ranks["full"]


def write_test_ranks(out: Path, ranks: torch.Tensor, result: dict[str, Any]) -> None:
    """`out/test_ranks.json`: each test row's 0-based full-ranking target rank, so that `nasrec compare` can
    pair runs on their test users without the model files (which may not travel, e.g. back from a GPU)."""
    write_json(out / TEST_RANKS_FILE, {
        "protocol": "full", "exclude_history": result["metrics"]["exclude_history"],
        "data_fingerprint": result["data"]["fingerprint"], "ranks": [int(r) for r in ranks.tolist()]})


def check_sampled_protocols(splits: Splits, negatives: int = 100) -> None:
    """uni100/pop100 need 100 items outside each user's history; say so before training, not after."""
    n_items = splits.data.n_items
    rows = zip(splits.test.inputs, splits.test.targets, strict=True)
    fewest = min(n_items - len(set(h.tolist()) | {int(t)}) for h, t in rows)
    if fewest < negatives:
        raise ConfigError(f"data {splits.data.name!r}: the sampled protocols need {negatives} negatives outside a "
                          f"user's history, but some user leaves only {fewest} of {n_items} items")


def arch_cost(model: ElasticSASRec, arch: Arch, n_items: int, max_len: int, *, latency: bool = True
              ) -> dict[str, Any]:
    """FLOPs (analytic and counted), params and latency of the dense model of `arch`."""
    report = cost_mod.cost_report(arch, n_items, max_len, model=model, latency=latency)
    return {"flops": report["flops"], "counted_flops": report["counted_flops"], "params": report["params"],
            "latency_ms": report.get("latency_ms")}


def evaluated_arch(model: ElasticSASRec, arch: Arch, space: str, splits: Splits, max_len: int,
                   config: TrainConfig, state: TrainState) -> tuple[dict[str, Any], torch.Tensor]:
    """The part of `result.json` shared by `nasrec train` and `nasrec search`: the arch, its cost,
    its validation and (one) test evaluation, the data and the training curve; and the test ranks."""
    metrics, test_ranks = test_report(model, arch, splits, max_len, config)
    return {
        "arch": arch.to_dict(),
        "arch_id": arch.id,
        "space": space,
        **arch_cost(model, arch, splits.data.n_items, max_len),
        "metrics": metrics,
        "data": data_summary(splits.data),
        "seed": config.seed,
        "max_len": max_len,
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        "stopped_by": state.stop_reason(config),
        "history": [{"epoch": h.epoch, "loss": h.loss, "valid_ndcg@10": h.valid["ndcg@10"], "seconds": h.seconds}
                    for h in state.history],
        "machine": machine_summary(model_device(model)),
    }, test_ranks


def write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False))
    tmp.replace(path)


class StageClock:
    """Seconds spent in each stage of a run (`train`, `search`, `retrain`), across interruptions: written to
    `out/seconds.json` after every epoch, right after the epoch's checkpoint, so a run continued with
    `--resume` reports the time of all the work it kept, not only the time since it was resumed."""

    FILE = "seconds.json"

    def __init__(self, out: Path, resume: bool) -> None:
        self.path = out / self.FILE
        self.spent: dict[str, float] = json.loads(self.path.read_text()) if resume and self.path.is_file() else {}
        self._stage, self._before, self._start = "", 0.0, 0.0

    def start(self, stage: str) -> None:
        self._stage, self._before, self._start = stage, float(self.spent.get(stage, 0.0)), time.perf_counter()

    def tick(self) -> float:
        """The stage's seconds so far (the earlier runs' included), recorded."""
        self.spent[self._stage] = self._before + time.perf_counter() - self._start
        write_json(self.path, self.spent)
        return self.spent[self._stage]


def train(data: DataOptions | str = "synthetic", *, space: str = "tiny", arch: str | Arch = "max",
          out: str | Path = "runs/train", max_len: int | None = None, config: TrainConfig | None = None,
          resume: bool = False, device: str = "auto", on_epoch: Callable[[EpochLog, TrainState], None] | None = None,
          on_start: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train one arch from scratch, evaluate test once, write `out/result.json` and the model.

    Everything that can be checked is checked before training starts (space, arch, max_len, data, device).
    `device`: auto (CUDA when torch sees one), cpu, cuda or cuda:N; latency is measured there too."""
    config = config or TrainConfig()
    run_device = resolve_device(device)
    data_opts = DataOptions(source=data) if isinstance(data, str) else data
    search_space = get_space(space)
    chosen = search_space.validate(arch) if isinstance(arch, Arch) else parse_arch(arch, search_space)
    length = resolve_max_len(search_space, max_len)
    out = Path(out)
    checkpoint = out / "checkpoint.pt"
    run_config = {"data": data_opts.__dict__, "space": search_space.name, "arch": chosen.to_dict(),
                  "max_len": length, "train": config.to_dict()}
    if resume:
        _check_resumable(out, run_config)

    dataset = data_opts.load()
    splits = leave_one_out(dataset, seed=config.seed)
    check_sampled_protocols(splits)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", run_config)
    if on_start is not None:
        on_start({"data": data_summary(dataset), "arch": chosen, "max_len": length})

    torch.manual_seed(config.seed)
    dims = ModelDims.for_space(search_space, dataset.n_items, length).for_arch(chosen)
    model = ElasticSASRec(dims).to(run_device)
    clock = StageClock(out, resume)
    clock.start("train")

    def epoch_done(log: EpochLog, state: TrainState) -> None:
        clock.tick()
        if on_epoch is not None:
            on_epoch(log, state)

    state = train_arch(model, chosen, splits.train, splits.valid, dataset.n_items, length, config,
                       checkpoint=checkpoint, resume=resume, on_epoch=epoch_done)
    train_seconds = clock.tick()

    result, test_ranks = evaluated_arch(model, chosen, search_space.name, splits, length, config, state)
    curve = {k: result.pop(k) for k in ("epochs_run", "best_epoch", "stopped_by", "history")}
    result["train"] = {**config.to_dict(), **curve, "seconds": train_seconds}
    save_model(model, out / "model")
    write_test_ranks(out, test_ranks, result)
    write_json(out / "result.json", result)
    return result


# When to stop may change on --resume (continue a run that stopped on them); what is trained may not.
STOPPING_RULES = ("epochs", "patience", "min_epochs", "max_seconds")


def _check_resumable(out: Path, run_config: dict[str, Any]) -> None:
    config_file = out / "config.json"
    if not (out / "checkpoint.pt").is_file() or not config_file.is_file():
        raise ConfigError(f"--resume: {out} holds no checkpoint of an earlier `nasrec train` run")
    earlier = json.loads(config_file.read_text())
    # A run started by an older nasrec lacks the options added since: it ran with their defaults.
    earlier["train"] = {**TrainConfig().to_dict(), **earlier.get("train", {})}

    def fixed(config: dict[str, Any]) -> dict[str, Any]:
        train = config.get("train", {})
        # A decaying learning rate ends at --epochs: there, the epoch count is part of what is trained.
        free = STOPPING_RULES if train.get("lr_schedule", "constant") == "constant" else (
            tuple(r for r in STOPPING_RULES if r != "epochs"))
        train = {k: v for k, v in train.items() if k not in free}
        return {**config, "train": train}

    before, now = fixed(earlier), fixed(run_config)
    changed = sorted(k for k in now if json.dumps(before.get(k), sort_keys=True) != json.dumps(now[k], sort_keys=True))
    if changed:
        raise ConfigError(f"--resume: {out} was started with different {', '.join(changed)}; "
                          "rerun with the same options or another --out")


def cost(space: str, arch: str | Arch = "max", *, n_items: int | None = None, max_len: int | None = None,
         latency: bool = False) -> dict[str, Any]:
    """Analytic and counted FLOPs, params (and optionally latency) of one arch of a space.

    `n_items` defaults to 3,416 (ML-1M after 5-core), the catalogue the built-in spaces are sized for."""
    search_space = get_space(space)
    chosen = search_space.validate(arch) if isinstance(arch, Arch) else parse_arch(arch, search_space)
    length = resolve_max_len(search_space, max_len)
    items = n_items or 3416
    model = ElasticSASRec(ModelDims.for_space(search_space, items, length).for_arch(chosen))
    report = cost_mod.cost_report(chosen, items, length, model=model, latency=latency)
    rng = cost_mod.flops_range(search_space, items, length)
    report["space"] = {"name": search_space.name, "min_flops": rng.min_flops, "max_flops": rng.max_flops}
    return report


def describe_space(name: str, *, n_items: int = 3416, max_len: int | None = None) -> dict[str, Any]:
    space = get_space(name)
    length = resolve_max_len(space, max_len)
    rng = cost_mod.flops_range(space, n_items, length)
    return {**space.describe(), "flops": {
        "n_items": n_items, "max_len": length, "min": rng.min_flops, "max": rng.max_flops,
        "min_arch": rng.min_arch.to_dict(), "max_arch": rng.max_arch.to_dict()}}
