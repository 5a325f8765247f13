"""Which torch device a run uses. `auto` takes the first CUDA device when torch sees one.

Models, training windows and evaluation batches live on the run's device. Architecture parameters
of the differentiable strategies (a few dozen numbers) stay on the CPU; mixtures move them over.
"""

from __future__ import annotations

import torch
from torch import nn

from nasrec.errors import ConfigError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda if available else cpu; anything else must name a device this machine has."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"--device {name!r}: expected {DEVICE_CHOICES}") from exc
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name!r}: expected {DEVICE_CHOICES}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: torch {torch.__version__} sees no CUDA device; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def describe_device(device: torch.device) -> str:
    """For result.json: `cpu`, or the CUDA device with its name."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (timings on CUDA are otherwise launch times)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The RNG states a checkpoint must hold to continue exactly (dropout draws on the run's device)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
