"""The loss curves as plain SVG drawn on the server, for the seconds before the browser can draw Plotly.

Why: Plotly's bundle is 4.7 MB of JavaScript, and on a 2-core machine a browser takes 1.1 s to parse
and start it when idle, 2 s or more beside a training run. A run's first points exist a few tenths of
a second after Start; drawn as an inline SVG they show at once, and the interactive chart replaces
the sketch as soon as it has drawn (`hide_once_drawn`: plain CSS, no script).

Also what both kinds of chart share (`downsample`, the colours). numpy only: drawing a sketch
needs neither Plotly's figures nor pandas (ui/charts.py), whose import costs a fresh server 0.3 s."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from vae_core.history import StepCurves

MAX_CURVE_POINTS = 2000  # per trace; longer curves are averaged into buckets so the chart stays light
SKETCH_FOR_S = 20.0  # a tab is sent the sketch this long after it first shows a run; Plotly has drawn by then
PLOTLY_LOADED_AFTER_S = 3.0  # a tab sent a Plotly chart this long ago has loaded it (measured: 1.1-2.2 s after)
SKETCH_POINTS = 300  # per trace of a sketch: a 400-pixel-wide panel shows no more
COLOURS = {"total": "#636efa", "recon": "#00a37a", "kl": "#ef553b", "test": "#222222", "test_kl": "#ab63fa"}
# The sketch's geometry, in its viewBox's units (one unit is a pixel at the loss chart's 380-pixel height):
# its size, the margins above and below the panels, the margin left of a panel, the gap between panels.
WIDTH, HEIGHT = 800, 380
MARGIN_TOP, MARGIN_BOTTOM, MARGIN_LEFT, GAP = 48, 72, 64, 70


class Panel(NamedTuple):
    title: str
    curves: tuple[tuple[str, str], ...]  # (legend name, StepCurves field) per curve
    left: float
    width: float


def downsample(steps: np.ndarray, values: np.ndarray, limit: int = MAX_CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Bucket means, so a 100k-step curve costs the browser 2k points and keeps its shape."""
    if len(steps) <= limit:
        return steps, values
    edges = np.linspace(0, len(steps), limit + 1).astype(int)
    counts = np.diff(edges)
    return (
        # Summed in float64 without a float64 copy of the whole curve (8 M steps: 64 MB a curve).
        np.add.reduceat(steps, edges[:-1], dtype=np.float64) / counts,
        np.add.reduceat(values, edges[:-1], dtype=np.float64) / counts,
    )


def _number(value: float) -> str:
    """A y label of at most 9 characters: 0.0345, 530, 12,345, 1.23e+07."""
    return f"{value:,.0f}" if 100 <= abs(value) < 1e6 else f"{value:.3g}"


