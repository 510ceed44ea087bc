"""The models' registry: every model by its config name, and `build_model`, which sizes one to the data.

Each model lives in a module of its own (mlp_models.py, conv_model.py, vqvae.py), built on the one
interface of model_base.py; this module imports them all and none imports it back, so a new model
is added here, in one place, and the UI lists it.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import MODEL_DESCRIPTIONS, TrainConfig
from .conv_model import ConvVAE
from .errors import ConfigError
from .mlp_models import MLPVAE, AutoEncoder, ConditionalVAE
from .model_base import VAE, VAEOutput
from .vqvae import VQVAE

# Importable from here as before, wherever they now live.
__all__ = [
    "MLPVAE",
    "MODELS",
    "VAE",
    "VQVAE",
    "AutoEncoder",
    "ConditionalVAE",
    "ConvVAE",
    "VAEOutput",
    "build_model",
    "model_log_variance",
]

MODELS: dict[str, tuple[str, type[VAE]]] = {
    "mlp": (MODEL_DESCRIPTIONS["mlp"], MLPVAE),
    "conv": (MODEL_DESCRIPTIONS["conv"], ConvVAE),
    "ae": (MODEL_DESCRIPTIONS["ae"], AutoEncoder),
    "cvae": (MODEL_DESCRIPTIONS["cvae"], ConditionalVAE),
    "vqvae": (MODEL_DESCRIPTIONS["vqvae"], VQVAE),
}


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
