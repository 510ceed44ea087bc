"""VQ-VAE (van den Oord et al. 2017): a discrete latent instead of a Gaussian one.

The MLP encoder's output z_e (latent_dim numbers) is cut into slots of CODE_DIM numbers (of one
number when latent_dim is odd), and each slot is snapped to the nearest of CODEBOOK_SIZE learned code vectors. The decoder only ever sees
codes. Snapping has no gradient, so the decoder's gradient is copied straight through to z_e, and
two terms train the rest (`codebook_loss`, carried by the forward pass's output into the loss's
total): the codebook term pulls each used code towards the encoder outputs it stood for, the
commitment term keeps the encoder near its codes.

Training has no KL: the prior is learned apart, as in the paper. Here it is small: one categorical
distribution per slot, the running frequency with which training used each code (`code_counts`),
so sampling draws each slot's code as often as the data used it. It also shows codebook usage:
codes never used are dead weight, a known failure of VQ training.

The bound on -log p(x) (`code_nll`): the encoder puts all its mass on one code per slot, so
KL(q(codes|x) || p(codes)) = -log p(codes), and -ELBO = reconstruction - log p(codes) under the
learned prior, the one samples come from. (Under the paper's uniform prior it would be the
reconstruction + slots * log CODEBOOK_SIZE.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .mlp_models import MLPVAE
from .model_base import VAEOutput

CODE_DIM = 2  # numbers per slot, when latent_dim is a multiple of it (else 1)
CODEBOOK_SIZE = 64
COMMITMENT = 0.25  # beta of the paper's commitment term
USAGE_DECAY = 0.99  # the prior's running frequencies forget old batches at this rate per step


@dataclass(frozen=True)
class VQVAEOutput(VAEOutput):
    codebook_loss: torch.Tensor  # codebook + COMMITMENT * commitment, a batch mean: optimised with the rest


class VQVAE(MLPVAE):
    variational = False  # no Gaussian sampling and no KL in training; the loss adds `codebook_loss`

    def __init__(self, image_shape, latent_dim, hidden, num_classes=0):
        super().__init__(image_shape, latent_dim, hidden, num_classes)
        self.code_dim = CODE_DIM if latent_dim % CODE_DIM == 0 else 1
        self.slots = latent_dim // self.code_dim
        # Codes start where a fresh encoder's outputs are (about N(0, 0.5^2)), so most get used at once.
        self.codebook = nn.Parameter(0.5 * torch.randn(CODEBOOK_SIZE, self.code_dim))
        self.register_buffer("code_counts", torch.full((self.slots, CODEBOOK_SIZE), 1.0 / CODEBOOK_SIZE))

    def nearest_codes(self, z: torch.Tensor) -> torch.Tensor:
        """For N x latent_dim points, the index of the nearest code of each slot: N x slots."""
        slots = z.reshape(z.shape[0], self.slots, self.code_dim)
        distances = (slots.unsqueeze(2) - self.codebook).pow(2).sum(-1)  # N x slots x codes
        return distances.argmin(-1)

    def codes_to_z(self, codes: torch.Tensor) -> torch.Tensor:
        return self.codebook[codes].reshape(codes.shape[0], self.latent_dim)

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        return self.codes_to_z(self.nearest_codes(z))

    def forward(self, x, y=None, generator=None, eps=None) -> VAEOutput:
        z_e, logvar = self.encode(x, y)
        codes = self.nearest_codes(z_e)
        if self.training:
            self._count(codes)
        snapped = self.codes_to_z(codes)
        # Straight-through: the decoder sees the codes, its gradient goes on to z_e unchanged.
        z = z_e + (snapped - z_e).detach()
        return VQVAEOutput(
            logits=super().decode(z, y), mu=z_e, logvar=logvar, z=z, codebook_loss=self.codebook_loss(z_e, snapped)
        )

    def decode(self, z, y=None):
        """Any z (a prior draw, a traversal) is snapped to codes first: the decoder knows nothing else."""
        return super().decode(self.quantize(z), y)

    def codebook_loss(self, z_e: torch.Tensor, snapped: torch.Tensor | None = None) -> torch.Tensor:
        """Codebook + COMMITMENT * commitment, summed over latent numbers, averaged over the batch
        (`snapped`: z_e's nearest codes, when the caller has them)."""
        codes = self.quantize(z_e) if snapped is None else snapped
        codebook = (codes - z_e.detach()).pow(2).sum(1).mean()
        commitment = (z_e - codes.detach()).pow(2).sum(1).mean()
        return codebook + COMMITMENT * commitment

    @torch.no_grad()
    def code_nll(self, z_e: torch.Tensor) -> torch.Tensor:
        """-log p(codes) of each image's codes under the learned prior, in nats (N,): the KL from the
        encoder's one-code posterior to the prior, the second term of the bound (see the module)."""
        log_prior = self.code_prior().clamp_min(torch.finfo(self.code_counts.dtype).tiny).log()  # slots x codes
        return -log_prior.gather(1, self.nearest_codes(z_e).t()).sum(0)

    @torch.no_grad()
    def _count(self, codes: torch.Tensor) -> None:
        used = torch.zeros_like(self.code_counts).scatter_add_(
            1, codes.t(), torch.ones(codes.t().shape, device=codes.device)
        )
        self.code_counts.mul_(USAGE_DECAY).add_((1 - USAGE_DECAY) * used / codes.shape[0])

    def code_prior(self) -> torch.Tensor:
        """The learned prior: for each slot, the probability of each code (slots x codes)."""
        return self.code_counts / self.code_counts.sum(1, keepdim=True)

    @torch.no_grad()
    def sample_prior(
        self, count: int, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """Each slot's code drawn from its learned frequencies (sharpened below temperature 1)."""
        prior = self.code_prior().cpu()
        # Scaled so each slot's likeliest code is 1 before the power: at temperature 0 the others
        # vanish, never all of them.
        probabilities = (prior / prior.max(1, keepdim=True).values) ** (1.0 / max(temperature, 1e-3))
        codes = torch.multinomial(probabilities, count, replacement=True, generator=generator).t()
        return self.codes_to_z(codes.to(self.codebook.device))

    def codebook_usage(self) -> dict:
        """How much of the codebook the data uses: codes any slot uses at least 1% of the time,
        and the perplexity (the effective number of codes) averaged over slots."""
        prior = self.code_prior()
        entropy = -(prior * prior.clamp_min(1e-12).log()).sum(1)
        return {
            "codes_used": int((prior > 0.01).any(0).sum()),
            "codebook_size": CODEBOOK_SIZE,
            "perplexity": float(entropy.exp().mean()),
            "bits_per_image": float(entropy.sum() / math.log(2)),
        }
