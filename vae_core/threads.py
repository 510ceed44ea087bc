"""How many CPU threads a training step uses.

- A run that names its count (`TrainConfig.threads`: a resumed run, `--threads`, the Train form)
  uses it: the count changes the float sums a step computes, so it makes a run repeatable.
- `VAE_STUDIO_TORCH_THREADS=<n>` overrides the choices below, e.g. 1 on a machine shared with other work.
- The CLI keeps PyTorch's default, a thread per core: a script that has the machine to itself.
- The app measures (`app_thread_candidates`, thread_choice.py): one thread per core, or one
  core left to the rest of the process, whichever runs the run's own step faster on this machine
  now. The Streamlit server and the pages run beside the training thread, and PyTorch's OpenMP
  workers spin-wait for each other, so a step whose threads share their cores with other work can
  get many times slower (on a 2-core machine shared with other processes, one Fashion-MNIST epoch:
  1 thread 3.1 s, 2 threads 88 s), while on idle cores the second thread makes a step up to 1.5
  times faster. Which wins depends on the CPU, the model and the load, so it is timed, not assumed;
  on a near tie the smaller count wins, as it suffers less when the UI wants a core.
- GPUs are left alone: their work does not run on these threads.

`torch.set_num_threads` is partly per thread (the calling thread's OpenMP setting): a count is
applied on the thread that trains (`use_threads`).

Idle thread teams: a thread that has run a parallel operation keeps its OpenMP workers until it
ends; with more workers than cores libgomp cuts every team's spin-wait short, and a training step's
workers sleep between its many small operations (an epoch twice as long on an idle 2-core machine).
So a job trains on a thread of its own, and the app's other tensor work runs on short-lived threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

import torch

THREADS_ENV = "VAE_STUDIO_TORCH_THREADS"
Result = TypeVar("Result")


def thread_override() -> int | None:
    """The count `VAE_STUDIO_TORCH_THREADS` fixes, if it holds a whole number."""
    value = os.environ.get(THREADS_ENV, "").strip()
    try:
        return max(1, int(value)) if value else None
    except ValueError:
        return None  # a malformed override must not stop training; the rule applies


def app_thread_candidates(cores: int | None = None) -> tuple[int, ...]:
    """The counts the app chooses from: one per core, and one core left to the UI (at least one)."""
    cores = cores or os.cpu_count() or 1
    return tuple(sorted({max(1, cores - 1), cores}))


def use_threads(count: int | None, device: torch.device) -> str:
    """Apply `count` (None: keep PyTorch's setting) on the calling thread for work on `device`;
    returns what the UI shows, e.g. "1 CPU thread" (empty on a GPU)."""
    if device.type != "cpu":
        return ""
    if count is not None and torch.get_num_threads() != count:
        torch.set_num_threads(count)
    count = torch.get_num_threads()
    return f"{count} CPU thread{'s' * (count != 1)}"


def on_a_thread_of_its_own(work: Callable[[], Result], name: str = "tensor-work") -> Result:
    """`work()` on a new thread that ends when it does, so the OpenMP workers its tensor work starts
    end with it instead of idling beside a training thread's (see "Idle thread teams" above). Its
    result is returned and its exception re-raised on the calling thread."""
    return begin_on_a_thread_of_its_own(work, name)()


def begin_on_a_thread_of_its_own(work: Callable[[], Result], name: str = "tensor-work") -> Callable[[], Result]:
    """Start `work()` on a thread of its own (as `on_a_thread_of_its_own`) and return at once a call
    that waits for it and returns its result (or re-raises its exception), so the caller can do
    something else meanwhile."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # re-raised on the calling thread
            outcome["error"] = error

    worker = threading.Thread(target=run, name=name)
    worker.start()

    def result() -> Result:
        worker.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    return result
