"""Training speed: the app's TrainingJob and the CLI's Trainer against the pytorch/examples-style
reference loop (bench/reference_loop.py), one epoch of Fashion-MNIST each.

The reference runs in a process of its own that never imports vae_core, so none of our settings
reach it, on 1 and on 2 threads (one per core, PyTorch's default); the faster of the two is the
reference each ratio divides by (a count over 3x slower than the other in the first round is not
run again: under load, two spin-waiting threads can take minutes an epoch). Ours run through
vae_core/loop.py, the one loop: the job as the app runs it and the Trainer as the CLI runs it, each
with the thread count chosen for the load of the moment (vae_core/threads.py: the load is read, and a
run timed under another load times its step again).

Each round trains one epoch (train + evaluation of the test set) with freshly built runs of every
candidate, in alternating order (ABBA...), ours each on a fresh thread (bench/common.py says why);
setup -- and the reference's process start-up and data loading -- are outside the timers. Ratios are
medians of per-round ratios, so a burst of load from another process divides out.

    python -m bench.bench_training [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from contextlib import nullcontext
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import (
    Stopwatch,
    Timing,
    bench_dataset,
    cpus,
    interleaved,
    keep_this_thread_serial,
    median,
    paired_ratio,
    print_rows,
    reference_data,
    reference_epoch,
    rounds_text,
    row,
    walls,
)
from vae_core.config import TrainConfig
from vae_core.data import ImageDataset
from vae_core.jobs import TrainingJob
from vae_core.loop import run_to_end
from vae_core.own_threads import on_a_thread_of_its_own, use_threads
from vae_core.threads import run_threads
from vae_core.trainer import Trainer

EPOCH_TARGET_S = 2.0
SPEED_RATIO_TARGET = 1.0
READER_RATIO_TARGET = 0.95
READER_INTERVAL_S = 0.25  # the app's charts refresh 4 times a second
REFERENCE_THREADS = sorted({1, os.cpu_count() or 1})  # one thread, and PyTorch's default of one per core
HOPELESS = 3.0  # a reference thread count this many times slower than another after one round is not run again


TRAINER_THREADS: dict[int, str] = {}  # batch size -> the Trainer's count and how it was chosen, for the figure


# -- one epoch of each of ours ------------------------------------------------------------------------------
def trainer_epoch(config: TrainConfig, dataset: ImageDataset) -> Timing:
    """The synchronous Trainer through the one loop, as the CLI runs it: the count chosen for the load."""
    count, chosen_by = run_threads(config, dataset, torch.device("cpu"))
    TRAINER_THREADS[config.batch_size] = f"{use_threads(count, torch.device('cpu'))} ({chosen_by})"
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

    def __enter__(self) -> SnapshotReader:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(READER_INTERVAL_S):
            snap = self.job.snapshot()
            _ = (
                len(snap.curves),
                float(snap.curves.total[-1]) if len(snap.curves) else None,
                snap.kl_per_dim.sum(),
                len(snap.epoch_metrics),
                len(snap.frames),
                snap.progress,
            )


JOB_THREADS: dict[int, str] = {}  # batch size -> the job's count and how it was chosen, for the figure


def job_epoch(config: TrainConfig, dataset: ImageDataset, *, with_reader: bool = False) -> Timing:
    """A TrainingJob from start() to the end of its one epoch, optionally with a UI-like reader. Built
    as a run process builds it (worker.training_job): on a thread that ends with the building, since
    the thread that checks the data keeps an OpenMP team, which beside the job's own would slow it."""
    job = on_a_thread_of_its_own(lambda: TrainingJob(config.replace(epochs=1), dataset), name="build-job")
    with Stopwatch() as watch, SnapshotReader(job) if with_reader else nullcontext():
        job.start()
        job.wait()
    status = job.snapshot().status
    if status != "finished":
        raise RuntimeError(f"the training job ended {status}: {job.snapshot().message}")
    JOB_THREADS[config.batch_size] = job.snapshot().threads
    return watch.timing


# -- the figures -------------------------------------------------------------------------------------------
def job_with_reader_epoch(config: TrainConfig, dataset: ImageDataset) -> Timing:
    return job_epoch(config, dataset, with_reader=True)


OUR_RUNNERS = {"trainer": trainer_epoch, "job": job_epoch, "job + reader": job_with_reader_epoch}


def reference_name(threads: int) -> str:
    return f"reference, {threads} thread{'s' * (threads != 1)}"


def time_epochs(
    dataset: ImageDataset, data_path: Path, batch_size: int, ours: list[str], rounds: int
) -> dict[str, list[Timing]]:
    """The Timing of each round of one epoch of the reference on each thread count and of each of
    ours, interleaved; plus "reference": the rounds of the faster reference thread count.

    A reference thread count more than HOPELESS times slower than another in the first round is
    not run again: on a loaded machine two spin-waiting threads can take minutes an epoch, and
    more rounds of it would only tell the same."""
    config = TrainConfig(data=dataset.name, batch_size=batch_size)
    candidates = {
        reference_name(threads): partial(reference_epoch, data_path, batch_size, threads)
        for threads in REFERENCE_THREADS
    }
    candidates.update({name: partial(OUR_RUNNERS[name], config, dataset) for name in ours})
    timings = interleaved(candidates, 1)
    fastest = min(timings[reference_name(threads)][0].wall for threads in REFERENCE_THREADS)
    for threads in REFERENCE_THREADS:
        if timings[reference_name(threads)][0].wall > HOPELESS * fastest:
            del candidates[reference_name(threads)]
    later = interleaved(dict(reversed(candidates.items())), rounds - 1)  # reversed: the alternation goes on
    for name, measured in later.items():
        timings[name] += measured
    kept = [threads for threads in REFERENCE_THREADS if reference_name(threads) in candidates]
    best = min(kept, key=lambda threads: median(walls(timings[reference_name(threads)])))
    timings["reference"] = timings[reference_name(best)]
    return timings


