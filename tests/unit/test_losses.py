import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence
from torch.nn import functional as F

from vae_core.losses import beta_schedule, gaussian_kl, reconstruction_nll, vae_loss
from vae_core.models import VAEOutput


def _output(logits, mu, logvar):
    return VAEOutput(logits=logits, mu=mu, logvar=logvar, z=mu)


def test_bce_is_the_bernoulli_nll_summed_over_pixels():
    x = torch.tensor([[[[1.0, 0.0], [0.5, 1.0]]]])
    logits = torch.tensor([[[[2.0, -1.0], [0.0, 0.5]]]])
    p = torch.sigmoid(logits)
    by_hand = -(x * p.log() + (1 - x) * (1 - p).log()).sum()
    assert torch.allclose(reconstruction_nll(logits, x, "bce"), by_hand.reshape(1), atol=1e-6)


def test_mse_is_a_gaussian_with_variance_one():
    x = torch.tensor([[[[0.2, 0.9]]]])
    logits = torch.tensor([[[[0.0, 1.0]]]])
    mean = torch.sigmoid(logits)
    expected = 0.5 * ((mean - x) ** 2).sum() + 0.5 * 2 * math.log(2 * math.pi)
    assert torch.allclose(reconstruction_nll(logits, x, "mse"), expected.reshape(1), atol=1e-6)
    normal = Normal(mean, 1.0)
    assert torch.allclose(-normal.log_prob(x).sum(), expected, atol=1e-6)


def test_analytic_kl_equals_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 7), torch.randn(5, 7)
    reference = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(torch.zeros(5, 7), torch.ones(5, 7)))
    assert torch.allclose(gaussian_kl(mu, logvar), reference, atol=1e-5)


def test_loss_sums_over_pixels_and_dims_and_averages_over_the_batch():
    logits = torch.zeros(2, 1, 2, 2)
    x = torch.ones(2, 1, 2, 2)
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    logvar = torch.zeros(2, 2)
    terms = vae_loss(_output(logits, mu, logvar), x, recon="bce", beta=2.0)
    assert terms.recon.item() == pytest.approx(4 * math.log(2), abs=1e-6)  # 4 pixels of -log 0.5
    assert terms.kl.item() == pytest.approx((0.5 * 1 + 0.5 * 4) / 2, abs=1e-6)
    assert terms.kl_per_dim.tolist() == pytest.approx([0.25, 1.0])
    assert terms.total.item() == pytest.approx(4 * math.log(2) + 2.0 * 1.25, abs=1e-6)


def test_free_bits_floor_each_dimension_but_report_the_true_kl():
    mu = torch.tensor([[0.1, 3.0]])
    logvar = torch.zeros(1, 2)
    logits, x = torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)
    terms = vae_loss(_output(logits, mu, logvar), x, free_bits=1.0)
    assert terms.kl.item() == pytest.approx(0.005 + 4.5)
    assert (terms.total - terms.recon).item() == pytest.approx(1.0 + 4.5)


def test_autoencoder_loss_has_no_kl():
    logits, x = torch.zeros(3, 1, 2, 2), torch.ones(3, 1, 2, 2)
    terms = vae_loss(_output(logits, torch.ones(3, 4), torch.zeros(3, 4)), x, variational=False)
    assert terms.kl.item() == 0.0
    assert terms.total.item() == pytest.approx(4 * math.log(2))
    assert F.binary_cross_entropy_with_logits(logits, x, reduction="sum").item() / 3 == pytest.approx(
        terms.recon.item()
    )


def test_beta_schedules():
    assert beta_schedule(123, 10, beta=2.0, anneal="none", warmup_epochs=5) == 2.0
    assert beta_schedule(0, 10, beta=2.0, anneal="linear", warmup_epochs=5) == 0.0
    assert beta_schedule(25, 10, beta=2.0, anneal="linear", warmup_epochs=5) == 1.0
    assert beta_schedule(500, 10, beta=2.0, anneal="linear", warmup_epochs=5) == 2.0
    # cyclical: period 50 steps, rises over the first 25, holds, then restarts
    assert beta_schedule(10, 10, beta=1.0, anneal="cyclical", warmup_epochs=5) == pytest.approx(0.4)
    assert beta_schedule(40, 10, beta=1.0, anneal="cyclical", warmup_epochs=5) == 1.0
    assert beta_schedule(50, 10, beta=1.0, anneal="cyclical", warmup_epochs=5) == 0.0


def test_mean_reduction_divides_the_reconstruction_by_the_pixel_count_and_keeps_the_kl_summed():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 4, 5)
    out = _output(torch.randn(3, 1, 4, 5), torch.randn(3, 2), torch.randn(3, 2))
    summed = vae_loss(out, x, beta=2.0)
    averaged = vae_loss(out, x, beta=2.0, recon_reduction="mean")
    assert torch.allclose(averaged.recon, summed.recon / 20)
    assert torch.allclose(averaged.kl, summed.kl)
    assert torch.allclose(averaged.total, summed.recon / 20 + 2.0 * summed.kl)
    with pytest.raises(ValueError, match="reduction"):
        vae_loss(out, x, recon_reduction="median")
