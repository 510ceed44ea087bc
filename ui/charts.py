"""Plotly figures built from snapshots and histories. Pure functions: data in, figure out."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas  # noqa: F401 (see below)
import plotly.graph_objects as go

# Plotly checks whether pandas is loaded by looking in sys.modules; while the warm-up thread is
# importing it there, Plotly would find it half initialised and fail. Importing it here waits for
# that import to finish.
from vae_core.active_units import active_dimensions
from vae_core.history import StepCurves

from .light_charts import COLOURS, downsample

EVENT_LABEL_WIDTH = 0.1  # share of the step axis an 8-character label ("beta=4.5") covers in its panel
TOTAL_BAND = "rgba(99, 110, 250, 0.18)"  # COLOURS["total"], faint: the band between total and reconstruction
# A log axis labels its ticks with whole numbers ("20, 10, 5, 2, 1, 0.5"): by default Plotly labels
# the ticks between powers of ten with small single digits, which read as "2, 10, 5, 2, 1, 5, 2, 0.1".
LOG_TICKS = {"minorloglabels": "complete"}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def empty_loss_figure() -> go.Figure:
    """The loss chart's axes before a run has a point."""
    empty = np.zeros(0)
    return loss_figure(StepCurves(step=empty, total=empty, recon=empty, kl=empty, beta=empty, lr=empty), (), ())


def robust_range(values: Sequence[np.ndarray], log: bool = False) -> list[float] | None:
    """A y range that keeps the bulk of the curve readable when a few points spike (a diverging
    step may be 10^6 times the rest): from the smallest finite value to the 99th percentile, with a
    margin. None (Plotly's autorange) when nothing spikes."""
    # In the curves' own float32: a run of 8 M steps made 130 MB of float64 copies here on every draw.
    finite = np.concatenate([np.asarray(v).ravel() for v in values] or [np.zeros(0, dtype=np.float32)])
    finite = finite[np.isfinite(finite)]
    if log:
        finite = np.log10(finite[finite > 0])
    if finite.size < 20:
        return None
    low, high, top = float(finite.min()), float(np.percentile(finite, 99)), float(finite.max())
    spread = max(high - low, 1e-9)
    if top <= high + 2 * spread:
        return None
    return [low - 0.05 * spread, high + 0.25 * spread]


def _event_labels(events: Sequence[dict], last_step: float) -> list[dict]:
    """One label per step where lr or beta changed (both names in one label when they changed
    together), stacked in rows so that labels close on the axis never overlap."""
    by_step: dict[int, list[str]] = {}
    for event in events:
        if event["name"] in ("lr", "beta"):
            by_step.setdefault(int(event["step"]), []).append(f"{event['name']}={event['value']:g}")
    labels, row_ends = [], []  # row_ends[r]: step where the last label of row r ends
    near = max(last_step, 1) * EVENT_LABEL_WIDTH
    for step in sorted(by_step):
        text = ", ".join(by_step[step])
        width = near * max(1, len(text) / 8)
        row = next((r for r, end in enumerate(row_ends) if step - width / 2 > end), len(row_ends))
        if row == len(row_ends):
            row_ends.append(0)
        row_ends[row] = step + width / 2
        labels.append(
            {
                "text": text,
                "x": step,
                "xref": "x",
                "y": 1.0,
                "yref": "y domain",
                "showarrow": False,
                "yanchor": "bottom",
                "yshift": 14 * row,
                "font": {"size": 10},
                "bgcolor": "rgba(255,255,255,0.85)",
            }
        )
    return labels


def weighted_kl_name(beta: np.ndarray, free_bits: float = 0.0) -> str:
    """What the training total adds to the reconstruction, in the words of its weight: "KL" at β=1,
    "8 × KL" at a constant β=8, "β × KL" when β changed (annealing, a live change)."""
    kl = "KL" if free_bits <= 0 else f"KL (at least {free_bits:g} nats per dimension)"
    beta = np.asarray(beta)
    if len(beta) and beta.min() == beta.max():  # one β throughout (no sorted copy of every step's)
        return kl if beta[0] == 1 else f"{float(beta[0]):g} × {kl}"
    return f"β × {kl}"


