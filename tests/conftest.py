"""Shared test set-up."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    # Tests use tiny tensors: one thread avoids oversubscribing the 2 shared cores (50-100x slower steps).
    torch.set_num_threads(1)