def setting(dataset: ImageDataset, batch_size: int, timings: dict[str, list[Timing]]) -> str:
    rounds = len(timings["job"])
    return f"{dataset.name}, batch {batch_size}, {rounds_text(rounds)} of 1 epoch + test pass"


def samples_per_s(dataset: ImageDataset, timings: list[Timing]) -> str:
    return f"{dataset.train_x.shape[0] / median(walls(timings)):,.0f} samples/s"


def best_reference(timings: dict[str, list[Timing]]) -> str:
    return next(
        reference_name(threads)
        for threads in REFERENCE_THREADS
        if timings[reference_name(threads)] is timings["reference"]
    )


def ratio_row(
    figure: str, target: float | None, dataset: ImageDataset, timings: dict[str, list[Timing]], name: str, baseline: str
) -> dict:
    """`name`'s samples/s over `baseline`'s: the median of per-round ratios, by wall clock (the
    figure) and by CPU time."""
    wall_ratio = paired_ratio(walls(timings[baseline]), walls(timings[name]))
    cpu_ratio = paired_ratio(cpus(timings[baseline]), cpus(timings[name]))
    baseline_text = best_reference(timings) if baseline == "reference" else baseline
    return row(
        figure,
        "-" if target is None else f">= {target:.2f}",
        f"{wall_ratio:.3f} ({name} {samples_per_s(dataset, timings[name])}, {baseline_text} "
        f"{samples_per_s(dataset, timings[baseline])}; by CPU time {cpu_ratio:.3f})",
        None if target is None else wall_ratio >= target,
    )


def speed_row(dataset: ImageDataset, batch_size: int, timings: dict[str, list[Timing]]) -> dict:
    return ratio_row(
        f"Training speed: job as the app runs it (on {JOB_THREADS.get(batch_size, '?')}) / reference "
        f"loop at its best thread count, samples/s ({setting(dataset, batch_size, timings)})",
        SPEED_RATIO_TARGET,
        dataset,
        timings,
        "job",
        "reference",
    )


def cli_row(dataset: ImageDataset, batch_size: int, timings: dict[str, list[Timing]]) -> dict:
    return ratio_row(
        f"Training speed: Trainer as the CLI runs it (on {TRAINER_THREADS.get(batch_size, '?')}) / reference loop at "
        f"its best thread count, samples/s ({setting(dataset, batch_size, timings)})",
        None,
        dataset,
        timings,
        "trainer",
        "reference",
    )


def reference_threads_row(dataset: ImageDataset, batch_size: int, timings: dict[str, list[Timing]]) -> dict:
    epochs = ", ".join(
        f"{reference_name(threads)} {median(walls(timings[reference_name(threads)])):.2f} s"
        + (
            f" (1 round: over {HOPELESS:g}x the other's)"
            if len(timings[reference_name(threads)]) == 1 and len(timings["job"]) > 1
            else ""
        )
        for threads in REFERENCE_THREADS
    )
    return row(
        f"Reference loop, own process without vae_core: epoch at each thread count, median "
        f"({setting(dataset, batch_size, timings)})",
        "-",
        f"{epochs}; the reference is the faster: {best_reference(timings)}",
        None,
    )


def reader_row(dataset: ImageDataset, batch_size: int, timings: dict[str, list[Timing]]) -> dict:
    return ratio_row(
        f"Job with a reader thread calling snapshot() 4x/s / job alone, samples/s "
        f"({setting(dataset, batch_size, timings)})",
        READER_RATIO_TARGET,
        dataset,
        timings,
        "job + reader",
        "job",
    )


def epoch_row(dataset: ImageDataset, timings: dict[str, list[Timing]]) -> dict:
    trainer, plain = timings["trainer"], timings["reference"]
    full = dataset.train_x.shape[0] == 60_000
    figure = (
        f"One epoch of {dataset.train_x.shape[0]:,} {dataset.name} images, default model and config "
        "(Trainer as the CLI runs it: steps + end-of-epoch evaluation; median)"
    )
    return row(
        figure,
        f"< {EPOCH_TARGET_S:.0f} s" if full else "< 2 s on full Fashion-MNIST (not available here)",
        f"{median(walls(trainer)):.2f} s, CPU {median(cpus(trainer)):.2f} s (reference, same rounds: "
        f"{median(walls(plain)):.2f} s, CPU {median(cpus(plain)):.2f} s)",
        median(walls(trainer)) < EPOCH_TARGET_S if full else None,
    )


# -- entry points --------------------------------------------------------------------------------------------
def run(quick: bool = False) -> list[dict]:
    keep_this_thread_serial()  # ours run on threads of their own, the reference in processes of its own
    dataset = bench_dataset()
    rounds = 3 if quick else 5
    with reference_data(dataset) as data_path:
        at_128 = time_epochs(dataset, data_path, 128, ["trainer", "job", "job + reader"], rounds)
        at_512 = time_epochs(dataset, data_path, 512, ["job"], rounds)
    return [
        speed_row(dataset, 128, at_128),
        speed_row(dataset, 512, at_512),
        cli_row(dataset, 128, at_128),
        reference_threads_row(dataset, 128, at_128),
        reference_threads_row(dataset, 512, at_512),
        reader_row(dataset, 128, at_128),
        epoch_row(dataset, at_128),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 5")
    print_rows(run(quick=parser.parse_args().quick))


if __name__ == "__main__":
    main()
