"""Training speed: the TrainingJob against a pytorch/examples-style reference loop, one epoch of
Fashion-MNIST, and the thread policy.

Each round trains one epoch (train + evaluation of the test set) with freshly built runs of every
candidate, in alternating order; setup is outside the timers. Ratios are medians of per-round
ratios, so a burst of load from another process divides out.

    python -m bench.bench_training [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import (ReferenceLoop, Stopwatch, Timing, apply_thread_policy, bench_dataset, cpus, interleaved,
                          median, paired_ratio, print_rows, rounds_text, row, run_module_json, skipped_row, walls)
from vae_core.config import TrainConfig
from vae_core.data import ImageDataset
from vae_core.trainer import Trainer, run_to_end
from vae_core.training import TrainingJob

EPOCH_TARGET_S = 2.0
SPEED_RATIO_TARGET = 1.0
READER_RATIO_TARGET = 0.95
READER_INTERVAL_S = 0.25  # the app's charts refresh 4 times a second
THREAD_PROBE_BATCH = 128


# -- one epoch of each candidate ------------------------------------------------------------------------
def reference_epoch(config: TrainConfig, dataset: ImageDataset) -> Timing:
    loop = ReferenceLoop(config, dataset)
    with Stopwatch() as watch:
        loop.train_epoch()
        loop.test_epoch()
    return watch.timing


def trainer_epoch(config: TrainConfig, dataset: ImageDataset) -> Timing:
    """The synchronous Trainer, as the CLI runs it: steps, flushes, end-of-epoch evaluation."""
    trainer = Trainer(config.replace(epochs=1), dataset)
    with Stopwatch() as watch:
        run_to_end(trainer)
    return watch.timing


class SnapshotReader:
    """What the app's training page does while a job runs: read the snapshot 4 times a second and
    touch what it draws."""

    def __init__(self, job: TrainingJob):
        self.job = job
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-reader", daemon=True)

    def __enter__(self) -> "SnapshotReader":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(READER_INTERVAL_S):
            snap = self.job.snapshot()
            _ = (len(snap.curves), float(snap.curves.total[-1]) if len(snap.curves) else None,
                 snap.kl_per_dim.sum(), len(snap.epoch_metrics), len(snap.frames), snap.progress)


def job_epoch(config: TrainConfig, dataset: ImageDataset, *, with_reader: bool = False) -> Timing:
    """A TrainingJob from start() to the end of its one epoch, optionally with a UI-like reader."""
    job = TrainingJob(config.replace(epochs=1), dataset)
    with Stopwatch() as watch, SnapshotReader(job) if with_reader else nullcontext():
        job.start()
        job.wait()
    status = job.snapshot().status
    if status != "finished":
        raise RuntimeError(f"the training job ended {status}: {job.snapshot().message}")
    return watch.timing


# -- the figures -------------------------------------------------------------------------------------------
def job_with_reader_epoch(config: TrainConfig, dataset: ImageDataset) -> Timing:
    return job_epoch(config, dataset, with_reader=True)


EPOCH_RUNNERS = {"reference": reference_epoch, "trainer": trainer_epoch, "job": job_epoch,
                 "job + reader": job_with_reader_epoch}


def time_epochs(dataset: ImageDataset, batch_size: int, names: list[str], rounds: int) -> dict[str, list[Timing]]:
    """The Timing of each round of one epoch of each named runner, interleaved."""
    config = TrainConfig(data=dataset.name, batch_size=batch_size)
    return interleaved({name: partial(EPOCH_RUNNERS[name], config, dataset) for name in names}, rounds)


def setting(dataset: ImageDataset, batch_size: int, timings: dict[str, list[Timing]]) -> str:
    rounds = len(next(iter(timings.values())))
    return f"{dataset.name}, batch {batch_size}, {rounds_text(rounds)} of 1 epoch + test pass"


def samples_per_s(dataset: ImageDataset, timings: list[Timing]) -> str:
    return f"{dataset.train_x.shape[0] / median(walls(timings)):,.0f} samples/s"


def throughput_ratio(timings: dict[str, list[Timing]], name: str, baseline: str) -> tuple[float, float]:
    """(wall-clock, CPU-time) ratio of `name`'s samples/s to `baseline`'s: baseline seconds over name's."""
    return (paired_ratio(walls(timings[baseline]), walls(timings[name])),
            paired_ratio(cpus(timings[baseline]), cpus(timings[name])))


def ratio_row(figure: str, target: float, dataset: ImageDataset, timings: dict[str, list[Timing]], name: str,
              baseline: str) -> dict:
    wall_ratio, cpu_ratio = throughput_ratio(timings, name, baseline)
    return row(figure, f">= {target:.2f}",
               f"{wall_ratio:.3f} ({name} {samples_per_s(dataset, timings[name])}, {baseline} "
               f"{samples_per_s(dataset, timings[baseline])}; by CPU time {cpu_ratio:.3f})", wall_ratio >= target)


