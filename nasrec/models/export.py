"""Materialise an arch of the supernet as a standalone dense model, and save/load it."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from nasrec.arch import Arch
from nasrec.device import model_device
from nasrec.errors import ConfigError
from nasrec.models.sasrec import ElasticSASRec, ModelDims


def export(supernet: ElasticSASRec, arch: Arch) -> ElasticSASRec:
    """A dense model of `arch` holding copies of the supernet's leading slices, on the supernet's device.

    Every parameter of the small model has the same name as one in the supernet, and every slice is a
    leading one, so copying `src[:n0, :n1, ...]` by name is the whole export."""
    if arch.depth > supernet.dims.depth:
        raise ConfigError(f"arch {arch.label} is deeper than the supernet ({supernet.dims.depth} blocks)")
    model = ElasticSASRec(supernet.dims.for_arch(arch)).to(model_device(supernet))
    source = dict(supernet.named_parameters())
    with torch.no_grad():
        for name, param in model.named_parameters():
            src = source[name]
            if any(s > t for s, t in zip(param.shape, src.shape, strict=True)):
                raise ConfigError(f"arch {arch.label}: {name} {tuple(param.shape)} exceeds the supernet's "
                                  f"{tuple(src.shape)}")
            param.copy_(src[tuple(slice(0, s) for s in param.shape)])
    model.train(supernet.training)
    return model


def save_model(model: ElasticSASRec, directory: str | Path) -> Path:
    """`model.pt` (state dict), `dims.json` and `arch.json` in `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / "model.pt")
    (directory / "dims.json").write_text(json.dumps(model.dims.to_dict(), indent=2))
    (directory / "arch.json").write_text(model.arch.to_json())
    return directory


def load_model(directory: str | Path, device: torch.device | str = "cpu") -> ElasticSASRec:
    directory = Path(directory)
    dims_file = directory / "dims.json"
    if not dims_file.is_file():
        raise ConfigError(f"{directory}: not a saved nasrec model (no dims.json)")
    model = ElasticSASRec(ModelDims.from_dict(json.loads(dims_file.read_text())))
    model.load_state_dict(torch.load(directory / "model.pt", weights_only=True, map_location="cpu"))
    model.to(device)
    model.eval()
    return model
