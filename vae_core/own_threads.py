"""OpenMP settings belong to a thread: the count applied on the thread that computes, and other tensor
work on a short-lived thread of its own, so that no idle OpenMP team stays behind.

A thread that has run a parallel operation keeps its OpenMP workers until it ends; with more workers
than cores libgomp cuts every team's spin-wait short, and a training step's workers then sleep
between its many small operations (an epoch twice as long on an idle 2-core machine: 1.65 s ->
2.9 s). So a run trains on a thread of its own, and other tensor work (a thread-count timing, a
warm-up, a bench's candidates) runs on threads that end with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import torch

Result = TypeVar("Result")


def use_threads(count: int | None, device: torch.device) -> str:
    """Apply `count` (None: keep PyTorch's) on the calling thread, whose OpenMP setting it is, for work
    on `device`; returns what the UI shows, e.g. "1 CPU thread" (empty on a GPU)."""
    if device.type != "cpu":
        return ""
    if count is not None and torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return f"{torch.get_num_threads()} CPU thread{'s' * (torch.get_num_threads() != 1)}"


def on_a_thread_of_its_own(work: Callable[[], Result], name: str = "tensor-work") -> Result:
    """`work()` on a new thread that ends when it does; its result is returned and its exception
    re-raised on the calling thread."""
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
