"""Held-out metrics: the negative ELBO, the importance-weighted bound on the NLL (Burda et al. 2016),
active units and KL per dimension. All in nats per sample."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .losses import gaussian_kl, reconstruction_nll, vae_loss
from .models import VAE, model_log_variance

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al.: a unit is active when Cov_x(E_q[z_u]) > 0.01


@dataclass(frozen=True)
class Evaluation:
    neg_elbo: float  # recon + KL (beta 1, no free bits): the bound itself
    recon: float
    kl: float
    kl_per_dim: list[float]
    active_units: int

    def as_dict(self) -> dict:
        return {"test_neg_elbo": self.neg_elbo, "test_recon": self.recon, "test_kl": self.kl,
                "kl_per_dim": self.kl_per_dim, "active_units": self.active_units}


def _batches(x: torch.Tensor, y: torch.Tensor | None, batch_size: int):
    for start in range(0, x.shape[0], batch_size):
        yield x[start:start + batch_size], None if y is None else y[start:start + batch_size]


@torch.no_grad()
def latent_means(model: VAE, x: torch.Tensor, y: torch.Tensor | None = None, batch_size: int = 2048) -> torch.Tensor:
    """E_q[z|x] of every image, on the images' device."""
    model.eval()
    return torch.cat([model.encode(xb, yb)[0] for xb, yb in _batches(x, y, batch_size)])


def active_units(mu: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """How many latent dimensions the encoder uses: the variance over the data of each mean."""
    if mu.shape[0] < 2:
        return 0
    return int((mu.var(dim=0) > threshold).sum())


@torch.no_grad()
def evaluate(model: VAE, x: torch.Tensor, y: torch.Tensor | None, *, recon: str,
             generator: torch.Generator | None = None, batch_size: int = 1024) -> Evaluation:
    """The test negative ELBO with one sample of z per image (the training objective with beta 1)."""
    model.eval()
    total_recon, total_kl, kl_dims, means = 0.0, 0.0, None, []
    for xb, yb in _batches(x, y, batch_size):
        out = model(xb, yb, generator=generator)
        terms = vae_loss(out, xb, recon=recon, variational=model.variational,
                         log_variance=model_log_variance(model))
        n = xb.shape[0]
        total_recon += float(terms.recon) * n
        total_kl += float(terms.kl) * n
        kl_dims = terms.kl_per_dim * n if kl_dims is None else kl_dims + terms.kl_per_dim * n
        means.append(out.mu)
    count = x.shape[0]
    model.train()
    return Evaluation(
        neg_elbo=(total_recon + total_kl) / count, recon=total_recon / count, kl=total_kl / count,
        kl_per_dim=[float(v) for v in (kl_dims / count)], active_units=active_units(torch.cat(means)),
    )


@torch.no_grad()
def iwae_nll(model: VAE, x: torch.Tensor, y: torch.Tensor | None, *, recon: str, k: int = 5000,
             generator: torch.Generator | None = None, max_elements: int = 2 ** 24,
             progress: Callable[[int, int], None] | None = None) -> float:
    """-log p(x) estimated by log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x): a bound that
    tightens as k grows (k=1 is the ELBO). Computed in chunks of samples to bound memory."""
    if not model.variational:
        raise ValueError("the importance-weighted bound needs a variational model (not 'ae')")
    model.eval()
    pixels = math.prod(x.shape[1:])
    chunk = max(1, min(k, max_elements // max(1, pixels * min(x.shape[0], 64))))
    totals = []
    done = 0
    for xb, yb in _batches(x, y, 64):
        mu, logvar = model.encode(xb, yb)
        std = torch.exp(0.5 * logvar)
        log_weights = []
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            eps = torch.randn((n, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + std * eps  # n x B x D
            flat_z = z.reshape(-1, mu.shape[1])
            flat_y = None if yb is None else yb.repeat(n)
            logits = model.decode(flat_z, flat_y)
            flat_x = xb.repeat(n, 1, 1, 1)
            log_px_z = -reconstruction_nll(logits, flat_x, recon, model_log_variance(model)).view(n, -1)
            log_pz = (-0.5 * (z.pow(2) + math.log(2 * math.pi))).sum(-1)
            log_qz = (-0.5 * (eps.pow(2) + logvar + math.log(2 * math.pi))).sum(-1)
            log_weights.append(log_px_z + log_pz - log_qz)
        log_w = torch.cat(log_weights)  # k x B
        totals.append(-(torch.logsumexp(log_w, dim=0) - math.log(k)))
        done += xb.shape[0]
        if progress:
            progress(done, x.shape[0])
    model.train()
    return float(torch.cat(totals).mean())


__all__ = ["Evaluation", "evaluate", "iwae_nll", "active_units", "latent_means", "gaussian_kl"]