def speed_row(dataset: ImageDataset, batch_size: int, timings: dict[str, list[Timing]]) -> dict:
    return ratio_row(f"Training speed: job / reference loop, samples/s ({setting(dataset, batch_size, timings)})",
                     SPEED_RATIO_TARGET, dataset, timings, "job", "reference")


def reader_row(dataset: ImageDataset, batch_size: int, timings: dict[str, list[Timing]]) -> dict:
    return ratio_row(f"Job with a reader thread calling snapshot() 4x/s / job alone, samples/s "
                     f"({setting(dataset, batch_size, timings)})",
                     READER_RATIO_TARGET, dataset, timings, "job + reader", "job")


def epoch_row(dataset: ImageDataset, timings: dict[str, list[Timing]]) -> dict:
    trainer, plain = timings["trainer"], timings["reference"]
    full = dataset.train_x.shape[0] == 60_000
    figure = (f"One epoch of {dataset.train_x.shape[0]:,} {dataset.name} images, default model and config "
              "(Trainer: steps + end-of-epoch evaluation; median)")
    return row(figure, f"< {EPOCH_TARGET_S:.0f} s" if full else "< 2 s on full Fashion-MNIST (not available here)",
               f"{median(walls(trainer)):.2f} s, CPU {median(cpus(trainer)):.2f} s (plain loop, same rounds: "
               f"{median(walls(plain)):.2f} s, CPU {median(cpus(plain)):.2f} s)",
               median(walls(trainer)) < EPOCH_TARGET_S if full else None)


def thread_policy_rows(quick: bool) -> list[dict]:
    """The policy (1 thread) against PyTorch's default (a thread per core, spin-waiting), each in its
    own process because OpenMP settles its threads at start-up."""
    default_threads = os.cpu_count() or 1
    if default_threads < 2:
        return [skipped_row("Thread policy", "one core: nothing to compare")]
    steps, rounds = (15, 1) if quick else (40, 3)
    seconds = interleaved({threads: partial(probe_seconds_per_step, threads, steps)
                           for threads in (1, default_threads)}, rounds)
    one, many = median(seconds[1]), median(seconds[default_threads])
    return [row(f"Thread policy: reference-loop step, batch {THREAD_PROBE_BATCH}: {default_threads} threads "
                f"(PyTorch's default) / 1 thread (ours), {rounds_text(rounds)} of {steps} steps",
                ">= 1.00 (1 thread no slower)",
                f"{many / one:.2f} ({many * 1e3:.1f} ms vs {one * 1e3:.1f} ms per step)", many / one >= 1.0)]


def probe_seconds_per_step(threads: int, steps: int) -> float:
    return run_module_json("bench.bench_training", "--probe-threads", str(threads), "--steps", str(steps))[
        "seconds_per_step"]


def probe(threads: int, steps: int) -> dict:
    """In a fresh process: seconds per reference-loop step with `threads` intra-op threads."""
    torch.set_num_threads(threads)
    config = TrainConfig(batch_size=THREAD_PROBE_BATCH)
    images = torch.rand(THREAD_PROBE_BATCH * 8, 1, 28, 28)  # speed does not depend on the pixels
    loop = ReferenceLoop(config, _tensor_dataset(images))
    for _ in range(5):  # warm-up: allocator and first-call costs
        loop.train_step(_random_batch(loop))
    started = time.perf_counter()
    for _ in range(steps):
        loop.train_step(_random_batch(loop))
    return {"threads": threads, "seconds_per_step": (time.perf_counter() - started) / steps}


def _random_batch(loop: ReferenceLoop) -> torch.Tensor:
    return loop.train_x[torch.randint(0, loop.train_x.shape[0], (loop.batch_size,))]


def _tensor_dataset(images: torch.Tensor) -> ImageDataset:
    return ImageDataset(name="random", train_x=images, train_y=None, test_x=images[:16], test_y=None,
                        class_names=None, fingerprint="random", source="random pixels")


# -- entry points --------------------------------------------------------------------------------------------
def run(quick: bool = False) -> list[dict]:
    apply_thread_policy()  # the reference loop runs on this thread
    dataset = bench_dataset()
    rounds = 2 if quick else 7
    at_128 = time_epochs(dataset, 128, ["reference", "trainer", "job", "job + reader"], rounds)
    at_512 = time_epochs(dataset, 512, ["reference", "job"], rounds)
    return [speed_row(dataset, 128, at_128), speed_row(dataset, 512, at_512), reader_row(dataset, 128, at_128),
            epoch_row(dataset, at_128), *thread_policy_rows(quick)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--probe-threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=40, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe_threads:
        print(json.dumps(probe(args.probe_threads, args.steps)))
    else:
        print_rows(run(quick=args.quick))


if __name__ == "__main__":
    main()