def total_legend_title(beta: np.ndarray, free_bits: float = 0.0) -> str | None:
    """Why a total weighted by β ≠ 1 sits away from the test −ELBO (which weighs the KL by 1); None
    at β = 1 throughout, where the two are the same sum."""
    weighted = weighted_kl_name(beta, free_bits)
    if weighted == "KL":
        return None
    return f"total = reconstruction + {weighted}; test −ELBO = reconstruction + KL: "


def _panel_title(text: str, x: float) -> dict:
    """A title above one panel of a figure, centred at `x` (a fraction of the plotting width): "auto"
    anchoring put a title left of 1/3 by its start, and at 900 px the loss panel's ran into KL's."""
    return {
        "text": text,
        "x": x,
        "xanchor": "center",
        "y": 1.0,
        "xref": "paper",
        "yref": "paper",
        "showarrow": False,
        "yanchor": "bottom",
        "yshift": 28,
        "font": {"size": 13},
    }


def loss_figure(
    curves: StepCurves,
    epoch_metrics: Sequence[dict],
    events: Sequence[dict],
    *,
    log_y: bool = False,
    variational: bool = True,
    free_bits: float = 0.0,
    revision: str = "loss",
) -> go.Figure:
    """Loss per step: total and reconstruction on the left panel, the band between them shaded (the
    β-weighted KL the total adds), KL on its own (its scale is often 10x smaller), the test -ELBO per
    epoch as markers, and dotted lines where lr or beta changed. An autoencoder (variational=False)
    has no KL and no bound: its panel shows the reconstruction and its test reconstruction error only.

    The two panels are laid out by hand rather than with make_subplots, which costs ~0.1 s per
    call: this figure is rebuilt every second while a run trains."""
    traces = []
    weighted = weighted_kl_name(curves.beta, free_bits)
    x, y = downsample(curves.step, curves.recon)
    traces.append(
        go.Scatter(x=x, y=y, name="reconstruction", mode="lines", line={"color": COLOURS["recon"], "width": 1.5})
    )
    if variational:
        x, y = downsample(curves.step, curves.total)
        if len(curves):
            # At β = 1 the total is only the KL above the reconstruction, and its line can lie on the
            # reconstruction's: the shaded band between them (filled to the previous trace) shows the gap.
            traces.append(
                go.Scatter(
                    x=x,
                    y=y,
                    name=f"{weighted} (total − reconstruction)",
                    mode="lines",
                    fill="tonexty",
                    fillcolor=TOTAL_BAND,
                    line={"width": 0},
                    hoverinfo="skip",
                )
            )
        traces.append(
            go.Scatter(
                x=x,
                y=y,
                name="total",
                mode="lines",
                line={"color": COLOURS["total"], "width": 2},
                hovertemplate=f"total = reconstruction + {weighted}: %{{y:,.1f}}<extra></extra>",
            )
        )
        x, y = downsample(curves.step, curves.kl)
        traces.append(
            go.Scatter(
                x=x, y=y, name="KL", mode="lines", xaxis="x2", yaxis="y2", line={"color": COLOURS["kl"], "width": 1.5}
            )
        )
    if epoch_metrics:
        steps = [m["step"] for m in epoch_metrics]
        test_key, test_name = ("test_neg_elbo", "test −ELBO") if variational else ("test_recon", "test reconstruction")
        # The bound weighs the KL by 1, whatever β the run trains with: its sum is said on hover.
        sums = "reconstruction + KL" if variational else "reconstruction"
        traces.append(
            go.Scatter(
                x=steps,
                y=[m.get(test_key) for m in epoch_metrics],
                name=test_name,
                mode="markers+lines",
                line={"color": COLOURS["test"], "dash": "dot"},
                marker={"size": 7},
                hovertemplate=f"{test_name} = {sums}: %{{y:,.1f}}<extra></extra>",
            )
        )
        if variational:
            traces.append(
                go.Scatter(
                    x=steps,
                    y=[m.get("test_kl") for m in epoch_metrics],
                    name="test KL",
                    mode="markers",
                    xaxis="x2",
                    yaxis="y2",
                    marker={"color": COLOURS["test_kl"], "size": 7, "symbol": "diamond"},
                )
            )
    left_title = "Total and reconstruction (nats)" if variational else "Reconstruction error (no KL: an autoencoder)"
    annotations = [_panel_title(left_title, 0.23 if variational else 0.5)]
    if variational:
        annotations.append(_panel_title("KL (nats)", 0.77))
    changes = [e for e in events if e["name"] in ("lr", "beta")]
    shapes = [
        {
            "type": "line",
            "x0": e["step"],
            "x1": e["step"],
            "xref": xref,
            "y0": 0,
            "y1": 1,
            "yref": yref,
            "line": {"dash": "dot", "color": "#999", "width": 1},
        }
        for e in changes
        for xref, yref in (("x", "y domain"), ("x2", "y2 domain"))[: 2 if variational else 1]
    ]
    annotations += _event_labels(changes, float(curves.step[-1]) if len(curves) else 1.0)
    axis_type = {"type": "log", **LOG_TICKS} if log_y else {"type": "linear"}
    left_range = robust_range([curves.total, curves.recon] if variational else [curves.recon], log_y)
    figure = go.Figure(traces)
    legend_title = total_legend_title(curves.beta, free_bits) if variational and len(curves) else None
    figure.update_layout(
        height=380,
        margin={"l": 10, "r": 10, "t": 70, "b": 10},
        # "normal": a filled trace would otherwise turn the legend's order around.
        legend={"orientation": "h", "y": -0.25, "title": {"text": legend_title or ""}, "traceorder": "normal"},
        # Plotly keeps the reader's zoom and hidden traces across updates of the same revision: the
        # Train page gives the run's id, so another run opens unzoomed.
        uirevision=revision,
        shapes=shapes,
        annotations=annotations,
        xaxis={"domain": [0, 0.46] if variational else [0, 1], "title": {"text": "step"}},
        yaxis={"anchor": "x", **axis_type, "range": left_range, "autorange": left_range is None},
        xaxis2={"domain": [0.54, 1], "title": {"text": "step"}, "anchor": "y2", "visible": variational},
        yaxis2={
            "anchor": "x2",
            **axis_type,
            "visible": variational,
            "range": (kl_range := robust_range([curves.kl], log_y)),
            "autorange": kl_range is None,
        },
    )
    return figure


