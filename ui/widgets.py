"""Small view helpers shared by the pages."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import streamlit as st

# Every ASCII punctuation character that Markdown, GitHub's autolinks, Streamlit's :directives:,
# emoji codes and $LaTeX$ give a meaning to; CommonMark lets each be escaped with a backslash.
_MARKDOWN_SYNTAX = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:@&=\"'/])")


def plain(text: object) -> str:
    """Text from a URL, a file or an error about a file, escaped so that Streamlit's Markdown shows
    it as it is: a crafted '[Session expired](https://…)' or '![](https://…)' stays text, never a
    link or an image fetched from elsewhere."""
    return _MARKDOWN_SYNTAX.sub(r"\\\1", str(text))


def show_error(error: object, container=st) -> None:
    """An error a user can act on, as plain text (its message may quote a file name or a cell)."""
    container.error(plain(error), icon=":material/warning:")


def class_name(label: int, class_names: Sequence[str] | None) -> str:
    return class_names[label] if class_names and label < len(class_names) else str(label)


def class_picker(num_classes: int, class_names: Sequence[str] | None) -> int:
    """The class a conditional model decodes, for every picture of the page (option labels are
    plain text, so names from a user's files are shown as they are)."""
    return st.selectbox("Class to decode", range(num_classes), format_func=lambda i: class_name(i, class_names),
                        key="decode_class",
                        help="A conditional VAE decodes p(x | z, y): every picture on this page uses this "
                             "class, so what changes across a grid is z alone.")


def image_grid(images: np.ndarray, columns: int, caption: str | None = None, cell_px: int = 60) -> None:
    """One st.image for a whole grid of uint8 N x C x H x W images (far lighter than N images),
    each image blown up to about `cell_px` pixels so 8x8 digits and 28x28 MNIST look alike."""
    if images is None or len(images) == 0:
        return
    from vae_core.generate import grid

    scale = max(1, round(cell_px / images.shape[2]))
    picture = grid(images, columns, scale=scale)
    st.image(picture, caption=caption)
    from .curve_controls import png_download  # late: it imports plotly, which not every page needs

    png_download(picture, caption or "images")


def duration(seconds: float | None) -> str:
    if seconds is None or not np.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def nats(value: float | None) -> str:
    """A loss for a metric tile, at most 8 characters wide: 153.82, 9,999.99, 816.9k, 12.3M, 4.1e+12
    (a diverged run's loss must stay readable, not be cut off)."""
    if value is None or not np.isfinite(value):
        return "–"
    size = abs(value)
    if size < 1e4:
        return f"{value:,.2f}"
    if size < 1e6:
        return f"{value / 1e3:.1f}k"
    if size < 1e9:
        return f"{value / 1e6:.1f}M"
    return f"{value:.1e}"


STATUS_ICONS = {"queued": ":material/schedule:", "cancelled": ":material/cancel:", "starting": ":material/hourglass_top:", "running": ":material/play_circle:",
                "paused": ":material/pause_circle:", "finished": ":material/check_circle:",
                "stopped": ":material/stop_circle:", "failed": ":material/error:"}
