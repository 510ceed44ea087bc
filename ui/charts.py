"""Plotly figures built from snapshots and histories. Pure functions: data in, figure out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vae_core.history import StepCurves

MAX_CURVE_POINTS = 2000  # per trace; longer curves are averaged into buckets so the chart stays light
COLOURS = {"total": "#636efa", "recon": "#00a37a", "kl": "#ef553b", "test": "#222222"}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]


def downsample(steps: np.ndarray, values: np.ndarray, limit: int = MAX_CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Bucket means, so a 100k-step curve costs the browser 2k points and keeps its shape."""
    if len(steps) <= limit:
        return steps, values
    edges = np.linspace(0, len(steps), limit + 1).astype(int)
    return (np.array([steps[a:b].mean() for a, b in zip(edges[:-1], edges[1:])]),
            np.add.reduceat(values.astype(np.float64), edges[:-1]) / np.diff(edges))


def loss_figure(curves: StepCurves, epoch_metrics: Sequence[dict], events: Sequence[dict],
                steps_per_epoch: int | None = None) -> go.Figure:
    """Loss per step: total and reconstruction on the left axis, KL on its own axis (its scale is
    often 10x smaller), the test -ELBO per epoch as markers, and dotted lines where lr or beta changed."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Total and reconstruction (nats)", "KL (nats)"),
                           horizontal_spacing=0.08)
    for name, key, col in (("total", "total", 1), ("reconstruction", "recon", 1), ("KL", "kl", 2)):
        x, y = downsample(curves.step, getattr(curves, key))
        figure.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines", line={"color": COLOURS[key], "width": 1.5}),
                         row=1, col=col)
    if epoch_metrics:
        figure.add_trace(go.Scatter(
            x=[m["step"] for m in epoch_metrics], y=[m["test_neg_elbo"] for m in epoch_metrics],
            name="test −ELBO", mode="markers+lines", line={"color": COLOURS["test"], "dash": "dot"},
            marker={"size": 7}), row=1, col=1)
        figure.add_trace(go.Scatter(
            x=[m["step"] for m in epoch_metrics], y=[m["test_kl"] for m in epoch_metrics],
            name="test KL", mode="markers", marker={"color": COLOURS["kl"], "size": 7, "symbol": "diamond"}),
            row=1, col=2)
    for event in events:
        if event["name"] in ("lr", "beta"):
            for col in (1, 2):
                figure.add_vline(x=event["step"], line={"dash": "dot", "color": "#999", "width": 1}, row=1, col=col)
            figure.add_annotation(x=event["step"], y=1.0, yref="paper", xref="x", showarrow=False,
                                  text=f"{event['name']}={event['value']:g}", font={"size": 10}, yanchor="bottom")
    figure.update_xaxes(title_text="step")
    figure.update_layout(height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                         legend={"orientation": "h", "y": -0.25}, uirevision="loss")
    return figure


def kl_per_dim_figure(kl_per_dim: np.ndarray, free_bits: float = 0.0) -> go.Figure:
    """One bar per latent dimension; a dimension near 0 nats has collapsed to the prior."""
    values = np.asarray(kl_per_dim, dtype=float)
    collapsed = values < 0.05
    figure = go.Figure(go.Bar(
        x=[f"z{i}" for i in range(len(values))], y=values,
        marker={"color": ["#bbbbbb" if c else COLOURS["kl"] for c in collapsed]},
        hovertemplate="%{x}: %{y:.3f} nats<extra></extra>", name="KL per dimension"))
    if free_bits > 0:
        figure.add_hline(y=free_bits, line={"dash": "dash", "color": "#555"}, annotation_text="free bits")
    figure.update_layout(height=260, margin={"l": 10, "r": 10, "t": 30, "b": 10}, yaxis_title="nats",
                         title={"text": f"KL per dimension ({int(collapsed.sum())} collapsed, grey)",
                                "font": {"size": 13}}, uirevision="kl")
    return figure


def latent_scatter(points: np.ndarray, labels: np.ndarray | None, class_names: Sequence[str] | None,
                   title: str, axis_names: tuple[str, str] = ("component 1", "component 2")) -> go.Figure:
    """WebGL scatter of 2D points, one trace per class; each point's customdata is its row index,
    so a click comes back as the index of the image."""
    figure = go.Figure()
    index = np.arange(len(points))
    groups = [(None, index)] if labels is None else [(c, index[labels == c]) for c in np.unique(labels)]
    for i, (label, rows) in enumerate(groups):
        name = "images" if label is None else (class_names[label] if class_names and label < len(class_names)
                                                else str(label))
        figure.add_trace(go.Scattergl(
            x=points[rows, 0].astype(np.float32), y=points[rows, 1].astype(np.float32), mode="markers", name=name,
            customdata=rows, marker={"size": 4, "opacity": 0.75, "color": PALETTE[i % len(PALETTE)]},
            hovertemplate=f"{name}<br>image %{{customdata}}<extra></extra>"))
    figure.update_layout(height=560, margin={"l": 10, "r": 10, "t": 40, "b": 10}, title=title,
                         xaxis_title=axis_names[0], yaxis_title=axis_names[1], legend={"itemsizing": "constant"},
                         dragmode="pan", uirevision=title)
    figure.update_yaxes(scaleanchor="x", scaleratio=1)
    return figure


def compare_figure(runs: Sequence[tuple[str, StepCurves, Sequence[dict]]], metric: str) -> go.Figure:
    """Several runs' curves of one metric on one chart (per step), with their test -ELBO markers."""
    figure = go.Figure()
    for i, (name, curves, epochs) in enumerate(runs):
        colour = PALETTE[i % len(PALETTE)]
        x, y = downsample(curves.step, getattr(curves, metric))
        figure.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines", line={"color": colour}))
        if metric == "total" and epochs:
            figure.add_trace(go.Scatter(x=[m["step"] for m in epochs], y=[m["test_neg_elbo"] for m in epochs],
                                        name=f"{name} test −ELBO", mode="markers",
                                        marker={"color": colour, "symbol": "diamond", "size": 8}))
    figure.update_layout(height=380, margin={"l": 10, "r": 10, "t": 30, "b": 10}, xaxis_title="step",
                         yaxis_title="nats", legend={"orientation": "h", "y": -0.25})
    return figure
