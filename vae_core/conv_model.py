"""The convolutional VAE: images of any size from 16 pixels, grayscale or RGB."""

from __future__ import annotations

import math

from torch import nn
from torch.nn import functional as F

from .errors import ConfigError
from .model_base import VAE


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
