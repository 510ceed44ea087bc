"""Small view helpers shared by the pages."""

from __future__ import annotations

import numpy as np
import streamlit as st

from vae_core.generate import grid


def image_grid(images: np.ndarray, columns: int, caption: str | None = None, cell_px: int = 60) -> None:
    """One st.image for a whole grid of uint8 N x C x H x W images (far lighter than N images),
    each image blown up to about `cell_px` pixels so 8x8 digits and 28x28 MNIST look alike."""
    if images is None or len(images) == 0:
        return
    scale = max(1, round(cell_px / images.shape[2]))
    st.image(grid(images, columns, scale=scale), caption=caption)


def duration(seconds: float | None) -> str:
    if seconds is None or not np.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def nats(value: float | None) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:,.2f}"


STATUS_ICONS = {"starting": ":material/hourglass_top:", "running": ":material/play_circle:",
                "paused": ":material/pause_circle:", "finished": ":material/check_circle:",
                "stopped": ":material/stop_circle:", "failed": ":material/error:"}
