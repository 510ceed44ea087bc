"""The metrics the experiments compare runs by: each checked against an independent computation."""

import warnings

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from vae_core.config import TrainConfig
from vae_core.errors import DataError
from vae_core.losses import gaussian_kl
from vae_core.metrics import (
    aggregate_kl,
    image_classifier,
    kl_to_standard_normal,
    prior_recognised,
    prior_sample_spread,
    recognised_share,
    reconstruction_pixel_error,
)
from vae_core.models import VAE, build_model


class ConstantDecoder(VAE):
    """Encodes every image to its first pixels and decodes every z to one fixed image."""

    def __init__(self, image: torch.Tensor, latent_dim: int = 2):
        super().__init__(tuple(image.shape), latent_dim)
        self.image_logits = torch.nn.Parameter(torch.logit(image.clamp(1e-4, 1 - 1e-4)))

    def encode(self, x, y=None):
        mu = x.flatten(1)[:, : self.latent_dim]
        return mu, torch.zeros_like(mu)

    def decode(self, z, y=None):
        return self.image_logits.expand(z.shape[0], *self.image_shape)


def _known_gaussian(dim=3):
    mean = np.array([0.5, -1.0, 2.0])[:dim]
    factor = np.array([[1.0, 0.0, 0.0], [0.3, 0.8, 0.0], [-0.2, 0.4, 1.5]])[:dim, :dim]
    return mean, factor @ factor.T


def test_kl_to_standard_normal_matches_torch_distributions():
    mean, covariance = _known_gaussian()
    reference = kl_divergence(
        MultivariateNormal(torch.tensor(mean), covariance_matrix=torch.tensor(covariance)),
        MultivariateNormal(torch.zeros(3, dtype=torch.float64), covariance_matrix=torch.eye(3, dtype=torch.float64)),
    )
    assert kl_to_standard_normal(mean, covariance) == pytest.approx(float(reference), rel=1e-12)


def test_kl_of_a_diagonal_gaussian_is_the_sum_of_the_per_dimension_kls():
    mu, logvar = torch.tensor([[0.3, -2.0]]), torch.tensor([[0.5, -1.0]])
    expected = float(gaussian_kl(mu, logvar).sum())
    assert kl_to_standard_normal(mu[0].numpy(), np.diag(logvar[0].exp().numpy())) == pytest.approx(expected, rel=1e-6)


def test_aggregate_kl_of_points_whose_moments_are_known_equals_the_closed_form():
    """Points built so that their sample mean and (biased) covariance are exactly `mean` and
    `covariance`: whitened noise, re-coloured."""
    mean, covariance = _known_gaussian()
    noise = np.random.default_rng(0).standard_normal((500, 3))
    noise -= noise.mean(axis=0)
    noise = noise @ np.linalg.inv(np.linalg.cholesky(np.cov(noise, rowvar=False, bias=True))).T
    points = noise @ np.linalg.cholesky(covariance).T + mean
    # The 1e-6 ridge moves the result by about 0.5 * 1e-6 * tr(S^-1) nats.
    assert aggregate_kl(torch.tensor(points)) == pytest.approx(kl_to_standard_normal(mean, covariance), abs=1e-5)


def test_aggregate_kl_is_near_zero_for_prior_draws_and_large_for_spread_codes():
    draws = torch.randn(20_000, 4, generator=torch.Generator().manual_seed(0))
    assert aggregate_kl(draws) < 0.01
    assert aggregate_kl(draws * 10 + 5) > 100


def test_aggregate_kl_refuses_a_single_point():
    with pytest.raises(ValueError, match="N >= 2"):
        aggregate_kl(np.zeros((1, 3)))


def test_classifier_recognises_real_images_and_not_grey_noise(mnist_sample):
    classifier = image_classifier(mnist_sample)
    assert image_classifier(mnist_sample) is classifier  # fitted once per dataset
    assert recognised_share(classifier, mnist_sample.test_x[:500]) > 0.4
    generator = torch.Generator().manual_seed(0)
    grey_noise = torch.rand(500, 1, 28, 28, generator=generator) * 0.2 + 0.4
    uniform_noise = torch.rand(500, 1, 28, 28, generator=generator)
    assert recognised_share(classifier, grey_noise) < 0.05
    assert recognised_share(classifier, uniform_noise) < 0.05


def test_prior_metrics_of_a_model_whose_decoder_ignores_z(mnist_sample):
    """A decoder that outputs the same image for every z: no spread, and the same verdict for every sample."""
    model = ConstantDecoder(mnist_sample.test_x[0])
    assert prior_sample_spread(model, count=200) == pytest.approx(0.0, abs=1e-6)
    assert prior_recognised(model, mnist_sample, count=200) in (0.0, 1.0)


def test_prior_recognised_needs_labels(mnist_sample):
    unlabelled = type(mnist_sample)(
        name="unlabelled",
        train_x=mnist_sample.train_x,
        train_y=None,
        test_x=mnist_sample.test_x,
        test_y=None,
        class_names=None,
        fingerprint="unlabelled",
        source="test",
    )
    model = build_model(TrainConfig(latent_dim=2), mnist_sample.image_shape)
    with pytest.raises(DataError, match="no class labels"):
        prior_recognised(model, unlabelled, count=10)


def test_reconstruction_pixel_error_of_a_perfect_and_a_grey_decoding():
    x = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    assert reconstruction_pixel_error(ConstantDecoder(torch.full((1, 2, 2), 0.5)), x) == pytest.approx(
        float(((x - 0.5) ** 2).mean()), rel=1e-5
    )
    assert reconstruction_pixel_error(ConstantDecoder(x[0]), x[:1]) == pytest.approx(0.0, abs=1e-6)


def test_evaluation_builds_no_autograd_graph():
    """evaluate runs under no_grad: no graph kept per batch (memory and time), and no warning from
    turning a tensor that requires grad into a float (a decorator once slipped onto the function above it)."""
    from vae_core.metrics import evaluate

    model = build_model(TrainConfig(data="digits", hidden=(16,), latent_dim=2), (1, 8, 8))
    x = torch.rand(40, 1, 8, 8)
    seen = []
    model.register_forward_hook(lambda module, inputs, output: seen.append(torch.is_grad_enabled()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluation = evaluate(model, x, None, recon="bce", batch_size=16)
    assert seen == [False, False, False] and np.isfinite(evaluation.neg_elbo)
