"""Train one arch of a model: next-item cross-entropy over all items, early stopping on validation.

Model selection reads only the validation split; the test split is evaluated once, by the caller,
after training. A checkpoint is written after every epoch so an interrupted run resumes exactly
(model, optimiser, RNG and loader state).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasrec.arch import Arch
from nasrec.data import EvalSet, WindowLoader, eval_inputs, training_windows
from nasrec.device import model_device, rng_state, set_rng_state
from nasrec.errors import ConfigError, NasrecError
from nasrec.metrics import evaluate_ranks, metrics_from_ranks
from nasrec.models.sasrec import ElasticSASRec, trim_left_padding
from nasrec.models.scoring import full_softmax_cross_entropy

SELECTION_METRIC = "ndcg@10"  # validation, full ranking
LR_SCHEDULES = ("constant", "linear", "cosine")


class TrainingDiverged(NasrecError):
    """The loss became NaN or infinite."""

    exit_code = 1


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    # Per-step learning rate: `constant`, or decayed towards 0 over `epochs` (`linear`, `cosine`); either
    # after a linear warm-up of `warmup_epochs`. A decay ends at `epochs`, so that count fixes the schedule.
    lr_schedule: str = "constant"
    warmup_epochs: float = 0.0
    weight_decay: float = 0.0
    patience: int = 10  # epochs without a better validation NDCG@10 before stopping
    # Patience may not stop training before this epoch (Lightning's min_epochs): deep archs trained from
    # scratch can sit on a popularity plateau for several epochs before they learn.
    min_epochs: int = 0
    all_windows: bool = True  # long histories contribute every max_len window, not only the last
    window_stride: int | None = None  # < max_len: overlapping windows, each target once with more context
    group_by_length: bool = False  # batches of similar-length windows: less padding to compute (WindowLoader)
    exclude_history: bool = False  # drop history items from the full ranking
    eval_batch_size: int = 256
    seed: int = 0
    # Wall-time budget in seconds, checked between epochs (an epoch that starts under it finishes, as in
    # RecBole's time caps); the best-validation weights so far are kept. Counts resumed epochs too.
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.min_epochs <= self.epochs:
            raise ConfigError(f"min_epochs (--min-epochs) must be between 0 and epochs (--epochs, {self.epochs}), "
                              f"got {self.min_epochs}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ConfigError(f"max_seconds must be > 0, got {self.max_seconds}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule (--lr-schedule) must be one of {', '.join(LR_SCHEDULES)}, "
                              f"got {self.lr_schedule!r}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(f"warmup_epochs (--warmup-epochs) must be >= 0 and below epochs (--epochs, "
                              f"{self.epochs}), got {self.warmup_epochs}")

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """The learning rate of optimiser step `step` (0-based, counted over all epochs)."""
        warmup = round(self.warmup_epochs * steps_per_epoch)
        if step < warmup:
            return self.lr * (step + 1) / warmup
        if self.lr_schedule == "constant":
            return self.lr
        # Below 1 at every step of the run, so the last step still learns.
        progress = (step - warmup) / max(1, self.epochs * steps_per_epoch - warmup)
        if self.lr_schedule == "linear":
            return self.lr * (1.0 - progress)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EpochLog:
    epoch: int
    loss: float
    valid: dict[str, float]
    seconds: float


@dataclass
class TrainState:
    """Everything needed to continue a run; what the checkpoint holds."""

    epoch: int = 0  # epochs completed
    best_epoch: int = 0
    best_score: float = float("-inf")
    best_state: dict[str, torch.Tensor] | None = None
    history: list[EpochLog] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Training time so far, every epoch's validation included."""
        return sum(h.seconds for h in self.history)

    def stop_reason(self, config: TrainConfig) -> str | None:
        """Why training stops before another epoch (`patience`, `epochs`, `time`), or None to go on."""
        if self.epoch >= config.min_epochs and self.epoch - self.best_epoch >= config.patience:
            return "patience"
        if self.epoch >= config.epochs:
            return "epochs"
        if config.max_seconds is not None and self.seconds >= config.max_seconds:
            return "time"
        return None


def next_item_loss(model: ElasticSASRec, inputs: torch.Tensor, targets: torch.Tensor, arch: Arch) -> torch.Tensor:
    """Cross-entropy over all items at every non-padding position.

    Only the valid positions are scored: with right-aligned windows most short histories are padding,
    and the [positions x items] logits are the largest tensor of a step. Leading columns that are padding
    in every row are dropped first (exact: positions are right-aligned and padding is masked)."""
    inputs = trim_left_padding(inputs)
    targets = targets[:, targets.shape[1] - inputs.shape[1]:]
    hidden = model(inputs, arch)
    mask = targets > 0
    z = model.final_states(hidden[mask], arch)
    return full_softmax_cross_entropy(z, model.item_matrix(arch), targets[mask] - 1)


def train_step(model: ElasticSASRec, inputs: torch.Tensor, targets: torch.Tensor, arch: Arch,
               optimizer: torch.optim.Optimizer, where: str, step: Callable[[], None] | None = None) -> float:
    """One weight update on a batch; a non-finite loss stops with `where` (epoch, step, arch) in the error.
    `step` replaces `optimizer.step` (search code records which split each step read)."""
    loss = next_item_loss(model, inputs, targets, arch)
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"loss is {loss.item()} at {where} (arch {arch.label}); lower the learning rate")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    (step or optimizer.step)()
    return loss.item()


