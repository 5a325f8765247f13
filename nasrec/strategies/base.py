"""The strategy plugin interface: a small abstract base, declared hyper-parameters, a registry.

A strategy is one module under `nasrec/strategies/` (or an entry point in the group
`nasrec.strategies`) that subclasses `Strategy` and decorates it with `@register_strategy`.
Its hyper-parameters are declared as data (`HyperParam`), so the CLI's `--set`, Optuna and Ray Tune
all read the same declaration.
"""

from __future__ import annotations

import abc
import importlib
import math
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from nasrec.arch import Arch, SearchSpace
from nasrec.budget import PROJECTION_FILL
from nasrec.data import EvalSet, WindowLoader, eval_inputs, training_windows
from nasrec.device import model_device, rng_state, set_rng_state
from nasrec.errors import ConfigError, DataError
from nasrec.models.sasrec import ElasticSASRec, ModelDims

ParamType = Literal["float", "int", "categorical", "bool"]


@dataclass(frozen=True)
class HyperParam:
    """One declared hyper-parameter of a strategy: what `--set`, Optuna and Ray Tune may vary."""

    name: str
    type: ParamType
    default: Any
    low: float | None = None
    high: float | None = None
    log: bool = False  # sample on a log scale (Optuna/Ray Tune)
    choices: tuple[Any, ...] | None = None
    help: str = ""
    # Trials (Optuna) sample from `tune` when given, else from [low, high]: the declared range says what is
    # valid, the tuning range what is worth trying. `tunable=False`: an effort knob trials never vary.
    tune: tuple[float, float] | None = None
    tunable: bool = True

    def parse(self, value: Any, owner: str) -> Any:
        """Coerce `value` (a string from the CLI, or a number) and check it against the declaration."""
        where = f"{owner}: {self.name}"
        try:
            if self.type == "bool":
                if isinstance(value, str):
                    if value.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                        raise ValueError(value)
                    value = value.lower() in {"true", "1", "yes"}
                return bool(value)
            if self.type == "int":
                value = int(value)
            elif self.type == "float":
                value = float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}={value!r} is not a {self.type}") from exc
        if self.type == "categorical":
            if value not in (self.choices or ()):
                raise ConfigError(f"{where}={value!r}; expected one of {list(self.choices or ())}")
            return value
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ConfigError(f"{where}={value} is outside its range [{self.low}, {self.high}]")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}={value} is not finite")
        return value

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "type": self.type, "default": self.default, "help": self.help}
        if self.choices is not None:
            d["choices"] = list(self.choices)
        else:
            d.update(low=self.low, high=self.high, log=self.log)
            if self.tune is not None:
                d["tune"] = list(self.tune)
        d["tunable"] = self.tunable
        return d


class BatchSource:
    """Hands out batches and remembers which split each came from, so tests (and paranoid users) can
    check that architecture parameters step only on arch-validation batches."""

    def __init__(self) -> None:
        self.last_forward: str | None = None
        self.steps: list[tuple[str, str | None]] = []  # (what stepped, split of the last forward)

    @staticmethod
    def tag(tensor: torch.Tensor, split: str) -> torch.Tensor:
        tensor.nasrec_split = split  # type: ignore[attr-defined]
        return tensor

    def saw(self, inputs: torch.Tensor) -> None:
        self.last_forward = getattr(inputs, "nasrec_split", "untagged")

    def record_step(self, what: str) -> None:
        self.steps.append((what, self.last_forward))


