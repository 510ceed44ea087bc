"""The controls people expect around training curves: smoothing, log y, x by step, epoch or wall time.

Also the numbers as CSV, and every chart as PNG (Plotly's camera button; picture grids: picture_download.py).

The controls transform a finished Plotly figure (any chart whose x is the global step), so
ui/charts.py keeps building figures one way and a page adds the controls with two calls:

    options = curve_controls("loss", wall_time=curves.clock is not None)
    st.plotly_chart(apply_curve_options(figure, options, steps_per_epoch, curves.clock), config=PLOTLY_CONFIG)

Wall time is each run's own clock (vae_core.history.RunClock, carried by its StepCurves): seconds
since the run started, pauses included, going on after a resume from the time it was saved at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from vae_core.history import RunClock, StepCurves

if TYPE_CHECKING:  # ui.charts imports pandas: the pages load it where they draw a chart
    from ui.charts import ComparedRun

X_AXES = {"step": "step", "epoch": "epoch", "wall": "wall time (s)"}
# Plotly's toolbar always shown (not only on hover), its camera button saving a PNG at twice the size.
PLOTLY_CONFIG = {
    "displayModeBar": True,
    "displaylogo": False,
    "toImageButtonOptions": {"format": "png", "scale": 2, "filename": "vae-studio-chart"},
}
WALL_TIME_HELP = (
    "Seconds since the run started, pauses included; a resumed run goes on from the time it was "
    "saved at (the time it waited on disk is not counted)."
)
# One clock for a figure of one run, or one per run of a charts.compare_figure (its traces say their run).
Clocks = RunClock | Sequence[RunClock | None] | None


@dataclass(frozen=True)
class CurveOptions:
    smoothing: float = 0.0  # weight of the exponential moving average, as TensorBoard's slider
    log_y: bool = False
    x_axis: str = "step"  # one of X_AXES


def curve_controls(key: str, *, wall_time: bool = False) -> CurveOptions:
    """Smoothing, log y and the x axis, in one row; `key` keeps each chart's choices apart."""
    # The x-axis choices need about 260 px and "Log y" with its help icon about 110: at 1280x720 the
    # Train page's chart column is about 515 px wide, so the smoothing slider gives way; in a column
    # narrower still (a 900 px window) the row wraps.
    from ui.widgets import wrapping_columns

    left, middle, right = wrapping_columns(f"{key}_curve_controls", [2, 1.5, 3.5])
    smoothing = left.slider(
        "Smoothing",
        0.0,
        0.99,
        0.0,
        0.01,
        key=f"{key}_smoothing",
        help="Exponential moving average, as in TensorBoard (debiased at the start). "
        "Test metrics per epoch are never smoothed.",
    )
    log_y = middle.toggle(
        "Log y", key=f"{key}_log_y", help="Loss spikes (a diverging run) stay readable on a log axis."
    )
    choices = list(X_AXES) if wall_time else ["step", "epoch"]
    x_axis = right.segmented_control(
        "x axis",
        choices,
        default="step",
        key=f"{key}_x_axis",
        format_func=X_AXES.get,
        help=WALL_TIME_HELP
        if wall_time
        else "Wall time: none known for these curves yet (no step trained, or "
        "a run saved by a version that kept no clock).",
    )
    # A choice kept from a chart that had a clock, on one that has none, falls back to steps.
    return CurveOptions(smoothing=float(smoothing), log_y=bool(log_y), x_axis=x_axis if x_axis in choices else "step")


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average: the first points are not pulled to 0."""
    values = np.asarray(values, dtype=np.float64)
    if weight <= 0 or len(values) < 2:
        return values
    from scipy.signal import lfilter

    average = lfilter([1 - weight], [1, -weight], values)
    return average / lfilter([1 - weight], [1, -weight], np.ones_like(values))


def x_transform(options: CurveOptions, steps_per_epoch: int | None = None, clock: RunClock | None = None):
    """The map from a step to the x the options ask for (None: keep steps). By wall time, steps no
    clock covers map to NaN: Plotly leaves them out rather than placing them at a made-up time."""
    if options.x_axis == "epoch" and steps_per_epoch:
        return lambda steps: np.asarray(steps, dtype=np.float64) / steps_per_epoch
    if options.x_axis == "wall":
        if clock is None:
            return lambda steps: np.full(np.shape(steps), np.nan)
        return lambda steps: clock.at(np.asarray(steps, dtype=np.float64))
    return None


def trace_clock(trace, clocks: Clocks) -> RunClock | None:
    """The clock of a trace's run: the one clock, or the one of the run the trace's `meta` names."""
    if clocks is None or isinstance(clocks, RunClock):
        return clocks
    run = trace.meta.get("run") if isinstance(trace.meta, dict) else None
    return clocks[run] if isinstance(run, int) and 0 <= run < len(clocks) else None


def apply_curve_options(
    figure: go.Figure, options: CurveOptions, steps_per_epoch: int | None = None, clock: Clocks = None
) -> go.Figure:
    """The figure with its line traces smoothed, its y axes logarithmic and its x axes mapped from
    steps to epochs or seconds. Markers (per-epoch test metrics) keep their values. `clock` is the
    run's clock, or a list with each run's, in the order charts.compare_figure drew them."""
    if options.smoothing > 0:
        for trace in figure.data:
            if trace.y is not None and (trace.mode or "lines") == "lines":
                trace.y = smooth(np.asarray(trace.y, dtype=np.float64), options.smoothing)
    if options.log_y:  # an axis the figure made logarithmic itself keeps its range
        figure.for_each_yaxis(
            lambda axis: axis.update(type="log", autorange=True, range=None) if axis.type != "log" else None
        )
        from ui.charts import LOG_TICKS  # loaded already: the figure is one of its charts

        figure.update_yaxes(**LOG_TICKS)  # whole numbers between the powers of ten, not small digits
    # Lines where lr or beta changed, and their labels, belong to the one run of a loss figure.
    to_x = x_transform(options, steps_per_epoch, clock if isinstance(clock, RunClock) else None)
    if to_x is None:
        return figure
    for trace in figure.data:
        if trace.x is not None:
            to_trace_x = x_transform(options, steps_per_epoch, trace_clock(trace, clock))
            trace.x = to_trace_x(np.asarray(trace.x, dtype=np.float64))
    for shape in figure.layout.shapes or ():
        if str(shape.xref or "x").startswith("x"):
            shape.x0, shape.x1 = (float(v) for v in to_x(np.array([shape.x0, shape.x1], dtype=np.float64)))
    for note in figure.layout.annotations or ():
        if str(note.xref or "").startswith("x") and note.x is not None:
            note.x = float(to_x(np.array([note.x], dtype=np.float64))[0])
    figure.update_xaxes(title_text=X_AXES[options.x_axis])
    return figure


def compare_chart(runs: Sequence[ComparedRun], metric: str, *, key: str) -> None:
    """Several runs' curves of `metric` with the controls above them and a CSV button below. x may be
    epochs when the runs share an epoch length, and wall time when one of them has a clock (those
    without one are named, not drawn)."""
    from ui import charts
    from ui.widgets import plain

    clocks = [run.curves.clock for run in runs]
    epoch_lengths = {run.steps_per_epoch for run in runs}
    per_epoch = next(iter(epoch_lengths)) if len(epoch_lengths) == 1 else None
    options = curve_controls(key, wall_time=any(clock is not None for clock in clocks))
    figure = charts.compare_figure(runs, metric)
    if options.x_axis == "epoch" and per_epoch is None:
        st.caption("The runs have different epoch lengths: x stays in steps.")
    untimed = [run.name for run, clock in zip(runs, clocks) if clock is None]
    if options.x_axis == "wall" and untimed:
        st.caption(
            f"No wall time is known for {plain(', '.join(untimed))} (saved by a version that kept none): "
            "left out of this chart."
        )
    st.plotly_chart(apply_curve_options(figure, options, per_epoch, clocks), key=f"{key}_chart", config=PLOTLY_CONFIG)
    csv_download([(run.name, run.curves, per_epoch) for run in runs], key=f"{key}_csv", file_name=f"{key}-curves.csv")


# -- CSV ---------------------------------------------------------------------------------------------


def curves_csv(runs: Sequence[tuple[str, StepCurves, int | None]]) -> bytes:
    """One row per run and step: run, step, epoch, wall_s (the run's clock; blank when unknown),
    total, recon, kl, beta, lr. `runs` holds (name, curves, steps per epoch). Written a chunk of rows
    at a time (ui/csv_export.py), so a run of millions of steps costs its text, not a table."""
    from ui.csv_export import curves_csv as whole_csv

    return whole_csv(runs)


def csv_download(
    runs: Sequence[tuple[str, StepCurves, int | None]], *, key: str, file_name: str = "curves.csv"
) -> None:
    """A button that builds the CSV only when clicked, without re-running the page."""
    st.download_button(
        "Curves as CSV",
        data=lambda: curves_csv(runs),
        file_name=file_name,
        mime="text/csv",
        on_click="ignore",
        key=key,
        icon=":material/download:",
        type="tertiary",
    )
