"""`Linear`: `torch.nn.Linear` whose matrix products run in oneDNN instead of MKL on the CPU.

Why: a step of these models is mostly matrix products (70% of a step of the default MLP), and on
the CPU PyTorch sends a float32 `nn.Linear` to MKL, which on a non-Intel CPU takes its AVX2 path.
oneDNN, which PyTorch also ships (for convolutions), picks its kernels by what the CPU can do.
Measured on this project's machine (AMD EPYC with AVX-512, 2 threads; `bench/bench_training.py`
has the whole-epoch figure), one 512x784 @ 784x256 product:

    MKL (nn.Linear)                                  950 us
    oneDNN                                           435 us
    oneDNN held to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2)    860 us

so it is the faster choice even where it cannot use AVX-512. The choice is fixed, not measured
per process, so two runs with the same seed on one machine always do the same arithmetic.

The backward pass is ours (`_OneDNNLinear`): the input gradient is grad @ W and the weight gradient
grad^T @ x, both oneDNN products on transposed views (no copies); the bias gradient is the batch
sum, as autograd computes it for `nn.Linear`. oneDNN's products give the same bits with 1 and 2
threads for these shapes, which the thread tuner relies on; `Trainer` checks it per model anyway
(`threads.thread_count_changes_results`).

Anything else (another device or dtype, a PyTorch without the operator) uses `nn.Linear`'s own
forward. The parameters and state-dict keys are `nn.Linear`'s, so checkpoints do not notice.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F


def _find_onednn_linear():
    """oneDNN's linear operator as PyTorch's CPU compiler uses it, or None in a build without it."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise.default
    except (AttributeError, RuntimeError):
        return None


_onednn_linear = _find_onednn_linear()


def onednn_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weight^T + bias, computed by oneDNN (x: N x in, weight: out x in; views are fine)."""
    return _onednn_linear(x, weight, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return onednn_product(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad
        grad_x = onednn_product(grad, weight.t()) if needs_x else None
        grad_weight = onednn_product(grad.t(), x.t()) if needs_weight else None
        grad_bias = grad.sum(0) if ctx.has_bias and needs_bias else None
        return grad_x, grad_weight, grad_bias


def uses_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (_onednn_linear is not None and x.device.type == "cpu" and weight.device.type == "cpu"
            and x.dtype == torch.float32 and weight.dtype == torch.float32 and x.layout == torch.strided)


class Linear(nn.Linear):
    """`nn.Linear` with oneDNN's products on the CPU (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not uses_onednn(x, self.weight):
            return F.linear(x, self.weight, self.bias)
        flat = x.reshape(-1, x.shape[-1]) if x.dim() != 2 else x
        out = _OneDNNLinear.apply(flat, self.weight, self.bias)
        return out.reshape(*x.shape[:-1], out.shape[-1]) if x.dim() != 2 else out
