"""Shared test set-up."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from nasrec.data import SyntheticConfig, generate_synthetic

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    # Tests use tiny tensors: one thread avoids oversubscribing the 2 shared cores (50-100x slower steps).
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synthetic_file(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Write a small seeded synthetic dataset as a `user i1 i2 ...` file (tests read real files)."""

    def make(n_users: int = 150, n_items: int = 160, mean_len: int = 12, seed: int = 0) -> Path:
        data = generate_synthetic(SyntheticConfig(n_users=n_users, n_items=n_items, mean_len=mean_len, seed=seed))
        path = tmp_path_factory.mktemp("data") / f"synthetic-{n_users}-{n_items}-{mean_len}-{seed}.txt"
        rows = zip(data.user_ids, data.sequences, strict=True)
        path.write_text("".join(f"{u} {' '.join(map(str, s.tolist()))}\n" for u, s in rows))
        return path

    return make