def kl_per_dim_figure(kl_per_dim: np.ndarray, free_bits: float = 0.0) -> go.Figure:
    """One bar per latent dimension, grey where it has collapsed to the prior: by the one definition
    of an active dimension (active_units.py), so the bars and every count of active units agree."""
    values = np.asarray(kl_per_dim, dtype=float)
    collapsed = ~active_dimensions(values)
    figure = go.Figure(
        go.Bar(
            x=[f"z{i}" for i in range(len(values))],
            y=values,
            marker={"color": ["#bbbbbb" if c else COLOURS["kl"] for c in collapsed]},
            hovertemplate="%{x}: %{y:.3f} nats<extra></extra>",
            name="KL per dimension",
        )
    )
    if free_bits > 0:
        figure.add_hline(y=free_bits, line={"dash": "dash", "color": "#555"}, annotation_text="free bits")
    figure.update_layout(
        height=260,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis_title="nats",
        title={"text": f"KL per dimension ({int(collapsed.sum())} collapsed, grey)", "font": {"size": 13}},
        uirevision="kl",
    )
    return figure


def latent_scatter(
    points: np.ndarray,
    labels: np.ndarray | None,
    class_names: Sequence[str] | None,
    title: str,
    axis_names: tuple[str, str] = ("component 1", "component 2"),
    ranges: tuple[list[float], list[float]] | None = None,
) -> go.Figure:
    """WebGL scatter of 2D points, one trace per class; each point's customdata is its row index,
    so a click comes back as the index of the image. `ranges` fixes the axes (x, y), so a scatter
    that follows a training run keeps its frame from one epoch to the next."""
    figure = go.Figure()
    index = np.arange(len(points))
    groups = [(None, index)] if labels is None else [(c, index[labels == c]) for c in np.unique(labels)]
    for i, (label, rows) in enumerate(groups):
        name = (
            "images"
            if label is None
            else (class_names[label] if class_names and label < len(class_names) else str(label))
        )
        name = html.escape(name)  # Plotly renders tags such as <a href> in names: one from a file stays text
        figure.add_trace(
            go.Scattergl(
                x=points[rows, 0].astype(np.float32),
                y=points[rows, 1].astype(np.float32),
                mode="markers",
                name=name,
                customdata=rows,
                marker={"size": 6, "opacity": 0.9, "color": PALETTE[i % len(PALETTE)]},
                # After a click Plotly fades every other point; keep them readable, the clicked one stands out.
                unselected={"marker": {"opacity": 0.6}},
                selected={"marker": {"size": 12, "opacity": 1.0}},
                hovertemplate="%{fullData.name}<br>image %{customdata}<extra></extra>",
            )
        )
    figure.update_layout(
        height=560,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        title=title,
        xaxis_title=axis_names[0],
        yaxis_title=axis_names[1],
        legend={"itemsizing": "constant"},
        dragmode="pan",
        uirevision=title if ranges is None else "steady",
    )
    if ranges is not None:
        figure.update_xaxes(range=ranges[0], autorange=False)
        figure.update_yaxes(range=ranges[1], autorange=False)
    figure.update_yaxes(scaleanchor="x", scaleratio=1)
    return figure


