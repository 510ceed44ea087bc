"""How many CPU threads a training step uses: a rule, no probing.

- The CLI keeps PyTorch's default, a thread per core: a script that has the machine to itself.
- The app's training thread leaves one core to the rest of the process (`app_thread_count`): the
  Streamlit server, the pages drawing charts and computing projections run beside it, and
  PyTorch's OpenMP workers spin-wait for each other, so a step whose threads share their cores
  with other work gets many times slower, while one thread fewer costs little. Measured on a
  2-core machine shared with other processes (`python -m bench.bench_training --quick`, one epoch
  of Fashion-MNIST, batch 128): 1 thread 3.1 s, 2 threads 88 s.
- `VAE_STUDIO_TORCH_THREADS=<n>` overrides both, e.g. 1 on a machine shared with other work.
- GPUs are left alone: their work does not run on these threads.

`torch.set_num_threads` is partly per thread (a process-wide default plus the calling thread's own
OpenMP setting), so a count is applied on the thread that trains (`use_threads`).

Idle thread teams: a thread that has once run a parallel operation keeps its OpenMP team of
workers until it ends. When the process holds more workers than there are cores, libgomp cuts
every team's spin-wait short, so a training thread's workers sleep between the many small
operations of a step (on an idle 2-core machine an epoch took twice as long). It cannot happen
with one training thread (2 cores, by the rule above: measured the same with and without an idle
team beside it); for more, a job builds its trainer on its own training thread, and the app's
other tensor work runs on Streamlit's short-lived script threads.
"""

from __future__ import annotations

import os

import torch

THREADS_ENV = "VAE_STUDIO_TORCH_THREADS"


def thread_override() -> int | None:
    """The count `VAE_STUDIO_TORCH_THREADS` fixes, if it holds a whole number."""
    value = os.environ.get(THREADS_ENV, "").strip()
    try:
        return max(1, int(value)) if value else None
    except ValueError:
        return None  # a malformed override must not stop training; the rule applies


def app_thread_count(cores: int | None = None) -> int:
    """The app's training thread: the override, else one thread per core but one (at least one)."""
    override = thread_override()
    if override is not None:
        return override
    return max(1, (cores or os.cpu_count() or 1) - 1)


def use_threads(count: int | None, device: torch.device) -> str:
    """Apply `count` (None: keep PyTorch's setting) on the calling thread for work on `device`;
    returns what the UI shows, e.g. "1 CPU thread" (empty on a GPU)."""
    if device.type != "cpu":
        return ""
    if count is not None and torch.get_num_threads() != count:
        torch.set_num_threads(count)
    count = torch.get_num_threads()
    return f"{count} CPU thread{'s' * (count != 1)}"
