"""What people expect of training curves: smoothing, a log y axis, x by step, epoch or wall time,
the numbers as CSV, and every chart or picture grid as PNG.

The controls transform a finished Plotly figure (any chart whose x is the global step), so
ui/charts.py keeps building figures one way and a page adds the controls with two calls:

    options = curve_controls("loss")
    st.plotly_chart(apply_curve_options(figure, options, steps_per_epoch), config=PLOTLY_CONFIG)
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from streamlit.errors import StreamlitDuplicateElementKey

from vae_core.history import StepCurves

X_AXES = {"step": "step", "epoch": "epoch", "wall": "wall time (s)"}
# Plotly's toolbar always shown (not only on hover), its camera button saving a PNG at twice the size.
PLOTLY_CONFIG = {"displayModeBar": True, "displaylogo": False,
                 "toImageButtonOptions": {"format": "png", "scale": 2, "filename": "vae-studio-chart"}}
_SPREADSHEET_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # a cell starting so is run by spreadsheets


@dataclass(frozen=True)
class CurveOptions:
    smoothing: float = 0.0  # weight of the exponential moving average, as TensorBoard's slider
    log_y: bool = False
    x_axis: str = "step"  # one of X_AXES


@dataclass(frozen=True)
class RunClock:
    """Wall time (seconds since the run started in its process) at some of its steps."""

    steps: np.ndarray
    seconds: np.ndarray

    @classmethod
    def from_points(cls, steps: Sequence, seconds: Sequence) -> "RunClock | None":
        pairs = [(s, t) for s, t in zip(steps, seconds) if s is not None and t is not None]
        if len(pairs) < 2:
            return None
        steps_known, seconds_known = np.asarray(pairs, dtype=np.float64).T
        return cls(steps_known, seconds_known)

    def at(self, steps: np.ndarray) -> np.ndarray:
        """Seconds at `steps`, interpolated; NaN outside what the clock saw (a resumed run's earlier
        steps were timed by another process)."""
        return np.interp(steps, self.steps, self.seconds, left=np.nan, right=np.nan)


def curve_controls(key: str, *, wall_time: bool = False) -> CurveOptions:
    """Smoothing, log y and the x axis, in one row; `key` keeps each chart's choices apart."""
    left, middle, right = st.columns([3, 1.4, 3], vertical_alignment="bottom")
    smoothing = left.slider("Smoothing", 0.0, 0.99, 0.0, 0.01, key=f"{key}_smoothing",
                            help="Exponential moving average, as in TensorBoard (debiased at the start). "
                                 "Test metrics per epoch are never smoothed.")
    log_y = middle.toggle("Log y", key=f"{key}_log_y", help="Loss spikes (a diverging run) stay readable on a log axis.")
    choices = list(X_AXES) if wall_time else ["step", "epoch"]
    x_axis = right.segmented_control(
        "x axis", choices, default="step", key=f"{key}_x_axis", format_func=X_AXES.get,
        help="Wall time is known for runs followed from their progress record (trained by the CLI)."
        if not wall_time else "Seconds since the run started in its process.")
    return CurveOptions(smoothing=float(smoothing), log_y=bool(log_y), x_axis=x_axis or "step")


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average: the first points are not pulled to 0."""
    values = np.asarray(values, dtype=np.float64)
    if weight <= 0 or len(values) < 2:
        return values
    from scipy.signal import lfilter

    average = lfilter([1 - weight], [1, -weight], values)
    return average / lfilter([1 - weight], [1, -weight], np.ones_like(values))


def x_transform(options: CurveOptions, steps_per_epoch: int | None = None, clock: RunClock | None = None):
    """The map from a step to the x the options ask for (None: keep steps)."""
    if options.x_axis == "epoch" and steps_per_epoch:
        return lambda steps: np.asarray(steps, dtype=np.float64) / steps_per_epoch
    if options.x_axis == "wall" and clock is not None:
        return lambda steps: clock.at(np.asarray(steps, dtype=np.float64))
    return None


def apply_curve_options(figure: go.Figure, options: CurveOptions, steps_per_epoch: int | None = None,
                        clock: RunClock | None = None) -> go.Figure:
    """The figure with its line traces smoothed, its y axes logarithmic and its x axes mapped from
    steps to epochs or seconds. Markers (per-epoch test metrics) keep their values."""
    if options.smoothing > 0:
        for trace in figure.data:
            if trace.y is not None and (trace.mode or "lines") == "lines":
                trace.y = smooth(np.asarray(trace.y, dtype=np.float64), options.smoothing)
    if options.log_y:  # an axis the figure made logarithmic itself keeps its range
        figure.for_each_yaxis(lambda axis: axis.update(type="log", autorange=True, range=None)
                              if axis.type != "log" else None)
    to_x = x_transform(options, steps_per_epoch, clock)
    if to_x is not None:
        for trace in figure.data:
            if trace.x is not None:
                trace.x = to_x(np.asarray(trace.x, dtype=np.float64))
        for shape in figure.layout.shapes or ():
            if str(shape.xref or "x").startswith("x"):
                shape.x0, shape.x1 = (float(v) for v in to_x(np.array([shape.x0, shape.x1], dtype=np.float64)))
        for note in figure.layout.annotations or ():
            if str(note.xref or "").startswith("x") and note.x is not None:
                note.x = float(to_x(np.array([note.x], dtype=np.float64))[0])
        figure.update_xaxes(title_text=X_AXES[options.x_axis])
    return figure


# -- CSV ---------------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    """A name from a file, safe in a spreadsheet: one starting like a formula is quoted as text."""
    return "'" + text if text.startswith(_SPREADSHEET_FORMULA) else text


def curves_csv(runs: Sequence[tuple[str, StepCurves, int | None, RunClock | None]]) -> bytes:
    """One row per run and step: run, step, epoch, wall_s (blank when unknown), total, recon, kl,
    beta, lr. `runs` holds (name, curves, steps per epoch, clock or None)."""
    import pandas as pd

    frames = []
    for name, curves, per_epoch, clock in runs:
        steps = curves.step.astype(np.float64)
        frames.append(pd.DataFrame({
            "run": _cell(name), "step": curves.step,
            "epoch": steps / per_epoch if per_epoch else np.nan,
            "wall_s": clock.at(steps) if clock is not None else np.nan,
            "total": curves.total, "recon": curves.recon, "kl": curves.kl, "beta": curves.beta, "lr": curves.lr}))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["run", "step", "epoch", "wall_s", "total", "recon", "kl", "beta", "lr"])
    return table.to_csv(index=False, float_format="%.6g").encode()


def csv_download(runs: Sequence[tuple[str, StepCurves, int | None, RunClock | None]], *, key: str,
                 file_name: str = "curves.csv") -> None:
    """A button that builds the CSV only when clicked, without re-running the page."""
    st.download_button("Curves as CSV", data=lambda: curves_csv(runs), file_name=file_name, mime="text/csv",
                       on_click="ignore", key=key, icon=":material/download:", type="tertiary")


# -- PNG of a picture grid ------------------------------------------------------------------------------


def png_bytes(picture: np.ndarray) -> bytes:
    """A uint8 H x W (grey) or H x W x 3 picture as PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(picture)).save(buffer, format="PNG")
    return buffer.getvalue()


def png_download(picture: np.ndarray, name: str = "images") -> None:
    """A small 'PNG' button under a picture grid. Its identity is the picture's content and name, so
    the same grid keeps its button from one rerun to the next."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:40] or "images"
    digest = hashlib.sha1(np.ascontiguousarray(picture).tobytes()).hexdigest()[:12]
    try:
        st.download_button("PNG", data=lambda: png_bytes(picture), file_name=f"{slug}.png", mime="image/png",
                           on_click="ignore", key=f"png_{slug}_{digest}", icon=":material/download:",
                           type="tertiary", help="Download this picture grid as a PNG file")
    except StreamlitDuplicateElementKey:
        pass  # the very same grid is on the page twice: its first button downloads it
