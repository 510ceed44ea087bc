"""The models: one interface, one registry.

Every model encodes an image batch to (mu, logvar), draws z = mu + sigma * eps, and decodes z to
pixel logits. A forward pass returns a `VAEOutput`, never a bare tuple, so the loss and the UI read
the parts by name.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .config import MODEL_DESCRIPTIONS, TrainConfig
from .errors import ConfigError


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


class ConvVAE(VAE):
    """Two stride-2 convolutions down, two transposed convolutions up; any size from 16 pixels,
    grayscale or RGB. Sizes that are not a multiple of 4 are padded on the way in and cropped on the
    way out."""

    def __init__(self, image_shape, latent_dim, hidden, num_classes=0):
        super().__init__(image_shape, latent_dim, num_classes)
        channels, height, width = image_shape
        if min(height, width) < 16:
            raise ConfigError(f"the conv model needs images of at least 16x16 pixels, not {height}x{width}")
        c1 = hidden[0]
        c2 = hidden[1] if len(hidden) > 1 else 2 * hidden[0]
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, c1, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1),
            nn.ReLU(),
        )
        self.feature_shape = (c2, math.ceil(height / 4), math.ceil(width / 4))
        features = math.prod(self.feature_shape)
        self.fc_mu = nn.Linear(features, latent_dim)
        self.fc_log_var = nn.Linear(features, latent_dim)
        self.fc_decode = nn.Linear(latent_dim, features)
        self.decoder = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(c1, channels, 4, stride=2, padding=1),
        )

    def encode(self, x, y=None):
        # Pad to a multiple of 4 so the two stride-2 steps divide evenly; decode crops it off.
        _, _, height, width = x.shape
        x = F.pad(x, (0, -width % 4, 0, -height % 4))
        h = self.encoder(x).flatten(1)
        return self.fc_mu(h), self.fc_log_var(h)

    def decode(self, z, y=None):
        h = self.fc_decode(z).view(z.shape[0], *self.feature_shape)
        _, height, width = self.image_shape
        return self.decoder(h)[:, :, :height, :width]


MODELS: dict[str, tuple[str, type[VAE]]] = {
    "mlp": (MODEL_DESCRIPTIONS["mlp"], MLPVAE),
    "conv": (MODEL_DESCRIPTIONS["conv"], ConvVAE),
    "ae": (MODEL_DESCRIPTIONS["ae"], AutoEncoder),
    "cvae": (MODEL_DESCRIPTIONS["cvae"], ConditionalVAE),
}
# Here, not at the top: vqvae.py builds on MLPVAE above.
from .vqvae import VQVAE  # noqa: E402

MODELS["vqvae"] = (MODEL_DESCRIPTIONS["vqvae"], VQVAE)


def build_model(config: TrainConfig, image_shape: tuple[int, int, int], num_classes: int = 0) -> VAE:
    """The model `config.model` names, sized to the data."""
    if config.model not in MODELS:
        raise ConfigError(f"unknown model {config.model!r}; choose one of {', '.join(MODELS)}")
    if config.model == "cvae" and num_classes < 2:
        raise ConfigError("the cvae model needs a labelled dataset (2 or more classes)")
    model_class = MODELS[config.model][1]
    model = model_class(
        tuple(image_shape), config.latent_dim, config.hidden, num_classes=num_classes if model_class.conditional else 0
    )
    if config.recon == "mse" and config.learn_variance:
        # One learned log-variance of the Gaussian likelihood, trained with the weights.
        model.log_variance = nn.Parameter(torch.zeros(()))
    return model


def model_log_variance(model: VAE) -> torch.Tensor | None:
    """The learned log-variance of a Gaussian decoder, or None when the variance is fixed at 1."""
    return getattr(model, "log_variance", None)
