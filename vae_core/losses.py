"""The VAE loss: reconstruction + beta * KL(q(z|x) || N(0, I)), the negative ELBO.

Reduction, and why: both terms are SUMMED over their dimensions (pixels for the reconstruction,
latent dimensions for the KL) and then AVERAGED over the batch. The ELBO is a sum of per-pixel
log-likelihoods; averaging the reconstruction over 784 pixels while summing the KL over the latent
dimensions (a common bug) shrinks the reconstruction ~784 times against the KL, the KL wins, and
the posterior collapses to the prior: blurry, identical samples. The batch mean only sets the step
size and keeps the loss comparable across batch sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .models import VAEOutput
from .vqvae import VQVAEOutput

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class LossTerms:
    total: (
        torch.Tensor
    )  # what the optimiser minimises: recon + beta * (KL with free bits), or VQ-VAE's recon + codebook terms
    recon: torch.Tensor  # -log p(x|z), nats per sample
    kl: torch.Tensor  # KL(q(z|x) || p(z)), nats per sample, before beta and free bits
    kl_per_dim: torch.Tensor  # (latent,), batch mean of each dimension's KL


def reconstruction_nll(
    logits: torch.Tensor, x: torch.Tensor, kind: str, log_variance: torch.Tensor | None = None
) -> torch.Tensor:
    """-log p(x|z) per sample (summed over pixels), in nats.

    bce: Bernoulli likelihood of each pixel, with logits for numerical stability.
    mse: Gaussian likelihood with mean sigmoid(logits) and variance 1 (or exp(log_variance) when it
    is learned); with variance 1 this is 0.5 * summed squared error + a constant, i.e. MSE."""
    if kind == "bce":
        per_pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    elif kind == "mse":
        log_var = torch.zeros((), device=x.device) if log_variance is None else log_variance
        squared_error = (torch.sigmoid(logits) - x) ** 2
        per_pixel = 0.5 * (squared_error * torch.exp(-log_var) + log_var + LOG_2PI)
    else:
        raise ValueError(f"unknown reconstruction loss {kind!r}")
    return per_pixel.flatten(1).sum(dim=1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) for each sample and dimension, in closed form:
    0.5 * (mu^2 + sigma^2 - log sigma^2 - 1)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)


def vae_loss(
    output: VAEOutput,
    x: torch.Tensor,
    *,
    recon: str = "bce",
    beta: float = 1.0,
    free_bits: float = 0.0,
    variational: bool = True,
    log_variance: torch.Tensor | None = None,
    recon_reduction: str = "sum",
) -> LossTerms:
    """The batch-mean negative ELBO, with its parts kept apart for the curves.

    recon_reduction "mean" divides the reconstruction by the pixel count (the scale trap, for the
    experiments that show it); the KL stays summed either way."""
    recon_per_sample = reconstruction_nll(output.logits, x, recon, log_variance)
    if recon_reduction == "mean":
        recon_per_sample = recon_per_sample / x[0].numel()
    elif recon_reduction != "sum":
        raise ValueError(f"unknown reconstruction reduction {recon_reduction!r}")
    recon_mean = recon_per_sample.mean()
    if not variational:
        zero = recon_mean.new_zeros(())
        # A VQ-VAE also optimises its codebook and commitment terms: the total says so, its curve too.
        extra = output.codebook_loss if isinstance(output, VQVAEOutput) else zero
        return LossTerms(recon_mean + extra, recon_mean, zero, recon_mean.new_zeros(output.mu.shape[1]))
    kl_per_dim = gaussian_kl(output.mu, output.logvar).mean(dim=0)
    kl = kl_per_dim.sum()
    # Free bits: each dimension's KL counts at least `free_bits` nats, so the optimiser gains
    # nothing by pushing a dimension all the way to the prior (posterior collapse).
    kl_penalty = torch.clamp(kl_per_dim, min=free_bits).sum() if free_bits > 0 else kl
    return LossTerms(recon_mean + beta * kl_penalty, recon_mean, kl, kl_per_dim)


def beta_schedule(step: int, steps_per_epoch: int, *, beta: float, anneal: str, warmup_epochs: float) -> float:
    """The KL weight at `step`: constant, a linear warm-up from 0 (Bowman et al. 2016), or
    cyclical (Fu et al. 2019: rise over the first half of each cycle, hold for the second)."""
    if anneal == "none":
        return beta
    period = max(1.0, warmup_epochs * steps_per_epoch)
    if anneal == "linear":
        return beta * min(1.0, step / period)
    if anneal == "cyclical":
        phase = (step % period) / period
        return beta * min(1.0, 2.0 * phase)
    raise ValueError(f"unknown KL annealing {anneal!r}")