PRIOR_CIRCLES = ((1, "39%", "solid"), (2, "86%", "dash"))  # radius, share of N(0, I)'s mass in 2-D, line


def add_prior_circles(figure: go.Figure) -> go.Figure:
    """N(0, I)'s 1σ and 2σ circles (39% and 86% of its mass in two dimensions), for a scatter whose
    axes are two orthonormal directions of the latent space, so the codes can be judged against them.
    They are named in the legend, not on the plot: a label by a circle sits on the codes it circles."""
    for radius, share, dash in PRIOR_CIRCLES:
        line = {"color": "#555", "width": 1.5, "dash": dash}
        figure.add_shape(type="circle", x0=-radius, y0=-radius, x1=radius, y1=radius, layer="above", line=line)
        # A trace with no points: only its legend entry shows, with the circle's line.
        figure.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="lines",
                line=line,
                hoverinfo="skip",
                name=f"{radius}σ of N(0, I) ({share})",
                legendgroup="prior",
            )
        )
    return figure


def kl_by_epoch_figure(kl_by_epoch: dict[str, list[float]]) -> go.Figure:
    """Each latent dimension's test KL after each epoch, one named line per dimension (every one in
    the legend), grey where the last epoch leaves it collapsed, by the one definition of active."""
    names = list(kl_by_epoch)
    active = active_dimensions([kl_by_epoch[name][-1] for name in names]) if names else []
    figure = go.Figure()
    colours = iter(PALETTE * (len(names) // len(PALETTE) + 1))
    for name, used in zip(names, active):
        values = kl_by_epoch[name]
        figure.add_trace(
            go.Scatter(
                x=list(range(1, len(values) + 1)),
                y=values,
                mode="lines+markers",
                name=name if used else f"{name} (collapsed)",
                line={"color": next(colours) if used else "#bbbbbb", "width": 2 if used else 1},
                marker={"size": 5},
                hovertemplate="%{fullData.name}, epoch %{x}: %{y:.3f} nats<extra></extra>",
            )
        )
    figure.update_layout(
        height=300,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis_title="epoch",
        yaxis_title="nats",
        xaxis={"dtick": 1},
        legend={"orientation": "h", "y": -0.3},
    )
    return figure


def covering_ranges(
    points: np.ndarray, previous: tuple[list[float], list[float]] | None = None, margin: float = 0.05
) -> tuple[list[float], list[float]]:
    """Axis ranges holding every point (with a margin), and never smaller than `previous`: axes that
    only grow do not jump as a followed run's projection changes from epoch to epoch."""
    finite = points[np.all(np.isfinite(points), axis=1)] if len(points) else points
    if not len(finite):
        return previous or ([-1.0, 1.0], [-1.0, 1.0])
    ranges = []
    for axis in range(2):
        low, high = float(finite[:, axis].min()), float(finite[:, axis].max())
        pad = max(high - low, 1e-6) * margin
        low, high = low - pad, high + pad
        if previous is not None:
            low, high = min(low, previous[axis][0]), max(high, previous[axis][1])
        ranges.append([low, high])
    return ranges[0], ranges[1]


class ComparedRun(NamedTuple):
    """One run of a comparison: its name, per-step curves, test metrics per epoch, steps per epoch
    (None when unknown) and events (its live lr/β changes, where its history keeps them)."""

    name: str
    curves: StepCurves
    epoch_metrics: Sequence[dict]
    steps_per_epoch: int | None = None
    events: Sequence[dict] = ()


CHANGE_LABELS = {"beta": "β", "lr": "lr"}


def live_change_marks(curves: StepCurves, values: np.ndarray, events: Sequence[dict]) -> tuple[list, list, list]:
    """(steps, y on the run's curve, labels) of each step where its lr or β was changed while it
    trained, both names in one label when they changed together: "β→4, lr→0.005"."""
    by_step: dict[int, list[str]] = {}
    for event in events:
        if event["name"] in CHANGE_LABELS:
            by_step.setdefault(int(event["step"]), []).append(f"{CHANGE_LABELS[event['name']]}→{event['value']:g}")
    steps = sorted(by_step)
    if not len(curves):
        return [], [], []
    # Where the curve is at that step: its last point at or before it (the first point before any).
    at = np.clip(np.searchsorted(curves.step, steps, side="right") - 1, 0, len(curves) - 1)
    return steps, [float(values[i]) for i in at], [", ".join(by_step[step]) for step in steps]


def compare_figure(runs: Sequence[ComparedRun], metric: str) -> go.Figure:
    """Several runs' curves of one metric on one chart (per step), with their test -ELBO markers and
    a triangle where a run's lr or β was changed while it trained."""
    figure = go.Figure()
    for i, run in enumerate(runs):
        colour = PALETTE[i % len(PALETTE)]
        name = html.escape(run.name)
        x, y = downsample(run.curves.step, getattr(run.curves, metric))
        which = {"run": i}  # which run a trace shows, for curve_controls.apply_curve_options' clocks
        # The run's own name comes from a file: the hover refers to it, never puts it in the template.
        hover = (
            f"%{{fullData.name}}: total = reconstruction + {weighted_kl_name(run.curves.beta)}, "
            "%{y:,.1f}<extra></extra>"
            if metric == "total"
            else None
        )
        figure.add_trace(
            go.Scatter(x=x, y=y, name=name, mode="lines", line={"color": colour}, meta=which, hovertemplate=hover)
        )
        if metric == "total" and run.epoch_metrics:
            figure.add_trace(
                go.Scatter(
                    x=[m["step"] for m in run.epoch_metrics],
                    y=[m["test_neg_elbo"] for m in run.epoch_metrics],
                    name=f"{name} test −ELBO",
                    mode="markers",
                    meta=which,
                    marker={"color": colour, "symbol": "diamond", "size": 8},
                    hovertemplate="%{fullData.name} = reconstruction + KL: %{y:,.1f}<extra></extra>",
                )
            )
        steps, at, labels = live_change_marks(run.curves, getattr(run.curves, metric), run.events)
        if steps:
            figure.add_trace(
                go.Scatter(
                    x=steps,
                    y=at,
                    text=labels,
                    name=f"{name}: changed while training",
                    mode="markers+text",
                    textposition="top center",
                    meta=which,
                    textfont={"size": 10, "color": colour},
                    hovertemplate="step %{x}: %{text}<extra></extra>",
                    marker={
                        "color": colour,
                        "symbol": "triangle-down",
                        "size": 11,
                        "line": {"color": "white", "width": 1},
                    },
                )
            )
    weighted = metric == "total" and any(weighted_kl_name(run.curves.beta) != "KL" for run in runs if len(run.curves))
    # Why a run trained with β ≠ 1 has its total away from its test −ELBO markers, said where the names are.
    title = "total = reconstruction + β × KL (each run's β); test −ELBO = reconstruction + KL: " if weighted else ""
    figure.update_layout(
        height=380,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title="step",
        yaxis_title="nats",
        legend={"orientation": "h", "y": -0.25, "title": {"text": title}},
    )
    return figure
