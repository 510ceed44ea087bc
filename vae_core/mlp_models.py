"""The fully connected models: the note's MLP VAE, the plain autoencoder and the conditional VAE."""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from .model_base import VAE


def _mlp(widths: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MLPVAE(VAE):
    """The source note's model: 784-256-128 -> z (fc_mu, fc_log_var) -> 128-256-784."""

    def __init__(self, image_shape, latent_dim, hidden, num_classes=0):
        super().__init__(image_shape, latent_dim, num_classes)
        pixels = math.prod(image_shape)
        label_width = num_classes if self.conditional else 0
        hidden = list(hidden)
        self.encoder = nn.Sequential(_mlp([pixels + label_width, *hidden]), nn.ReLU())
        self.fc_mu = nn.Linear(hidden[-1], latent_dim)
        self.fc_log_var = nn.Linear(hidden[-1], latent_dim) if self.variational else None
        self.decoder = _mlp([latent_dim + label_width, *reversed(hidden), pixels])

    def encode(self, x, y=None):
        h = x.flatten(1)
        code = self.one_hot(y, x.shape[0], x.device)
        if code is not None:
            h = torch.cat([h, code], dim=1)
        h = self.encoder(h)
        mu = self.fc_mu(h)
        logvar = self.fc_log_var(h) if self.fc_log_var is not None else torch.zeros_like(mu)
        return mu, logvar

    def decode(self, z, y=None):
        code = self.one_hot(y, z.shape[0], z.device)
        if code is not None:
            z = torch.cat([z, code], dim=1)
        return self.decoder(z).view(z.shape[0], *self.image_shape)


class AutoEncoder(MLPVAE):
    """The same encoder and decoder with no sampling and no KL: its latent space is not
    regularised, so decoding points drawn from N(0, I) gives garbage."""

    variational = False


class ConditionalVAE(MLPVAE):
    """Encoder and decoder both see the one-hot label, so the decoder can draw a chosen class."""

    conditional = True
