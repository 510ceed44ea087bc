"""Training speed: the TrainingJob against a pytorch/examples-style reference loop (run as a plain
script runs, on PyTorch's default of a thread per core), one epoch of Fashion-MNIST, and the
app's thread rule against fixed thread counts on an idle and on a busy machine.

Each round trains one epoch (train + evaluation of the test set) with freshly built runs of every
candidate, in alternating order, each on a fresh thread (bench/common.py says why); setup is
outside the timers. Ratios are medians of per-round ratios, so a burst of load from another
process divides out.

    python -m bench.bench_training [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):  # run as a file: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (ReferenceLoop, Stopwatch, Timing, bench_dataset, cpus, interleaved, keep_this_thread_serial,
                          median, paired_ratio, print_rows, rounds_text, row, skipped_row, use_pytorch_default_threads,
                          walls)
from vae_core.config import TrainConfig
from vae_core.data import ImageDataset
from vae_core.jobs import TrainingJob
from vae_core.loop import run_to_end
from vae_core.threads import app_thread_count, use_threads
from vae_core.trainer import Trainer

EPOCH_TARGET_S = 2.0
SPEED_RATIO_TARGET = 1.0
READER_RATIO_TARGET = 0.95
READER_INTERVAL_S = 0.25  # the app's charts refresh 4 times a second
THREAD_PROBE_BATCH = 128
TUNER_RATIO_TARGET = 0.95


# -- one epoch of each candidate ------------------------------------------------------------------------
def reference_epoch(config: TrainConfig, dataset: ImageDataset) -> Timing:
    use_pytorch_default_threads()  # as a plain script runs: a thread per core
    loop = ReferenceLoop(config, dataset)
    with Stopwatch() as watch:
        loop.train_epoch()
        loop.test_epoch()
    return watch.timing


def trainer_epoch(config: TrainConfig, dataset: ImageDataset, threads: Callable[[], int | None] = lambda: None) -> Timing:
    """The synchronous Trainer, as the CLI runs it: steps, flushes, end-of-epoch evaluation; with
    `threads()` CPU threads (None: PyTorch's default, as the CLI)."""
    trainer = Trainer(config.replace(epochs=1), dataset)
    use_threads(threads(), trainer.device)
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


class BusyProcess:
    """Another process keeping one core busy, as a second job, a build or a browser would."""

    def __enter__(self) -> "BusyProcess":
        self._process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)  # let it get going before anything is timed
        return self

    def __exit__(self, *exc) -> None:
        self._process.kill()
        self._process.wait()


THREAD_POLICIES = {"app rule": app_thread_count, "1 thread": lambda: 1, "2 threads": lambda: 2}


def thread_policy_rows(dataset: ImageDataset, rounds: int) -> list[dict]:
    """The app's thread rule against each fixed count, one Trainer epoch each, on an idle machine and with
    another process busy on one core. Target: within 5% of the better fixed count (the one with the
    lower median) in both."""
    if (os.cpu_count() or 1) < 2:
        return [skipped_row("Thread policy", "one core: nothing to choose")]
    config = TrainConfig(data=dataset.name, batch_size=THREAD_PROBE_BATCH)
    runners = {name: partial(trainer_epoch, config, dataset, policy) for name, policy in THREAD_POLICIES.items()}
    rows = []
    for condition, load in [("idle machine", nullcontext()), ("another process busy on one core", BusyProcess())]:
        with load:
            timings = interleaved(runners, rounds)
        seconds = {name: walls(timings[name]) for name in runners}
        best_fixed = min(["1 thread", "2 threads"], key=lambda name: median(seconds[name]))
        ratio = paired_ratio(seconds[best_fixed], seconds["app rule"])
        rows.append(row(
            f"Thread policy, {condition}: app rule (cores - 1) / best fixed count ({best_fixed}), samples/s ({dataset.name}, "
            f"batch {THREAD_PROBE_BATCH}, {rounds_text(rounds)} of 1 Trainer epoch + test pass)",
            f">= {TUNER_RATIO_TARGET:.2f}",
            f"{ratio:.3f} (epoch: app rule {median(seconds['app rule']):.2f} s, 1 thread {median(seconds['1 thread']):.2f} s, "
            f"2 threads {median(seconds['2 threads']):.2f} s)", ratio >= TUNER_RATIO_TARGET))
    return rows


# -- entry points --------------------------------------------------------------------------------------------
def run(quick: bool = False) -> list[dict]:
    keep_this_thread_serial()  # the candidates run on threads of their own
    dataset = bench_dataset()
    rounds = 2 if quick else 7
    at_128 = time_epochs(dataset, 128, ["reference", "trainer", "job", "job + reader"], rounds)
    at_512 = time_epochs(dataset, 512, ["reference", "job"], rounds)
    return [speed_row(dataset, 128, at_128), speed_row(dataset, 512, at_512), reader_row(dataset, 128, at_128),
            epoch_row(dataset, at_128), *thread_policy_rows(dataset, 2 if quick else 5)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print_rows(run(quick=parser.parse_args().quick))


if __name__ == "__main__":
    main()
