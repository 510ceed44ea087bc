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


def _first_chunks_peak(steps: int, chunks: int = 3) -> int:
    """Peak bytes allocated while the first `chunks` chunks of rows of a run of `steps` are written."""
    run = curves(steps, clock=RunClock(np.array([1.0, float(steps)]), np.array([0.0, 1000.0])))
    written = csv_chunks([("run", run, 400)])
    next(written)  # the header
    tracemalloc.start()
    try:
        for _ in range(chunks):
            next(written)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def test_writing_takes_one_chunk_of_memory_however_long_the_run():
    """A run of a million steps (28 MB of curves) costs no more to write, chunk by chunk, than one of
    20,000: nothing the size of the run is made (the pandas table held each column as float64, 8 MB a
    column here). Timed by tracemalloc on three chunks only: tracing a whole million rows takes 35 s."""
    short, long = _first_chunks_peak(20_000), _first_chunks_peak(1_000_000)
    assert long < short + 256 * 1024  # one float64 column of the long run would be 8,000,000 bytes
    assert short < 8 * 1024 * 1024  # a chunk of 8,192 rows: a few MB of Python numbers and text


def test_the_chunks_are_the_csv_cut_every_chunk_rows():
    chunks = list(csv_chunks([("run", curves(2 * CHUNK_ROWS + 5), None)]))
    assert [chunk.count(b"\n") for chunk in chunks] == [1, CHUNK_ROWS, CHUNK_ROWS, 5]
    assert b"".join(chunks) == curves_csv([("run", curves(2 * CHUNK_ROWS + 5), None)])