@dataclass
class SearchContext:
    """What a strategy searches with. It holds the search-train windows and the arch-validation
    rows only: the validation and test splits are not reachable from here."""

    supernet: ElasticSASRec
    space: SearchSpace
    search_train: list[np.ndarray]
    arch_valid: EvalSet
    n_items: int
    max_len: int
    budget_flops: float
    epochs: int
    batch_size: int
    lr: float
    seed: int
    flops: Callable[[Arch], int]
    checkpoint: Path | None = None
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None
    resume: bool = False
    all_windows: bool = True
    window_stride: int | None = None
    projection_fill: float = PROJECTION_FILL  # the pipeline's budget band (`--projection-fill`)
    source: BatchSource = field(default_factory=BatchSource)
    _train_loader: WindowLoader | None = None
    _arch_inputs: torch.Tensor | None = None
    _arch_targets: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        """The supernet's device: every batch handed out lives there."""
        return model_device(self.supernet)

    def __post_init__(self) -> None:
        if len(self.arch_valid.targets) == 0:
            raise DataError("no arch-validation rows: every user is too short to hold one out of the training part "
                            "(search needs users with at least 5 interactions)")
        inputs, targets = training_windows(self.search_train, self.max_len, all_windows=self.all_windows,
                                           stride=self.window_stride)
        self._train_loader = WindowLoader(inputs, targets, self.batch_size, seed=self.seed, device=self.device)
        self._arch_inputs = eval_inputs(self.arch_valid.inputs, self.max_len).to(self.device)
        self._arch_targets = torch.as_tensor(self.arch_valid.targets).to(self.device)
        self.supernet.input_observer = self.source.saw

    def save_state(self, epoch: int, strategy_state: dict[str, Any]) -> None:
        """Checkpoint after `epoch` search epochs: supernet, the strategy's own state, the RNG."""
        if self.checkpoint is None:
            return
        tmp = self.checkpoint.with_suffix(".tmp")
        torch.save({"epoch": epoch, "supernet": self.supernet.state_dict(), "strategy": strategy_state,
                    "rng": rng_state(self.device)}, tmp)
        tmp.replace(self.checkpoint)  # atomic: a kill mid-write keeps the previous checkpoint

    def load_state(self) -> tuple[int, dict[str, Any]] | None:
        """(epochs done, strategy state) of the last checkpoint when resuming, else None."""
        if not (self.resume and self.checkpoint is not None and self.checkpoint.is_file()):
            return None
        ckpt = torch.load(self.checkpoint, weights_only=False, map_location="cpu")
        self.supernet.load_state_dict(ckpt["supernet"])
        set_rng_state(ckpt["rng"], self.device)
        return ckpt["epoch"], ckpt["strategy"]

    def step(self, optimizer: torch.optim.Optimizer, what: Literal["weights", "arch"]) -> None:
        """Step an optimizer, recording which split the last forward read (see `BatchSource`)."""
        optimizer.step()
        self.source.record_step(what)

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled search-train windows (inputs, next-item targets at every position)."""
        assert self._train_loader is not None
        self._train_loader.set_epoch(epoch)
        for x, y in self._train_loader:
            yield self.source.tag(x, "search_train"), y

    def n_train_batches(self) -> int:
        assert self._train_loader is not None
        return len(self._train_loader)

    def arch_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless shuffled arch-validation batches (inputs, the one target after the last position)."""
        assert self._arch_inputs is not None and self._arch_targets is not None
        targets = self._arch_targets
        gen = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        n = len(targets)
        while True:
            order = torch.randperm(n, generator=gen).to(self.device)
            for i in range(0, n, self.batch_size):
                idx = order[i : i + self.batch_size]
                yield self.source.tag(self._arch_inputs[idx].contiguous(), "arch_valid"), targets[idx]

    def arch_valid_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One ordered pass over arch-validation rows, for scoring candidates."""
        assert self._arch_inputs is not None and self._arch_targets is not None
        targets = self._arch_targets
        for i in range(0, len(targets), 256):
            yield self.source.tag(self._arch_inputs[i : i + 256].contiguous(), "arch_valid"), targets[i : i + 256]


@dataclass
class SearchResult:
    arch: Arch  # the derived arch, before the pipeline's budget guarantee
    preference: Callable[[Arch], float] | None  # higher = preferred; used to project onto the budget
    trace: list[dict[str, Any]]  # one entry per search epoch (architecture weights, losses, ...)
    extra: dict[str, Any] = field(default_factory=dict)


class Strategy(abc.ABC):
    """Searches the space over the supernet and derives one arch."""

    name: ClassVar[str]
    summary: ClassVar[str]
    hyperparams: ClassVar[tuple[HyperParam, ...]] = ()
    # True: `search` trains the supernet's weights, which the retrain then inherits.
    trains_supernet: ClassVar[bool] = True

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        self.params = resolve_params(type(self), params or {})

    def supernet_dims(self, dims: ModelDims) -> ModelDims:
        """The supernet this strategy searches (EASRec adds data-aware gates); the space's by default."""
        return dims

    def progress_steps(self, ctx: SearchContext) -> int:
        """How many times `search` calls `ctx.on_epoch` (search epochs unless the strategy counts otherwise)."""
        return ctx.epochs

    def check_space(self, space: SearchSpace) -> None:
        """Raise ConfigError if this strategy cannot search `space` (called before any data is read)."""
        return None

    @abc.abstractmethod
    def search(self, ctx: SearchContext) -> SearchResult:
        """Run the search; return the derived arch and a trace."""


def resolve_params(cls: type[Strategy], given: dict[str, Any]) -> dict[str, Any]:
    """Defaults overridden by `given`, each parsed and range-checked; unknown keys are an error."""
    declared = {p.name: p for p in cls.hyperparams}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ConfigError(f"strategy {cls.name!r} has no hyper-parameter {', '.join(unknown)}; "
                          f"it has: {', '.join(declared) or 'none'}")
    return {n: p.parse(given[n], cls.name) if n in given else p.default for n, p in declared.items()}


# --- the registry -------------------------------------------------------------------------------

_REGISTRY: dict[str, type[Strategy]] = {}
_DISCOVERED = False


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make a strategy available by its `name`."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__qualname__} needs a class attribute `name`")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise TypeError(f"strategy name {cls.name!r} is already registered by {_REGISTRY[cls.name].__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> None:
    """Import every module of this package and every `nasrec.strategies` entry point once."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    package = importlib.import_module("nasrec.strategies")
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_") and info.name not in {"base", "mixture"}:
            importlib.import_module(f"nasrec.strategies.{info.name}")
    for ep in entry_points(group="nasrec.strategies"):
        ep.load()


def list_strategies() -> dict[str, type[Strategy]]:
    _discover()
    return dict(sorted(_REGISTRY.items()))


def get_strategy(name: str) -> type[Strategy]:
    strategies = list_strategies()
    if name not in strategies:
        raise ConfigError(f"unknown strategy {name!r}; known: {', '.join(strategies)}")
    return strategies[name]


def create_strategy(name: str, params: dict[str, Any] | None = None) -> Strategy:
    return get_strategy(name)(params)
