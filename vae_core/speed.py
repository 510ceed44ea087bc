"""Speed switches of a training step as plain flags: the precision of its arithmetic and torch.compile.

Measured in bench/bench_gpu.py.

bf16: the forward pass and the loss run under autocast (matrix products in bfloat16, reductions
such as the loss in float32 where PyTorch's autocast lists say so) while the weights, their
gradients and Adam's moments stay float32 ("master weights"). bfloat16 has float32's range, so no
loss scaling is needed. It changes the numbers a run computes, so it is part of the TrainConfig;
evaluation and pictures use the float32 weights as they are, without autocast.
"""

from __future__ import annotations

import contextlib

import torch

from .errors import ConfigError


def check_precision(precision: str, device: torch.device) -> None:
    """ConfigError, before training starts, when `device` cannot run `precision`."""
    if precision == "fp32":
        return
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"this GPU ({torch.cuda.get_device_name(device)}) has no bfloat16 support; use --precision fp32"
        )
    if not torch.amp.is_autocast_available(device.type):
        raise ConfigError(f"PyTorch offers no autocast on {device.type}, which {precision} needs; use --precision fp32")


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype of the activations of a step (what its latent means, and so its noise, are in)."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context of a step's forward pass and loss: bf16 autocast, or nothing at all for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=compute_dtype(precision))


def compiled(module: torch.nn.Module, mode: str = "default") -> torch.nn.Module:
    """`module` compiled by torch.compile (TorchInductor): the first steps pay the compile time, the
    later ones run fused kernels. Call it on the outermost module (e.g. the DDP wrapper), as
    PyTorch's DDP notes advise, so the compiler sees where gradients are reduced. `mode` is
    torch.compile's ("reduce-overhead" adds CUDA graphs; bench/bench_gpu.py measures both)."""
    return torch.compile(module, mode=mode)
