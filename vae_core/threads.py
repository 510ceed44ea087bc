"""How many CPU threads PyTorch may use for one training step: the one place that decides it.

The policy: on the CPU, one intra-op thread. Measured on the 2-core machine this app targets while
other processes kept it busy (load average 3 to 7), each setting in its own process, interleaved
rounds, medians of ms per training step:

    model / batch      1 thread   2 threads (default)   2 threads + OMP_WAIT_POLICY=PASSIVE
    mlp   / 128           21            239                     24
    mlp   / 512           46            300                     73
    mlp   / 2048         240            574                    246
    conv  / 128       340 | 137     1115 | 767              238 | 157   (two runs)

`python -m bench.bench_training` repeats the first comparison (2 threads were 10x slower there).

Why two threads lose so badly: PyTorch's OpenMP workers spin-wait (burn a core) between parallel
regions. When the cores are contended -- by other processes, or in the app by the UI thread that
draws charts and computes projections next to the training thread -- a spinning worker holds a
core that the thread it waits for needs, and a step takes 2 to 10 times longer. Two threads pay
only on a quiet machine and for big steps: in the quietest rounds above, two passive threads were
up to ~1.5x faster for the conv model and a batch of 2048, and no faster for the default MLP at
batch 128. The app's models are small, and the second core is better left to the UI.

Why not OMP_WAIT_POLICY=PASSIVE instead: OpenMP reads it once, when torch is first imported, so a
library cannot rely on it (the app, the tests or a notebook may import torch first); and even in
force, two passive threads were no better than one under contention in the table above.

One thread also keeps runs reproducible: the count is a function of the device alone, not of the
load, so a resumed run computes exactly what the uninterrupted one did.

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
