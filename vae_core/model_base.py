"""The one interface every model shares: encode to (mu, logvar), sample z, decode to pixel logits.

A forward pass returns a `VAEOutput`, never a bare tuple, so the loss and the UI read the parts by
name. The models themselves (mlp_models.py, conv_model.py, vqvae.py) subclass `VAE`; models.py is
their registry.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class VAEOutput:
    logits: torch.Tensor  # N x C x H x W; sigmoid(logits) is the decoded image
    mu: torch.Tensor  # N x latent
    logvar: torch.Tensor  # N x latent; zeros for the plain autoencoder
    z: torch.Tensor  # N x latent, the sample the decoder saw


class VAE(nn.Module):
    """Base of every model: subclasses provide `encode` and `decode`; this adds the sampling."""

    variational = True
    conditional = False

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int, num_classes: int = 0):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.num_classes = num_classes

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def reparameterize(
        self,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I): the noise is outside the graph, so gradients
        flow to mu and logvar. `eps` given is used as the noise (distributed training hands each
        process its rows of the noise a single process would draw)."""
        if not self.variational:
            return mu
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
    ) -> VAEOutput:
        mu, logvar = self.encode(x, y)
        z = self.reparameterize(mu, logvar, generator, eps)
        return VAEOutput(logits=self.decode(z, y), mu=mu, logvar=logvar, z=z)

    def auxiliary_loss(self, output: VAEOutput) -> torch.Tensor | None:
        """A term this model adds to the loss beyond reconstruction and KL (VQ-VAE: codebook and
        commitment); None for the others."""
        return None

    def sample_prior(
        self, count: int, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """`count` draws of z from the model's prior, on the CPU: N(0, temperature^2 I) here."""
        return torch.randn(count, self.latent_dim, generator=generator) * temperature

    def one_hot(self, y: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor | None:
        """The label code of a conditional model; None for the others."""
        if not self.conditional:
            return None
        if y is None:
            raise ValueError("a conditional model needs labels")
        return F.one_hot(y.to(device).long(), self.num_classes).float().reshape(batch, self.num_classes)
