"""One definition of an active latent dimension (metrics.ACTIVE_KL_NATS), checked against the KL per
dimension computed here with NumPy from the model's own means and log-variances."""

import numpy as np
import pytest
import torch

from vae_core.metrics import ACTIVE_KL_NATS, active_dimensions, active_units, evaluate
from vae_core.models import MLPVAE

MEANS_SPREAD = 0.2  # a dimension whose means vary this much has a variance of 0.04 and a KL of 0.02 nats


def _model_with_a_busy_a_quiet_and_two_collapsed_dimensions(x: torch.Tensor) -> MLPVAE:
    """z0 carries the image (KL of nats), z1's means vary with standard deviation 0.2 around 0 with
    variance 1 (variance of the means 0.04, above Burda et al.'s 0.01, but a KL of 0.02 nats, below
    the threshold), z2 and z3 are the prior itself (mu 0, log-variance 0)."""
    torch.manual_seed(0)
    model = MLPVAE((1, 4, 4), 4, (16,)).eval()
    with torch.no_grad():
        model.fc_log_var.weight.zero_()
        model.fc_log_var.bias.zero_()
        model.fc_mu.weight[2:].zero_()
        model.fc_mu.bias[2:].zero_()
        mu = model.encode(x)[0]
        scale = MEANS_SPREAD / float(mu[:, 1].std(unbiased=False))
        model.fc_mu.weight[1] *= scale
        model.fc_mu.bias[1] = (model.fc_mu.bias[1] - mu[:, 1].mean()) * scale
        model.fc_mu.weight[0] *= 5.0 / float(mu[:, 0].std())
    return model


def _numpy_kl_per_dim(model: MLPVAE, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        mu, log_var = (t.double().numpy() for t in model.encode(x))
    return (0.5 * (mu**2 + np.exp(log_var) - log_var - 1.0)).mean(axis=0)


def test_active_and_collapsed_dimensions_follow_the_kl_per_dimension():
    x = torch.rand(500, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    model = _model_with_a_busy_a_quiet_and_two_collapsed_dimensions(x)
    kl = _numpy_kl_per_dim(model, x)
    assert kl[0] > 1.0 and kl[1] == pytest.approx(0.5 * MEANS_SPREAD**2, rel=1e-4) and kl[2:].max() < 1e-12
    with torch.no_grad():
        means_variance = model.encode(x)[0].var(0).numpy()
    assert means_variance[1] > 0.01  # the old rule would have called z1 active, while it carries 0.02 nats

    result = evaluate(model, x, None, recon="bce", generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(result.kl_per_dim, kl, rtol=1e-5, atol=1e-9)
    assert active_dimensions(kl).tolist() == [True, False, False, False]
    assert result.active_units == active_units(result.kl_per_dim) == 1
    assert result.as_dict()["active_units"] == 1


def test_the_threshold_is_inclusive_and_in_nats():
    assert active_dimensions([ACTIVE_KL_NATS, np.nextafter(ACTIVE_KL_NATS, 0), 0.955, 0.13, 0.04]).tolist() == [
        True,
        False,
        True,
        True,
        False,
    ]
    assert active_units([0.955, 0.13, 0.04, 0.0]) == 2


def test_a_model_without_a_kl_has_no_active_dimension():
    from vae_core.models import AutoEncoder

    x = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    result = evaluate(AutoEncoder((1, 4, 4), 3, (8,)), x, None, recon="bce")
    assert result.kl_per_dim == [0.0, 0.0, 0.0] and result.active_units == 0
