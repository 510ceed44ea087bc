"""Small Streamlit helpers the pages share: escaped text, errors, layout, pictures and number formats."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence

import numpy as np
import streamlit as st

from .picture_download import png_download

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


def wrapping_columns(key: str, spec: Sequence[float], *, flexible: int = 0, vertical_alignment: str = "bottom"):
    """st.columns(spec) that wrap onto a second line in a narrow window instead of cutting their
    contents ("L…", a segmented control's last choices hidden): every column keeps the width its
    contents need but the `flexible` one (a slider, say), which gives way down to 8rem."""
    row = f".st-key-{key} [data-testid='stHorizontalBlock']"
    flexible_column = f"{row} > [data-testid='stColumn']:nth-child({flexible + 1})"
    st.markdown(
        f"<style>{row} {{ flex-wrap: wrap; }} {row} > [data-testid='stColumn'] {{ min-width: max-content; }} "
        f"{flexible_column} {{ min-width: 8rem; }}</style>",
        unsafe_allow_html=True,
    )
    with st.container(key=key):
        return st.columns(spec, vertical_alignment=vertical_alignment)


def wrapping_tabs(key: str, names: Sequence[str]) -> dict:
    """st.tabs(names) as a dict name -> tab, whose labels wrap onto a second line in a narrow window
    rather than scroll out of sight (at 900 px, "Per class" and "Timeline" were off the bar). The
    sliding underline cannot follow a wrapped label, so there the chosen label is underlined itself."""
    bar = f".st-key-{key} [role='tablist']"
    st.markdown(
        f"<style>{bar} {{ flex-wrap: wrap; overflow: visible; }} "
        f"{bar} [data-baseweb='tab-highlight'], {bar} [data-baseweb='tab-border'] {{ display: none; }} "
        f"{bar} [role='tab'][aria-selected='true'] {{ box-shadow: inset 0 -2px 0 currentColor; }}</style>",
        unsafe_allow_html=True,
    )
    with st.container(key=key):
        return dict(zip(names, st.tabs(list(names)), strict=True))


def scroll_into_view(key: str) -> None:
    """Bring the element keyed `key` (st.container(key=...)) to the top of the window: after a press
    far down a long form, what the press led to (the new run, its error) would be off-screen."""
    # scroll-margin: below Streamlit's header bar, which would cover the element's first line. The code
    # is a function's, not the page's: a second `const target` at the top level of a page's scripts is
    # an error, so a second scroll (to an error after the one at Start) never happened. It differs each
    # time (the time it was sent), or the same HTML at the same place would not be run again.
    st.html(
        f"<script>/* {time.time_ns()} */ (() => {{ const target = document.querySelector('.st-key-{key}'); "
        f"if (target) {{ target.style.scrollMarginTop = '4rem'; target.scrollIntoView({{block: 'start'}}); }} "
        f"}})();</script>",
        unsafe_allow_javascript=True,
    )


def class_name(label: int, class_names: Sequence[str] | None) -> str:
    return class_names[label] if class_names and label < len(class_names) else str(label)


def class_picker(num_classes: int, class_names: Sequence[str] | None) -> int:
    """The class a conditional model decodes, for every picture of the page (option labels are
    plain text, so names from a user's files are shown as they are)."""
    return st.selectbox(
        "Class to decode",
        range(num_classes),
        format_func=lambda i: class_name(i, class_names),
        key="decode_class",
        help="A conditional VAE decodes p(x | z, y): every picture on this page uses this "
        "class, so what changes across a grid is z alone.",
    )


def image_grid(images: np.ndarray, columns: int, caption: str | None = None, cell_px: int = 60) -> None:
    """One st.image for a whole grid of uint8 N x C x H x W images (far lighter than N images),
    each image blown up to about `cell_px` pixels so 8x8 digits and 28x28 MNIST look alike."""
    if images is None or len(images) == 0:
        return
    from vae_core.generate import grid

    scale = max(1, round(cell_px / images.shape[2]))
    picture = grid(images, columns, scale=scale)
    st.image(picture, caption=caption)
    png_download(picture, caption or "images")


def epoch_player(epochs: Sequence[int], key: str, draw: Callable[[int], None], caption: str = "") -> None:
    """A slider over the saved `epochs` and a Play/Pause button that steps it, about one epoch every
    0.7 s, calling `draw(epoch)` for the epoch shown. Only the player's fragment re-runs while it
    plays; its state lives in session state under `key`: `{key}_epoch`, `{key}_playing` and the
    button `{key}_play`, so two players on one page keep apart."""
    epochs = list(epochs)
    epoch_key, playing_key, hold_key = f"{key}_epoch", f"{key}_playing", f"{key}_hold"
    st.session_state.setdefault(playing_key, False)
    if st.session_state.get(epoch_key) not in epochs:
        st.session_state[epoch_key] = epochs[-1]

    def player() -> None:
        if st.session_state.pop(hold_key, False):
            pass  # the run that started playing shows the first epoch; the timer's next run moves on
        elif st.session_state[playing_key]:
            later = [e for e in epochs if e > st.session_state[epoch_key]]
            if later:
                st.session_state[epoch_key] = later[0]
            else:
                st.session_state[playing_key] = False
                st.rerun()  # the whole page, so the timer goes and the button says Play again
        draw(st.select_slider("Epoch", epochs, key=epoch_key))

    def play_or_pause() -> None:
        # A callback runs before the page, so the button below is drawn with its new label at once.
        st.session_state[playing_key] = not st.session_state[playing_key]
        if st.session_state[playing_key] and st.session_state.get(epoch_key) == epochs[-1]:
            st.session_state[epoch_key] = epochs[0]
        st.session_state[hold_key] = st.session_state[playing_key]

    c1, c2 = wrapping_columns(f"{key}_player_row", [1, 6], flexible=1, vertical_alignment="top")
    playing = st.session_state[playing_key]
    # Material icons, not the ⏸/▶ characters: Debian's Chromium has no glyph for ⏸ and drew a blank box.
    c1.button(
        "Pause" if playing else "Play",
        icon=":material/pause:" if playing else ":material/play_arrow:",
        key=f"{key}_play",
        on_click=play_or_pause,
        width="stretch",
    )
    if caption:
        c2.caption(caption)
    st.fragment(player, run_every=0.7 if st.session_state[playing_key] else None)()


def counted(count: int, noun: str) -> str:
    """ "1 saved epoch", "3 saved epochs": a count and its noun, agreeing."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def duration(seconds: float | None) -> str:
    if seconds is None or not np.isfinite(seconds):
        return "–"
    seconds = round(seconds)
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


STATUS_ICONS = {
    "queued": ":material/schedule:",
    "cancelled": ":material/cancel:",
    "starting": ":material/hourglass_top:",
    "running": ":material/play_circle:",
    "paused": ":material/pause_circle:",
    "finished": ":material/check_circle:",
    "stopped": ":material/stop_circle:",
    "failed": ":material/error:",
}