def make_adam(params: Any, **kwargs: Any) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass over all parameters; several times faster on a CPU)."""
    return torch.optim.Adam(params, fused=True, **kwargs)


def evaluate_arch(model: ElasticSASRec, arch: Arch, split: EvalSet, n_items: int, max_len: int, *,
                  protocols: tuple[str, ...] = ("full",), exclude_history: bool = False,
                  popularity: np.ndarray | None = None, seed: int = 0, batch_size: int = 256
                  ) -> dict[str, dict[str, float]]:
    """Ranking metrics of `arch` on one evaluation split (valid, test or arch-valid)."""
    ranks = arch_ranks(model, arch, split, n_items, max_len, protocols=protocols, exclude_history=exclude_history,
                       popularity=popularity, seed=seed, batch_size=batch_size)
    return {protocol: metrics_from_ranks(r) for protocol, r in ranks.items()}


def arch_ranks(model: ElasticSASRec, arch: Arch, split: EvalSet, n_items: int, max_len: int, *,
               protocols: tuple[str, ...] = ("full",), exclude_history: bool = False,
               popularity: np.ndarray | None = None, seed: int = 0, batch_size: int = 256
               ) -> dict[str, torch.Tensor]:
    """The 0-based target rank of each row of `split` under `arch`, per protocol (`evaluate_arch`'s ranks)."""
    was_training = model.training
    model.eval()
    device = model_device(model)

    def score(batch: torch.Tensor) -> torch.Tensor:
        return model.score_last(batch.to(device, non_blocking=True), arch)

    with torch.inference_mode():
        ranks = evaluate_ranks(score, eval_inputs(split.inputs, max_len), torch.as_tensor(split.targets),
                               split.inputs, n_items, protocols=protocols, exclude_history=exclude_history,
                               popularity=popularity, seed=seed, batch_size=batch_size)
    model.train(was_training)
    return ranks


def _save_checkpoint(path: Path, model: ElasticSASRec, optimizer: torch.optim.Optimizer, state: TrainState) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "state": {**asdict(state), "history": [asdict(h) for h in state.history]},
        "rng": rng_state(model_device(model)),
    }, tmp)
    tmp.replace(path)  # atomic: a kill mid-write leaves the previous checkpoint intact


def _load_checkpoint(path: Path, model: ElasticSASRec, optimizer: torch.optim.Optimizer) -> TrainState:
    device = model_device(model)
    # On the CPU: RNG states must be CPU tensors; model and optimizer copy their tensors to the device.
    ckpt = torch.load(path, weights_only=False, map_location="cpu")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"], device)
    raw = ckpt["state"]
    return TrainState(raw["epoch"], raw["best_epoch"], raw["best_score"], raw["best_state"],
                      [EpochLog(**h) for h in raw["history"]])


def train_arch(model: ElasticSASRec, arch: Arch, train_sequences: list[np.ndarray], valid: EvalSet,
               n_items: int, max_len: int, config: TrainConfig, *, checkpoint: Path | None = None,
               resume: bool = False, on_epoch: Callable[[EpochLog, TrainState], None] | None = None
               ) -> TrainState:
    """Train `arch` of `model` in place, on the model's device; on return the model holds the
    best-validation weights."""
    torch.manual_seed(config.seed)
    inputs, targets = training_windows(train_sequences, max_len, all_windows=config.all_windows,
                                       stride=config.window_stride)
    loader = WindowLoader(inputs, targets, config.batch_size, seed=config.seed,
                          group_by_length=config.group_by_length, device=model_device(model))
    optimizer = make_adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state = TrainState()
    if resume and checkpoint is not None and checkpoint.is_file():
        state = _load_checkpoint(checkpoint, model, optimizer)

    while state.stop_reason(config) is None:
        start = time.perf_counter()
        model.train()
        loader.set_epoch(state.epoch)
        total, steps = 0.0, 0
        for step, (x, y) in enumerate(loader):
            # Set from the step count, not from a scheduler's state, so --resume continues it exactly.
            for group in optimizer.param_groups:
                group["lr"] = config.lr_at(state.epoch * len(loader) + step, len(loader))
            total += train_step(model, x, y, arch, optimizer, f"epoch {state.epoch + 1}, step {step + 1}")
            steps += 1
        metrics = evaluate_arch(model, arch, valid, n_items, max_len, exclude_history=config.exclude_history,
                                batch_size=config.eval_batch_size)["full"]
        state.epoch += 1
        log = EpochLog(state.epoch, total / max(steps, 1), metrics, time.perf_counter() - start)
        state.history.append(log)
        if metrics[SELECTION_METRIC] > state.best_score:
            state.best_score, state.best_epoch = metrics[SELECTION_METRIC], state.epoch
            state.best_state = copy.deepcopy(model.state_dict())
        if checkpoint is not None:
            _save_checkpoint(checkpoint, model, optimizer, state)
        if on_epoch is not None:
            on_epoch(log, state)

    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    return state
