"""The reference training loop: pytorch/examples' VAE (mnist/vae/main.py), plain PyTorch, nothing of ours.

What the benches compare VAE Studio against. It imports torch only -- never `vae_core` -- so when it
runs as its own process (`python bench/reference_loop.py ...`, as bench_training.py runs it) none of
our settings (thread counts, fused Adam, flush cadence) can reach it.

As in that script: an MLP of plain `nn.Linear` layers (here our default sizes, 784-256-128 -> z10 ->
128-256-784), plain Adam (lr 1e-3), the loss BCE summed over pixels + the closed-form KL, and per
batch: zero_grad, forward, loss, backward, `loss.item()` (a host sync every step), step; after each
epoch a test pass in batches of the training batch size. One difference, said plainly: the data is
one tensor in memory, batched by slicing a shuffle (`torch.randperm`), not a DataLoader, so both
sides start from images already on the device and the comparison is of the loops, not of loading.
The decoder returns logits and the loss is `binary_cross_entropy_with_logits` (the same objective as
the script's sigmoid + binary_cross_entropy, and what our models do).

Alone: `python bench/reference_loop.py DATA.pt --batch-size 128 --threads 2` warms up (20 untimed
steps of a throwaway model), then trains one epoch + test pass on DATA.pt ({"train_x", "test_x"} float tensors in [0, 1]) and prints one JSON object: wall and
CPU seconds of that epoch, the thread count, and whether `vae_core` was loaded (it must not be).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

WARM_UP_STEPS = 20
Forward = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # x -> (logits, mu, logvar)


class ReferenceVAE(nn.Module):
    """pytorch/examples' VAE with our default widths: 784-256-128 -> z -> 128-256-784."""

    def __init__(self, pixels: int = 784, hidden: tuple[int, int] = (256, 128), latent_dim: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(pixels, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc_mu = nn.Linear(hidden[1], latent_dim)
        self.fc_logvar = nn.Linear(hidden[1], latent_dim)
        self.fc3 = nn.Linear(latent_dim, hidden[1])
        self.fc4 = nn.Linear(hidden[1], hidden[0])
        self.fc5 = nn.Linear(hidden[0], pixels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        logits = self.fc5(F.relu(self.fc4(F.relu(self.fc3(z)))))
        return logits.view_as(x), mu, logvar


def loss_function(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """That script's loss: reconstruction BCE summed over pixels and batch, plus the closed-form KL."""
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def train_epoch(forward: Forward, optimizer: torch.optim.Optimizer, train_x: torch.Tensor, batch_size: int) -> float:
    """One epoch of that script's train(); returns the mean loss per image. The caller puts the
    model in training mode (that script's `model.train()`)."""
    order = torch.randperm(train_x.shape[0], device=train_x.device)
    train_loss = 0.0
    for start in range(0, len(order), batch_size):
        x = train_x[order[start : start + batch_size]]
        optimizer.zero_grad()
        logits, mu, logvar = forward(x)
        loss = loss_function(logits, x, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
    return train_loss / len(order)


@torch.no_grad()
def test_epoch(forward: Forward, test_x: torch.Tensor, batch_size: int) -> float:
    """That script's test(): the mean loss per test image, in batches of the training batch size."""
    test_loss = 0.0
    for start in range(0, test_x.shape[0], batch_size):
        x = test_x[start : start + batch_size]
        logits, mu, logvar = forward(x)
        test_loss += loss_function(logits, x, mu, logvar).item()
    return test_loss / test_x.shape[0]


def warm_up(train_x: torch.Tensor, batch_size: int) -> None:
    """A few steps of a throwaway model, untimed: a fresh process's first steps pay for page faults
    and the memory allocator settling, which ours, timed in the bench's long-lived process, do not."""
    model = ReferenceVAE(pixels=train_x[0].numel())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_epoch(model, optimizer, train_x[: WARM_UP_STEPS * batch_size], batch_size)


def timed_epoch(data_path: str, batch_size: int, threads: int, seed: int = 0) -> dict:
    """Load the data, build model and optimiser (untimed), then time one epoch + test pass."""
    torch.set_num_threads(threads)
    data = torch.load(data_path, weights_only=True)
    train_x, test_x = data["train_x"], data["test_x"]
    warm_up(train_x, batch_size)
    torch.manual_seed(seed)
    model = ReferenceVAE(pixels=train_x[0].numel())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    wall, cpu = time.perf_counter(), time.process_time()
    model.train()
    train_epoch(model, optimizer, train_x, batch_size)
    model.eval()
    test_epoch(model, test_x, batch_size)
    return {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "threads": torch.get_num_threads(),
        "vae_core_loaded": any(name.split(".")[0] == "vae_core" for name in sys.modules),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Time one epoch of the pytorch/examples-style reference loop.")
    parser.add_argument("data", help="a .pt file holding {'train_x', 'test_x'}")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, required=True, help="torch.set_num_threads for this process")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(timed_epoch(args.data, args.batch_size, args.threads, args.seed)))


if __name__ == "__main__":
    main()
