"""The CPU thread count a run trains with, and in the app how it was chosen: timed on the run's
own training step (threads.py says why a rule alone cannot know)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Hashable

import torch

from .threads import MIN_ROUNDS, THREADS_ENV, UNTIMED_CALLS, app_thread_candidates, fastest_thread_count, thread_override

if TYPE_CHECKING:
    from .config import TrainConfig
    from .data import ImageDataset

_measured: dict[Hashable, tuple[int, dict[int, float]]] = {}
_measuring = threading.Lock()  # one measurement at a time: two at once would time each other


def app_run_threads(config: TrainConfig, dataset: ImageDataset, device: torch.device) -> tuple[int | None, str]:
    """The count an app run trains with on `device` (None on a GPU) and why, e.g. "measured: 1 thread
    3.1 ms a step, 2 threads 2.0 ms". A run's recorded count wins (its numbers depend on it), then
    the environment's override, then a measurement, made once per kind of step in this process, so
    a run repeated with the same seed gets the same count and the same numbers."""
    if device.type != "cpu":
        return None, ""
    if config.threads is not None:
        return config.threads, "the run's own count"
    override = thread_override()
    if override is not None:
        return override, f"set by {THREADS_ENV}"
    key = step_kind(config, dataset, device)
    with _measuring:
        if key not in _measured:
            _measured[key] = _measure(config, dataset, device)
    count, medians = _measured[key]
    if not medians:
        return count, "an epoch too short to time"
    timings = ", ".join(f"{n} thread{'s' * (n != 1)} {seconds * 1e3:.1f} ms" for n, seconds in medians.items())
    return count, f"measured: {timings} a step"


def step_kind(config: TrainConfig, dataset: ImageDataset, device: torch.device) -> Hashable:
    """What sets the cost of a training step (not the seed, lr or β, which change no shapes)."""
    return (config.model, config.hidden, config.latent_dim, config.batch_size, config.precision, config.recon,
            config.learn_variance, dataset.image_shape, dataset.num_classes, str(device))


def _measure(config: TrainConfig, dataset: ImageDataset, device: torch.device) -> tuple[int, dict[int, float]]:
    """Time the run's step on a throwaway trainer of the same config: its own weights, optimiser and
    generators, so the run's are untouched. Its steps stay within its first epoch."""
    from .loop import train_step
    from .trainer import Trainer

    candidates = app_thread_candidates()
    probe = Trainer(config, dataset, device=device)
    rounds = probe.steps_per_epoch // len(candidates) - UNTIMED_CALLS  # all within its first epoch
    if len(candidates) == 1 or rounds < MIN_ROUNDS:
        return min(candidates), {}
    return fastest_thread_count(lambda: train_step(probe), candidates, max_rounds=rounds)
