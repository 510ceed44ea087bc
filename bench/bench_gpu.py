"""GPU speed, where there is a GPU: samples/s of the plain training loop (loop.py) on the first CUDA
device for each precision (fp32, bf16) and compile mode (eager, torch.compile, torch.compile with
CUDA graphs), at a small and a large batch; and the app's TrainingJob against the plain loop.
Without a GPU it says "no GPU" and measures nothing.

Timing a GPU: kernels are queued, so a stopwatch waits for the device (torch.cuda.synchronize)
before it stops. A compiled model pays its compile time in a warm-up epoch outside the timer; every
variant gets the same warm-up, so all are timed warm. Candidates alternate round by round
(bench/common.py's `interleaved`) and each figure is a median.

    python -m bench.bench_gpu [--quick]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import (
    Stopwatch,
    Timing,
    bench_dataset,
    interleaved,
    median,
    paired_ratio,
    print_rows,
    rounds_text,
    row,
    walls,
)
from vae_core.config import TrainConfig
from vae_core.data import ImageDataset
from vae_core.jobs import TrainingJob
from vae_core.loop import Hooks, run_to_end, train_epoch
from vae_core.speed import compiled
from vae_core.trainer import Trainer

BATCH_SIZES = (128, 1024)  # small batches leave a GPU waiting on kernel launches; large ones fill it
COMPILE_MODES = {"eager": None, "compile": "default", "compile + CUDA graphs": "reduce-overhead"}
JOB_RATIO_TARGET = 0.95  # the job's thread, snapshots and commands may cost at most 5% on a GPU


def no_gpu_rows() -> list[dict]:
    return [row("GPU bench", "-", "no GPU: torch.cuda.is_available() is False here, nothing measured", None)]


def gpu_config(dataset: ImageDataset, batch_size: int, precision: str) -> TrainConfig:
    return TrainConfig(data=dataset.name, batch_size=batch_size, precision=precision, device="cuda")


def warm_epoch(config: TrainConfig, dataset: ImageDataset, compile_mode: str | None) -> Timing:
    """One epoch (steps + test pass) of the plain loop, timed after a first, untimed epoch that pays
    for compiling and for the device's first allocations."""
    trainer = Trainer(config.replace(epochs=2), dataset)
    if compile_mode is not None:
        trainer.forward_model = compiled(trainer.forward_model, compile_mode)
    train_epoch(trainer, Hooks())
    torch.cuda.synchronize()
    with Stopwatch() as watch:
        train_epoch(trainer, Hooks())
        torch.cuda.synchronize()
    return watch.timing


def loop_epoch(config: TrainConfig, dataset: ImageDataset) -> Timing:
    """One epoch of the plain loop from a fresh trainer, as the CLI trains (setup outside the timer)."""
    trainer = Trainer(config.replace(epochs=1), dataset)
    torch.cuda.synchronize()
    with Stopwatch() as watch:
        run_to_end(trainer)
        torch.cuda.synchronize()
    return watch.timing


def job_epoch(config: TrainConfig, dataset: ImageDataset) -> Timing:
    """One epoch of the app's TrainingJob, from start() until it has finished."""
    job = TrainingJob(config.replace(epochs=1), dataset)
    with Stopwatch() as watch:
        job.start()
        job.wait()
        torch.cuda.synchronize()
    snapshot = job.snapshot()
    if snapshot.status != "finished":
        raise RuntimeError(f"the training job ended {snapshot.status}: {snapshot.message}")
    return watch.timing


def or_failure(candidate: Callable[[], Timing]) -> Callable[[], Timing | str]:
    """`candidate`, returning what went wrong instead of raising: a mode this PyTorch or GPU cannot
    run (CUDA graphs are picky) becomes one row, not the loss of the whole bench."""

    def attempt() -> Timing | str:
        try:
            return candidate()
        except Exception as error:
            return f"failed: {type(error).__name__}: {str(error)[:200]}"

    return attempt


def samples_per_s(dataset: ImageDataset, timings: list[Timing]) -> float:
    return dataset.train_x.shape[0] / median(walls(timings))


def precisions() -> list[str]:
    return ["fp32", "bf16"] if torch.cuda.is_bf16_supported() else ["fp32"]


def variant_rows(dataset: ImageDataset, batch_size: int, rounds: int) -> list[dict]:
    """samples/s of each precision x compile mode at `batch_size`, and each against fp32 eager."""
    candidates = {
        (precision, mode): or_failure(
            partial(warm_epoch, gpu_config(dataset, batch_size, precision), dataset, COMPILE_MODES[mode])
        )
        for precision in precisions()
        for mode in COMPILE_MODES
    }
    results = interleaved(candidates, rounds)
    baseline = walls(results[("fp32", "eager")])  # eager fp32 is the plain loop itself: it does not fail
    rows = []
    for (precision, mode), found in results.items():
        failure = next((item for item in found if isinstance(item, str)), None)
        measured = failure or (
            f"{samples_per_s(dataset, found):,.0f} samples/s ({paired_ratio(baseline, walls(found)):.2f}x fp32 eager)"
        )
        rows.append(
            row(
                f"GPU plain loop, {precision}, {mode}: samples/s ({dataset.name}, batch {batch_size}, "
                f"{rounds_text(rounds)} of 1 warm epoch + test pass)",
                "-",
                measured,
                False if failure else None,
            )
        )
    return rows


def job_row(dataset: ImageDataset, batch_size: int, rounds: int) -> dict:
    config = gpu_config(dataset, batch_size, "fp32")
    timings = interleaved(
        {"job": partial(job_epoch, config, dataset), "loop": partial(loop_epoch, config, dataset)}, rounds
    )
    ratio = paired_ratio(walls(timings["loop"]), walls(timings["job"]))
    return row(
        f"GPU job / plain loop, samples/s ({dataset.name}, batch {batch_size}, fp32, {rounds_text(rounds)} "
        "of 1 epoch + test pass)",
        f">= {JOB_RATIO_TARGET:.2f}",
        f"{ratio:.3f} (job {samples_per_s(dataset, timings['job']):,.0f}, loop "
        f"{samples_per_s(dataset, timings['loop']):,.0f} samples/s)",
        ratio >= JOB_RATIO_TARGET,
    )


def run(quick: bool = False) -> list[dict]:
    if not torch.cuda.is_available():
        print("no GPU: the GPU bench measures nothing here", file=sys.stderr)
        return no_gpu_rows()
    dataset = bench_dataset()
    rounds = 2 if quick else 5
    rows = [
        row("GPU", "-", f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}, torch {torch.__version__}", None)
    ]
    for batch_size in BATCH_SIZES[-1:] if quick else BATCH_SIZES:
        rows += variant_rows(dataset, batch_size, rounds)
    rows.append(job_row(dataset, BATCH_SIZES[0], rounds))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one batch size, 2 rounds")
    print_rows(run(quick=parser.parse_args(argv).quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
