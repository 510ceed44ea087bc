"""Memory of long runs read back: the resident set size of a fresh process that opens six large
checkpoints (8 M history rows each, like a 190 MB upload) the way the app's pages do, and the time
and memory of "Curves as CSV" for an 8.3 M-row run.

Each measurement runs in a process of its own (`--child`), so its figures are that process's.

    python -m bench.bench_uploads [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import GiB, MiB, peak_rss_bytes, print_rows, row, run_module_json

CHECKPOINTS = 6
HISTORY_ROWS = 8_000_000
CSV_ROWS = 8_300_000
QUICK_HISTORY_ROWS = 1_000_000
QUICK_CSV_ROWS = 1_000_000
# What the process may grow by: the checkpoint cache's budget (config.Limits), and a quarter more for
# what is not weighed (Python objects, the allocator's slack).
GROWTH_TARGET = 1.25


def rss_bytes() -> int:
    """This process's resident set size now (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def make_checkpoints(folder: Path, count: int, rows: int) -> list[Path]:
    """`count` small digits runs, each with a history of `rows` float32 step rows."""
    import numpy as np

    from vae_core.checkpoint import save_trainer_checkpoint
    from vae_core.config import TrainConfig
    from vae_core.data import load_dataset
    from vae_core.loop import run_to_end
    from vae_core.trainer import Trainer

    config = TrainConfig(data="digits", hidden=(32,), latent_dim=2, epochs=1, device="cpu")
    trainer = Trainer(config, load_dataset("digits"))
    run_to_end(trainer)
    matrix = np.empty((rows, 6), dtype=np.float32)
    matrix[:, 0] = np.arange(1, rows + 1)
    matrix[:, 1:4] = np.random.default_rng(0).random((rows, 3), dtype=np.float32) * 100
    matrix[:, 4], matrix[:, 5] = 1.0, 1e-3
    trainer.history.steps = [matrix]
    paths = []
    for index in range(count):
        path = folder / f"big-{index}.safetensors"
        save_trainer_checkpoint(trainer, f"big-{index}", "finished", path)
        paths.append(path)
    return paths


def open_child(folder: str) -> dict:
    """Open every checkpoint of `folder` as a page does (ui.runs: read, cache, curves, model)."""
    import ui.runs

    start = rss_bytes()
    after = []
    for path in sorted(Path(folder).glob("*.safetensors")):
        view = ui.runs.load_view(f"file:{path}")
        len(view.curves)
        del view
        gc.collect()
        after.append(rss_bytes())
    from vae_core.config import limits

    return {"start": start, "after_each": after, "peak": peak_rss_bytes(), "budget": limits().checkpoint_cache_bytes}


def csv_child(rows: int) -> dict:
    """'Curves as CSV' of one run of `rows` steps: seconds, CPU seconds and peak RSS above the start."""
    import numpy as np

    from ui.curve_controls import curves_csv
    from vae_core.history import RunClock, StepCurves

    values = np.random.default_rng(0).random((3, rows), dtype=np.float32) * 100
    step = np.arange(1, rows + 1, dtype=np.int64)
    clock = RunClock(np.array([1.0, float(rows)]), np.array([0.0, rows / 1000]))
    curves = StepCurves(
        step, values[0], values[1], values[2], np.ones(rows, np.float32), np.full(rows, 1e-3, np.float32), clock
    )
    gc.collect()
    before, wall, cpu = peak_rss_bytes(), time.perf_counter(), time.process_time()
    text = curves_csv([("a run", curves, 400)])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"seconds": wall, "cpu_seconds": cpu, "peak_above_start": peak_rss_bytes() - before, "csv_bytes": len(text)}


def run(quick: bool = False) -> list[dict]:
    rows, csv_rows = (QUICK_HISTORY_ROWS, QUICK_CSV_ROWS) if quick else (HISTORY_ROWS, CSV_ROWS)
    with tempfile.TemporaryDirectory(prefix="vae_studio_bench_uploads_") as folder:
        made = run_module_json("bench.bench_uploads", "--make", folder, "--rows", str(rows))
        opened = run_module_json("bench.bench_uploads", "--open", folder)
    csv = run_module_json("bench.bench_uploads", "--csv", str(csv_rows))
    grown = opened["after_each"][-1] - opened["start"]
    budget = opened["budget"]
    return [
        row(
            f"RSS of a fresh process after opening {CHECKPOINTS} checkpoints of {rows:,} history rows "
            f"({made['file_mib']:.0f} MiB each) as the pages do: growth / checkpoint cache budget "
            f"({budget / GiB:g} GiB)",
            f"< {GROWTH_TARGET}",
            f"{grown / budget:.2f} (start {opened['start'] / MiB:,.0f} MiB, after each: "
            f"{', '.join(f'{b / MiB:,.0f}' for b in opened['after_each'])} MiB)",
            grown < GROWTH_TARGET * budget,
        ),
        row(
            f"'Curves as CSV' of a run of {csv_rows:,} steps",
            "-",
            f"{csv['seconds']:.1f} s (CPU {csv['cpu_seconds']:.1f} s), peak RSS +{csv['peak_above_start'] / MiB:,.0f} MiB "
            f"for {csv['csv_bytes'] / MiB:,.0f} MiB of CSV",
            None,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--make", metavar="FOLDER")
    parser.add_argument("--rows", type=int, default=HISTORY_ROWS)
    parser.add_argument("--open", metavar="FOLDER")
    parser.add_argument("--csv", type=int, metavar="ROWS")
    arguments = parser.parse_args()
    if arguments.make:
        paths = make_checkpoints(Path(arguments.make), CHECKPOINTS, arguments.rows)
        print(json.dumps({"file_mib": paths[0].stat().st_size / MiB}))
    elif arguments.open:
        print(json.dumps(open_child(arguments.open)))
    elif arguments.csv:
        print(json.dumps(csv_child(arguments.csv)))
    else:
        print_rows(run(arguments.quick))


if __name__ == "__main__":
    main()
