"""'Curves as CSV' written a chunk at a time: the text pandas wrote, in memory bounded by the curves."""

import tracemalloc

import numpy as np
import pandas as pd

from ui.csv_export import CHUNK_ROWS, csv_chunks, curves_csv
from vae_core.history import RunClock, StepCurves


def curves(count: int, *, first_step: int = 1, clock: RunClock | None = None, seed: int = 0) -> StepCurves:
    values = np.random.default_rng(seed).random((3, count), dtype=np.float32) * 300
    return StepCurves(
        step=np.arange(first_step, first_step + count, dtype=np.int64),
        total=values[0],
        recon=values[1],
        kl=values[2],
        beta=np.linspace(0, 4, count, dtype=np.float32),
        lr=np.full(count, 1e-3, dtype=np.float32),
        clock=clock,
    )


def pandas_csv(runs) -> bytes:
    """The CSV as the pandas table of every step wrote it before (the reference)."""
    frames = []
    for name, run, per_epoch in runs:
        steps = run.step.astype(np.float64)
        cell = "'" + name if name.startswith(("=", "+", "-", "@", "\t", "\r")) else name
        columns = {"run": cell, "step": run.step, "epoch": steps / per_epoch if per_epoch else np.nan}
        columns["wall_s"] = run.clock.at(steps) if run.clock is not None else np.nan
        columns.update({field: getattr(run, field) for field in ("total", "recon", "kl", "beta", "lr")})
        frames.append(pd.DataFrame(columns))
    return pd.concat(frames, ignore_index=True).to_csv(index=False, float_format="%.6g").encode()


def test_the_csv_is_the_one_pandas_wrote():
    # A clock that starts at step 20 (earlier steps have no wall time), names to quote or to defuse.
    clock = RunClock(np.array([20.0, 100.0]), np.array([1.5, 9.25]))
    runs = [
        ("plain", curves(100, clock=clock), 7),
        ('a, "quoted" name', curves(100, first_step=50, seed=1), None),
        ("=HYPERLINK(1)", curves(3, seed=2), 3),
        ("", curves(0), 3),
    ]
    text = curves_csv(runs)
    assert text == pandas_csv(runs)
    assert text.splitlines()[1].startswith(b"plain,1,0.142857,,") and b"'=HYPERLINK(1)" in text


def test_no_runs_is_the_header_alone():
    assert curves_csv([]) == b"run,step,epoch,wall_s,total,recon,kl,beta,lr\n"


def test_a_run_of_a_million_steps_is_written_in_bounded_memory():
    steps = 1_000_000
    run = curves(steps, clock=RunClock(np.array([1.0, float(steps)]), np.array([0.0, 1000.0])))
    history_bytes = sum(getattr(run, field).nbytes for field in ("step", "total", "recon", "kl", "beta", "lr"))
    assert history_bytes == steps * (8 + 5 * 4)

    tracemalloc.start()  # one pass: tracing every Python number makes it 15 times slower
    try:
        text = curves_csv([("run", run, 400)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert text.count(b"\n") == steps + 1 and len(text) > 2 * history_bytes
    # Beyond the text itself, one chunk of CHUNK_ROWS rows at a time: under a quarter of the curves' own
    # bytes (measured: 5.3 MB for 28 MB of curves and 64 MB of text); the pandas table took 8 times them.
    assert steps // CHUNK_ROWS >= 100
    assert peak - len(text) < history_bytes / 4 and peak < 3 * history_bytes


def test_the_chunks_are_the_csv_cut_every_chunk_rows():
    chunks = list(csv_chunks([("run", curves(2 * CHUNK_ROWS + 5), None)]))
    assert [chunk.count(b"\n") for chunk in chunks] == [1, CHUNK_ROWS, CHUNK_ROWS, 5]
    assert b"".join(chunks) == curves_csv([("run", curves(2 * CHUNK_ROWS + 5), None)])
