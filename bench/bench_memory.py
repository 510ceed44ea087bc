"""Memory: the peak resident set size of a process that does what the app does with the biggest
built-in dataset -- load full Fashion-MNIST, train a TrainingJob for an epoch and, while it trains,
project 10,000 test images to 2-D with PCA and t-SNE. Target: < 2 GiB.

The work runs in a fresh subprocess (`--child`), so the figure is that process's own peak and not
this one's, which may have loaded other things.

    python -m bench.bench_memory [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    GiB,
    MiB,
    bench_dataset,
    peak_rss_bytes,
    print_rows,
    row,
    run_module_json,
    use_pytorch_default_threads,
)

TARGET_BYTES = 2 * GiB
PROJECTION_METHODS = ("pca", "tsne")
FULL_POINTS = 10_000
QUICK_POINTS = 2_000


def child(points: int) -> dict:
    """The measured process: returns the peak RSS after each stage, in bytes."""
    from vae_core.config import TrainConfig
    from vae_core.jobs import TrainingJob

    use_pytorch_default_threads()
    peaks = {"start": peak_rss_bytes()}
    dataset = bench_dataset()
    peaks["data loaded"] = peak_rss_bytes()
    job = TrainingJob(TrainConfig(data=dataset.name, epochs=1), dataset).start()
    projected = project_while_training(job, dataset, points)  # as the Latent page does during a run
    job.wait()
    peaks["trained + projected"] = peak_rss_bytes()
    if job.snapshot().status != "finished":
        raise RuntimeError(f"the training job ended {job.snapshot().status}: {job.snapshot().message}")
    return {"dataset": dataset.name, "points": projected, "peaks": peaks}


def project_while_training(job, dataset, points: int) -> int:
    """Project the test images' latent means from the job's current weights; returns how many
    points were projected (0 when vae_core.projection does not exist yet)."""
    if importlib.util.find_spec("vae_core.projection") is None:
        return 0
    from vae_core.metrics import latent_means
    from vae_core.models import build_model
    from vae_core.projection import project

    model = build_model(job.config, dataset.image_shape, dataset.num_classes)
    model.load_state_dict(job.latest_weights()[1])
    latents = latent_means(model, dataset.test_x[:points]).numpy()
    for method in PROJECTION_METHODS:
        project(latents, method)
    return int(latents.shape[0])


def run(quick: bool = False) -> list[dict]:
    points = QUICK_POINTS if quick else FULL_POINTS
    result = run_module_json("bench.bench_memory", "--child", "--points", str(points))
    peaks = result["peaks"]
    peak = max(peaks.values())
    stages = ", ".join(f"{stage} {value / MiB:,.0f} MiB" for stage, value in peaks.items())
    projection = (
        f"{result['points']:,}-point {' and '.join(PROJECTION_METHODS)} projection"
        if result["points"]
        else "no projection (vae_core.projection is missing)"
    )
    figure = f"Peak RSS: load {result['dataset']}, 1-epoch TrainingJob and, during it, a {projection}"
    return [
        row(
            figure,
            f"< {TARGET_BYTES / GiB:.0f} GiB",
            f"{peak / MiB:,.0f} MiB (peak after: {stages})",
            peak < TARGET_BYTES,
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"a {QUICK_POINTS:,}-point projection")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--points", type=int, default=FULL_POINTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.points)))
    else:
        print_rows(run(quick=args.quick))


if __name__ == "__main__":
    main()
