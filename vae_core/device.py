"""Which device a run trains on: CUDA when there is one, then Apple's MPS, else the CPU."""

from __future__ import annotations

import torch

from .errors import ConfigError


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.insert(0, "cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.insert(0, "mps")
    return devices


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks the fastest present device; naming an absent one is an error, not a silent CPU."""
    present = available_devices()
    if name == "auto":
        return torch.device("cuda" if "cuda" in present else "mps" if "mps" in present else "cpu")
    if name not in present:
        raise ConfigError(f"device {name!r} is not available here; present: {', '.join(present)}")
    return torch.device(name)
