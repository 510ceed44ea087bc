"""The latent scatter of one or more runs, played over their saved epochs in one fixed frame.

N(0, I)'s 1σ and 2σ circles are drawn for reference; the layout itself is vae_core.latent_trajectory's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import streamlit as st

from vae_core.latent_trajectory import Trajectory, common_epochs

from . import charts
from .widgets import counted, epoch_player

PRIOR_REACH = 2.2  # the frame always holds the 2σ circle, however tight a VAE's codes are


@dataclass(frozen=True)
class PlayedRun:
    title: str  # our own words (a label such as "AE"): Plotly would render tags in a name from a file
    trajectory: Trajectory
    labels: np.ndarray | None  # the tracked test images' labels, for the colours
    class_names: Sequence[str] | None


def shared_frame(runs: Sequence[PlayedRun]) -> tuple[list[float], list[float]]:
    """Axes holding every epoch of every run and the prior's 2σ circle, so nothing jumps as it plays."""
    reach = np.array([[-PRIOR_REACH, -PRIOR_REACH], [PRIOR_REACH, PRIOR_REACH]], np.float32)
    return charts.covering_ranges(np.concatenate([reach, *(run.trajectory.points.reshape(-1, 2) for run in runs)]))


def play(runs: Sequence[PlayedRun], key: str, height: int = 480) -> None:
    """One player for all `runs`, side by side, stepping through the epochs they share."""
    epochs = common_epochs([run.trajectory for run in runs])
    if not epochs:
        st.info("These runs have no saved epoch in common to play.")
        return
    frame = shared_frame(runs)

    def draw(epoch: int) -> None:
        for index, (column, run) in enumerate(zip(st.columns(len(runs)), runs)):
            points = run.trajectory.at(epoch)
            labels = run.labels[: len(points)] if run.labels is not None else None
            figure = charts.latent_scatter(
                points, labels, run.class_names, f"{run.title} · epoch {epoch}", run.trajectory.axis_names, frame
            )
            figure.update_layout(height=height, showlegend=len(runs) == 1)
            column.plotly_chart(charts.add_prior_circles(figure), key=f"{key}_scatter_{index}")

    count = len(runs[0].trajectory.points[0])
    epoch_player(
        epochs,
        key,
        draw,
        f"{counted(len(epochs), 'saved epoch')} · the means of the same {count:,} test images "
        "each epoch, in one frame; circles: N(0, I)'s 1σ (solid, 39% of its mass) "
        "and 2σ (dashed, 86%).",
    )
