"""A picture grid as a PNG file: the small 'PNG' button under every grid the pages draw."""

from __future__ import annotations

import hashlib
import io
import re

import numpy as np
import streamlit as st
from streamlit.errors import StreamlitDuplicateElementKey


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
        st.download_button(
            "PNG",
            data=lambda: png_bytes(picture),
            file_name=f"{slug}.png",
            mime="image/png",
            on_click="ignore",
            key=f"png_{slug}_{digest}",
            icon=":material/download:",
            type="tertiary",
            help="Download this picture grid as a PNG file",
        )
    except StreamlitDuplicateElementKey:
        pass  # the very same grid is on the page twice: its first button downloads it
