"""How many CPU threads PyTorch may use for one training step: the one place that decides it.

The policy: on the CPU, one intra-op thread. Measured on the 2-core machine this app targets, with
other processes busy on the same cores (interleaved A/B rounds, medians, ms per training step):

    model / batch      1 thread   2 threads   2 threads + OMP_WAIT_POLICY=PASSIVE
    mlp   / 128           21          239         24
    mlp   / 512           46          300         73
    mlp   / 2048         240          574        246
    conv  / 128          137          767        157

Why two threads lose so badly: PyTorch's OpenMP workers spin-wait (burn a core) between parallel
regions. When the cores are contended -- by other processes, or in the app by the UI thread that
draws charts and computes projections next to the training thread -- a spinning worker sits on a
core the thread it waits for needs, and a step takes 5 to 10 times longer. Only on an idle machine
do two threads help, and then only for big steps (roughly 1.3x for the conv model or a batch of
2048); this app's models are small, and the second core is better left to the UI.

Why not OMP_WAIT_POLICY=PASSIVE instead: OpenMP reads it once, when torch is first imported, so a
library cannot rely on it (the app, the tests or a notebook may import torch first); and even when
it is in force, two threads were no faster than one under contention above.

`VAE_STUDIO_TORCH_THREADS=<n>` overrides the policy (e.g. on a big idle machine training the conv
model). GPUs are left alone: their work does not run on these threads.

Note that `torch.set_num_threads` is partly per thread: it sets a process-wide default that threads
pick up when they first run a parallel operation, plus the calling thread's own OpenMP setting. A
thread that already ran torch code keeps its old setting, so the trainer applies the policy on the
thread that actually trains (see `Trainer.train_step`).
"""

from __future__ import annotations

import os

import torch

THREADS_ENV = "VAE_STUDIO_TORCH_THREADS"
CPU_TRAINING_THREADS = 1


def training_threads(device: torch.device, config=None) -> int | None:
    """Intra-op threads for training `config` on `device`; None means "leave PyTorch's setting".

    `config` is accepted so a future size-based rule has what it needs; today every model this app
    builds is small enough that one thread wins (see the table above)."""
    override = os.environ.get(THREADS_ENV, "").strip()
    if override:
        try:
            return max(1, int(override))
        except ValueError:
            pass  # a malformed override must not stop training; the policy below applies
    if device.type != "cpu":
        return None
    return CPU_TRAINING_THREADS


def configure_torch_threads(device: torch.device, config=None) -> int:
    """Apply the policy to the calling thread (and to threads started later); returns the count in
    force. Cheap to repeat: `torch.set_num_threads` is only called when the count must change,
    because it also resizes PyTorch's thread pools."""
    wanted = training_threads(device, config)
    if wanted is not None and torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return torch.get_num_threads()
