"""Decoded pictures of a trained model, as uint8 images N x C x H x W, and `grid()` to tile them.

Prior samples, reconstructions, interpolations, traversals, the 2D manifold and per-class draws.
`grid()` tiles them into one picture (one image element in the UI instead of dozens)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import norm

from .models import VAE
from .trainer import to_uint8
from .vqvae import VQVAE


def prior_kind(model: VAE) -> str:
    """What the model generates from, so every page describes a model family by what it is:
    "none" (the autoencoder: no prior, N(0, I) draws land where its codes may not be), "gaussian"
    (VAE, CVAE, conv: N(0, I)), "codes" (VQ-VAE: a learned categorical prior over each slot's code)."""
    if isinstance(model, VQVAE):
        return "codes"
    return "gaussian" if model.variational else "none"


def grid(images: np.ndarray, columns: int, padding: int = 2, scale: int = 1) -> np.ndarray:
    """Tile uint8 N x C x H x W images into an H' x W' (x 3) uint8 picture with white gutters."""
    count, channels, height, width = images.shape
    rows = max(1, -(-count // columns))
    canvas = np.full(
        (channels, rows * (height + padding) + padding, columns * (width + padding) + padding), 255, dtype=np.uint8
    )
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top, left = padding + r * (height + padding), padding + c * (width + padding)
        canvas[:, top : top + height, left : left + width] = image
    if scale > 1:
        canvas = canvas.repeat(scale, axis=1).repeat(scale, axis=2)
    return canvas[0] if channels == 1 else canvas.transpose(1, 2, 0)


def _labels(model: VAE, label: int | None, count: int) -> torch.Tensor | None:
    """The label column for `count` decodings: one class for every cell of a conditional model's
    picture (a grid mixing classes would show the labels, not the latent); None for the others."""
    if not model.conditional:
        return None
    if label is None:
        raise ValueError("a conditional model decodes one class at a time: pass the class as `label`")
    if not 0 <= int(label) < model.num_classes:
        raise ValueError(f"class {label} is out of range: this model has classes 0 to {model.num_classes - 1}")
    return torch.full((count,), int(label), dtype=torch.long)


@torch.no_grad()
def decode(model: VAE, z: torch.Tensor, labels: torch.Tensor | None = None) -> np.ndarray:
    model.eval()
    return to_uint8(torch.sigmoid(model.decode(z, labels)))


@torch.no_grad()
def prior_samples(
    model: VAE, count: int, *, temperature: float = 1.0, seed: int = 0, label: int | None = None
) -> np.ndarray:
    """Decode z from the model's prior: N(0, temperature^2 I), or for a VQ-VAE each slot's code drawn
    from its learned frequencies (sharpened below temperature 1): what the model generates from nothing."""
    z = model.sample_prior(count, torch.Generator().manual_seed(seed), temperature)
    return decode(model, z, _labels(model, label, count))


@torch.no_grad()
def reconstruct(model: VAE, x: torch.Tensor, y: torch.Tensor | None = None) -> np.ndarray:
    """Decode each image's posterior mean (no sampling, so the picture is stable)."""
    model.eval()
    mu, _ = model.encode(x, y if model.conditional else None)
    return decode(model, mu, y if model.conditional else None)


@torch.no_grad()
def interpolate(
    model: VAE,
    x_a: torch.Tensor,
    x_b: torch.Tensor,
    steps: int = 10,
    y_a: torch.Tensor | None = None,
    y_b: torch.Tensor | None = None,
) -> np.ndarray:
    """Decode the straight line between the latent means of two images (label of the first for cvae)."""
    model.eval()
    mu_a, _ = model.encode(x_a[None], y_a[None] if model.conditional else None)
    mu_b, _ = model.encode(x_b[None], y_b[None] if model.conditional else None)
    weights = torch.linspace(0, 1, steps)[:, None]
    z = (1 - weights) * mu_a + weights * mu_b
    labels = y_a.repeat(steps) if model.conditional else None
    return decode(model, z, labels)


@torch.no_grad()
def traversal(
    model: VAE,
    dims: list[int],
    *,
    steps: int = 9,
    span: float = 3.0,
    base: torch.Tensor | None = None,
    label: int | None = None,
) -> np.ndarray:
    """One row per latent dimension in `dims`: vary it from -span to +span, the others held at `base`
    (default 0, the prior's mean). Rows in the order given (the page sorts them by KL)."""
    base = torch.zeros(model.latent_dim) if base is None else base.flatten()
    values = torch.linspace(-span, span, steps)
    z = base.repeat(len(dims) * steps, 1)
    for row, dim in enumerate(dims):
        z[row * steps : (row + 1) * steps, dim] = base[dim] + values
    return decode(model, z, _labels(model, label, len(z)))


@torch.no_grad()
def manifold(model: VAE, steps: int = 15, label: int | None = None) -> np.ndarray:
    """For a 2D latent: decode an even grid of the prior's quantiles (Kingma and Welling, fig. 4),
    so each cell covers the same prior mass."""
    if model.latent_dim != 2:
        raise ValueError("the manifold grid needs a 2-dimensional latent space")
    quantiles = torch.from_numpy(norm.ppf(np.linspace(0.05, 0.95, steps))).float()
    grid_y, grid_x = torch.meshgrid(quantiles.flip(0), quantiles, indexing="ij")
    z = torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1)
    return decode(model, z, _labels(model, label, len(z)))


@torch.no_grad()
def per_class(model: VAE, per_row: int = 10, seed: int = 0) -> np.ndarray:
    """cvae: one row per class, the same z across rows, so a column keeps its style."""
    if not model.conditional:
        raise ValueError("per-class generation needs the cvae model")
    z = torch.randn(per_row, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    z = z.repeat(model.num_classes, 1)
    labels = torch.arange(model.num_classes).repeat_interleave(per_row)
    return decode(model, z, labels)
