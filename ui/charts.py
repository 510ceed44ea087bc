"""Plotly figures built from snapshots and histories. Pure functions: data in, figure out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

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
    counts = np.diff(edges)
    return (np.add.reduceat(steps.astype(np.float64), edges[:-1]) / counts,
            np.add.reduceat(values.astype(np.float64), edges[:-1]) / counts)


def loss_figure(curves: StepCurves, epoch_metrics: Sequence[dict], events: Sequence[dict]) -> go.Figure:
    """Loss per step: total and reconstruction on the left panel, KL on its own (its scale is often
    10x smaller), the test -ELBO per epoch as markers, and dotted lines where lr or beta changed.

    The two panels are laid out by hand rather than with make_subplots, which costs ~0.1 s per
    call: this figure is rebuilt every second while a run trains."""
    traces = []
    for name, key, axes in (("total", "total", ("x", "y")), ("reconstruction", "recon", ("x", "y")),
                            ("KL", "kl", ("x2", "y2"))):
        x, y = downsample(curves.step, getattr(curves, key))
        traces.append(go.Scatter(x=x, y=y, name=name, mode="lines", xaxis=axes[0], yaxis=axes[1],
                                 line={"color": COLOURS[key], "width": 1.5}))
    if epoch_metrics:
        steps = [m["step"] for m in epoch_metrics]
        traces.append(go.Scatter(x=steps, y=[m["test_neg_elbo"] for m in epoch_metrics], name="test −ELBO",
                                 mode="markers+lines", line={"color": COLOURS["test"], "dash": "dot"},
                                 marker={"size": 7}))
        traces.append(go.Scatter(x=steps, y=[m["test_kl"] for m in epoch_metrics], name="test KL", mode="markers",
                                 xaxis="x2", yaxis="y2",
                                 marker={"color": COLOURS["kl"], "size": 7, "symbol": "diamond"}))
    shapes, annotations = [], [
        {"text": "Total and reconstruction (nats)", "x": 0.23, "y": 1.0, "xref": "paper", "yref": "paper",
         "showarrow": False, "yanchor": "bottom", "font": {"size": 13}},
        {"text": "KL (nats)", "x": 0.77, "y": 1.0, "xref": "paper", "yref": "paper", "showarrow": False,
         "yanchor": "bottom", "font": {"size": 13}},
    ]
    for event in events:
        if event["name"] not in ("lr", "beta"):
            continue
        for xref, yref in (("x", "y domain"), ("x2", "y2 domain")):
            shapes.append({"type": "line", "x0": event["step"], "x1": event["step"], "xref": xref, "y0": 0, "y1": 1,
                           "yref": yref, "line": {"dash": "dot", "color": "#999", "width": 1}})
        annotations.append({"text": f"{event['name']}={event['value']:g}", "x": event["step"], "xref": "x",
                            "y": 1.0, "yref": "y domain", "showarrow": False, "yanchor": "bottom",
                            "font": {"size": 10}})
    figure = go.Figure(traces)
    figure.update_layout(
        height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.25},
        uirevision="loss", shapes=shapes, annotations=annotations,
        xaxis={"domain": [0, 0.46], "title": {"text": "step"}}, yaxis={"anchor": "x"},
        xaxis2={"domain": [0.54, 1], "title": {"text": "step"}, "anchor": "y2"}, yaxis2={"anchor": "x2"})
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
