"""Optuna samplers that survive pickling, for the two places nasrec pickles a study's sampler.

The `optuna` strategy checkpoints its whole study with `pickle` (so `--resume` proposes exactly what an
uninterrupted search would), and Ray Tune pickles `OptunaSearch`, sampler included, when a `Tuner` is
built or restored. Optuna 5.1's genetic samplers (`NSGAIISampler`, via `BaseGASampler`) hold a
`threading.Lock` and define no `__getstate__`, so both fail with "cannot pickle '_thread.lock' object".
`nsga2_sampler` returns an NSGA-II sampler that drops the lock when pickled and makes a new one when
unpickled; everything else (its RNG state, generation cache) is pickled as before, so a restored sampler
proposes what the original would have.
"""

from __future__ import annotations

import threading
from typing import Any

import optuna

_LOCK_ATTRIBUTES = ("_thread_lock",)  # BaseGASampler (Optuna 5.1); absent before, so nothing to drop there


class PicklableNSGAIISampler(optuna.samplers.NSGAIISampler):
    """`optuna.samplers.NSGAIISampler` whose instances pickle and deep-copy on every Optuna >= 5.0."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in _LOCK_ATTRIBUTES:
            if name in state:
                state[name] = None  # a lock guards this process's threads only: the copy gets its own
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name in _LOCK_ATTRIBUTES:
            if name in state:
                setattr(self, name, threading.Lock())


def nsga2_sampler(population_size: int, seed: int) -> optuna.samplers.NSGAIISampler:
    """A seeded NSGA-II sampler that can be pickled (see the module docstring)."""
    return PicklableNSGAIISampler(population_size=population_size, seed=seed)
