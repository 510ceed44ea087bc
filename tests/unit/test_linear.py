"""The oneDNN linear layer: the same function and gradients as torch.nn.Linear, the same parameters
and state-dict keys, and torch's own path wherever oneDNN is not used."""

import pytest
import torch
from torch.nn import functional as F

from vae_core.linear import Linear, uses_onednn


def twins(in_features: int = 784, out_features: int = 256, dtype=torch.float32) -> tuple[Linear, torch.nn.Linear]:
    torch.manual_seed(0)
    ours = Linear(in_features, out_features).to(dtype)
    plain = torch.nn.Linear(in_features, out_features).to(dtype)
    plain.load_state_dict(ours.state_dict())
    return ours, plain


def outputs_and_gradients(layer: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    x = x.detach().clone().requires_grad_()
    out = layer(x)
    (out.sin() * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).sum().backward()
    return [out.detach(), x.grad, layer.weight.grad, layer.bias.grad]


def test_oneDNN_is_what_a_float32_cpu_layer_uses():
    ours, _ = twins()
    assert uses_onednn(torch.ones(2, 784), ours.weight)


@pytest.mark.parametrize("batch", [1, 7, 128])
def test_output_and_all_three_gradients_match_torch_linear(batch):
    ours, plain = twins()
    x = torch.randn(batch, 784, generator=torch.Generator().manual_seed(batch))
    for mine, torchs in zip(outputs_and_gradients(ours, x), outputs_and_gradients(plain, x)):
        torch.testing.assert_close(mine, torchs, rtol=1e-5, atol=1e-5)


def test_no_input_gradient_is_computed_when_the_input_needs_none():
    ours, _ = twins()
    ours(torch.randn(4, 784)).sum().backward()
    assert ours.weight.grad is not None and ours.bias.grad is not None


def test_a_layer_without_bias_and_inputs_with_more_dimensions():
    torch.manual_seed(0)
    ours = Linear(6, 3, bias=False)
    x = torch.randn(2, 5, 6)
    out = ours(x)
    assert out.shape == (2, 5, 3)
    torch.testing.assert_close(out, F.linear(x, ours.weight), rtol=1e-6, atol=1e-6)


def test_float64_takes_torchs_own_path_exactly():
    ours, plain = twins(dtype=torch.float64)
    x = torch.randn(5, 784, dtype=torch.float64)
    assert not uses_onednn(x, ours.weight)
    for mine, torchs in zip(outputs_and_gradients(ours, x), outputs_and_gradients(plain, x)):
        assert torch.equal(mine, torchs)


def test_parameters_and_state_dict_are_torch_linears():
    ours, plain = twins(10, 4)
    assert list(ours.state_dict()) == list(plain.state_dict()) == ["weight", "bias"]
    reloaded = Linear(10, 4)
    reloaded.load_state_dict(plain.state_dict())  # a checkpoint written by torch.nn.Linear loads
    assert torch.equal(reloaded.weight, plain.weight)
