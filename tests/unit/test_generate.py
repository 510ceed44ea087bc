"""Decoded pictures: a conditional model decodes one chosen class per picture, never a mix."""

import numpy as np
import pytest
import torch

from vae_core import generate
from vae_core.config import TrainConfig
from vae_core.models import build_model

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def cvae():
    torch.manual_seed(0)
    return build_model(TrainConfig(model="cvae", hidden=(16,), latent_dim=2), SHAPE, num_classes=4).eval()


def _decoded_with_class(model, z, label):
    return generate.decode(model, z, torch.full((len(z),), label, dtype=torch.long))


@pytest.mark.parametrize("view", ["manifold", "traversal", "prior_samples"])
def test_a_conditional_view_needs_its_class(cvae, view):
    calls = {
        "manifold": lambda **k: generate.manifold(cvae, 3, **k),
        "traversal": lambda **k: generate.traversal(cvae, [0, 1], steps=3, **k),
        "prior_samples": lambda **k: generate.prior_samples(cvae, 4, **k),
    }
    with pytest.raises(ValueError, match="one class at a time"):
        calls[view]()  # before: each cell got a different class (arange % classes)
    with pytest.raises(ValueError, match="out of range"):
        calls[view](label=4)


def test_every_cell_of_the_manifold_and_traversal_is_the_chosen_class(cvae):
    grid = generate.manifold(cvae, 3, label=2)
    quantiles = torch.from_numpy(generate.norm.ppf(np.linspace(0.05, 0.95, 3))).float()
    grid_y, grid_x = torch.meshgrid(quantiles.flip(0), quantiles, indexing="ij")
    z = torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1)
    assert np.array_equal(grid, _decoded_with_class(cvae, z, 2))
    assert not np.array_equal(grid, generate.manifold(cvae, 3, label=1))  # the class changes the picture

    rows = generate.traversal(cvae, [1], steps=3, span=1.0, label=3)
    z = torch.zeros(3, 2)
    z[:, 1] = torch.linspace(-1, 1, 3)
    assert np.array_equal(rows, _decoded_with_class(cvae, z, 3))


def test_unconditional_models_take_no_class():
    model = build_model(TrainConfig(hidden=(16,), latent_dim=2), SHAPE).eval()
    assert generate.manifold(model, 3).shape == (9, *SHAPE)