def _panel(panel: Panel, curves: StepCurves, log_y: bool) -> list[str]:
    """One panel's frame, title, y range and x range, and a polyline per curve of the panel, with a
    dot on its last point so that a single step already shows."""
    title, left, width = panel.title, panel.left, panel.width
    series = []
    for name, key in panel.curves:
        steps, values = downsample(curves.step, getattr(curves, key), SKETCH_POINTS)
        values = np.asarray(values, dtype=np.float64)
        keep = np.isfinite(values) & ((values > 0) if log_y else True)
        series.append((name, key, np.asarray(steps, dtype=np.float64)[keep], values[keep]))
    shown = [values for *_, values in series if len(values)]
    low = min(float(v.min()) for v in shown) if shown else 0.0
    high = max(float(v.max()) for v in shown) if shown else 1.0
    first = min((float(s[0]) for _, _, s, _ in series if len(s)), default=0.0)
    last = max((float(s[-1]) for _, _, s, _ in series if len(s)), default=1.0)
    scale = np.log10 if log_y else (lambda v: v)
    y_low, y_high = (float(scale(low)), float(scale(high))) if shown else (0.0, 1.0)
    if y_high - y_low < 1e-12:
        y_low, y_high = y_low - 0.5, y_high + 0.5
    bottom = HEIGHT - MARGIN_BOTTOM

    def x_of(steps: np.ndarray) -> np.ndarray:
        return left + (steps - first) / max(last - first, 1.0) * width

    def y_of(values: np.ndarray) -> np.ndarray:
        return bottom - (scale(values) - y_low) / (y_high - y_low) * (bottom - MARGIN_TOP)

    parts = [
        f'<text x="{left + width / 2:.0f}" y="{MARGIN_TOP - 24}" text-anchor="middle" font-size="15">'
        f"{html.escape(title)}</text>",
        f'<rect x="{left:.0f}" y="{MARGIN_TOP}" width="{width:.0f}" height="{bottom - MARGIN_TOP}" fill="none" '
        'stroke="#ccc"/>',
    ]
    if shown:
        parts += [
            f'<text x="{left - 6:.0f}" y="{MARGIN_TOP + 4}" text-anchor="end">{_number(high)}</text>',
            f'<text x="{left - 6:.0f}" y="{bottom}" text-anchor="end">{_number(low)}</text>',
            f'<text x="{left:.0f}" y="{bottom + 18}">{first:,.0f}</text>',
            f'<text x="{left + width:.0f}" y="{bottom + 18}" text-anchor="end">{last:,.0f}</text>',
        ]
    parts.append(f'<text x="{left + width / 2:.0f}" y="{bottom + 36}" text-anchor="middle">step</text>')
    for _name, key, steps, values in series:
        if not len(values):
            continue
        xs, ys = x_of(steps), y_of(values)
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
        parts += [
            f'<polyline data-curve="{key}" points="{points}" fill="none" stroke="{COLOURS[key]}" stroke-width="1.5"/>',
            f'<circle cx="{xs[-1]:.1f}" cy="{ys[-1]:.1f}" r="2.5" fill="{COLOURS[key]}"/>',
        ]
    return parts


def loss_sketch_svg(curves: StepCurves, *, variational: bool = True, log_y: bool = False) -> str:
    """The loss chart's curves (total and reconstruction on the left, KL on the right; an
    autoencoder's reconstruction alone) as one SVG, scaled to the width it is given."""
    if variational:
        width = (WIDTH - 2 * MARGIN_LEFT - GAP) / 2
        panels = [
            Panel(
                "Total and reconstruction (nats)", (("total", "total"), ("reconstruction", "recon")), MARGIN_LEFT, width
            ),
            Panel("KL (nats)", (("KL", "kl"),), 2 * MARGIN_LEFT + GAP / 2 + width, width),
        ]
    else:
        panels = [
            Panel(
                "Reconstruction error (no KL: an autoencoder)",
                (("reconstruction", "recon"),),
                MARGIN_LEFT,
                WIDTH - MARGIN_LEFT - 20,
            )
        ]
    parts = []
    for panel in panels:
        parts += _panel(panel, curves, log_y)
    parts += _legend([curve for panel in panels for curve in panel.curves])
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" font-family="sans-serif" font-size="13" fill="#555">{"".join(parts)}</svg>'
    )


def _legend(keys: Sequence[tuple[str, str]]) -> list[str]:
    """A line of colour and name per curve, centred under the panels as in the Plotly chart."""
    slot = 130
    left = (WIDTH - slot * len(keys)) / 2
    parts = []
    for index, (name, key) in enumerate(keys):
        x = left + index * slot
        parts += [
            f'<line x1="{x:.0f}" y1="{HEIGHT - 10}" x2="{x + 24:.0f}" y2="{HEIGHT - 10}" '
            f'stroke="{COLOURS[key]}" stroke-width="2"/>',
            f'<text x="{x + 30:.0f}" y="{HEIGHT - 5}">{html.escape(name)}</text>',
        ]
    return parts


def hide_once_drawn(area_key: str, sketch_key: str, chart_key: str) -> str:
    """CSS that hides the sketch in the container keyed `area_key` once the Plotly chart keyed
    `chart_key` beside it has drawn (Streamlit gives a keyed element the class st-key-<key>)."""
    return (
        f"<style>.st-key-{area_key}:has(.st-key-{chart_key} .js-plotly-plot .main-svg) "
        f".st-key-{sketch_key} {{ display: none; }}</style>"
    )
