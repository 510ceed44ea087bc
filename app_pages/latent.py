"""Latent space: the test images' latent means in 2D, coloured by label; click one to decode it."""

from __future__ import annotations

import numpy as np
import streamlit as st

from ui import charts, session
from ui.data_access import run_dataset, test_latents
from ui.latent_player import PlayedRun, play
from ui.runs import pick_run
from ui.widgets import class_name, image_grid, plain, show_error, wrapping_columns
from vae_core.errors import VAEStudioError
from vae_core.generate import reconstruct
from vae_core.latent_track import LatentTracks
from vae_core.latent_trajectory import trajectory
from vae_core.projection import METHODS
from vae_core.trainer import to_uint8

METHOD_LABELS = {"pca": "PCA (instant)", "tsne": "t-SNE", "umap": "UMAP"}
AXIS_NAMES = {
    "pca": ("PCA 1 (latent units)", "PCA 2 (latent units)"),
    "tsne": ("t-SNE 1 (no units)", "t-SNE 2 (no units)"),
    "umap": ("UMAP 1 (no units)", "UMAP 2 (no units)"),
}
_NO_UNITS = (
    " Axes without units: {} keeps neighbourhoods, not distances, so each layout is centred and scaled "
    "to a spread of 1 (root mean square distance from the centre)."
)
AXES_MEANING = {
    "pca": " Axes: the codes' two principal directions, centred on their mean, in the latent's own "
    "units: the spread shown is the codes' own.",
    "tsne": _NO_UNITS.format("t-SNE"),
    "umap": _NO_UNITS.format("UMAP"),
}

st.title("Latent space")
st.caption(
    "Each point is one test image's posterior mean E[z|x]. A VAE's KL term pulls these towards "
    "N(0, I), so the space is filled without gaps and any point decodes to something plausible; "
    "a plain autoencoder's (model `ae`) is scattered and irregular."
)


@st.cache_resource
def tracks() -> LatentTracks:
    """Server-wide: a projection computed once serves every session that asks for the same thing. One
    object, bounded inside by bytes (config.Limits.projection_cache_bytes), not by a count of tracks."""
    return LatentTracks()


view = pick_run()
if view is None:
    st.stop()
try:
    data = run_dataset(view)
except VAEStudioError as error:
    show_error(f"The run's data cannot be loaded: {error}")
    st.stop()

test_count = int(data.test_x.shape[0])
point_choices = sorted(
    {n for n in (100, 200, 500, 1_000, 2_000, 5_000, 10_000) if n < test_count} | {min(test_count, 10_000)}
)
flat_latent = view.config.latent_dim == 2
c1, c2, c3 = wrapping_columns("latent_controls", [2, 2, 1], flexible=1)  # at 900 px "UMAP" was cut off
if flat_latent:
    method = "pca"  # unused: a 2-D latent is shown as it is
    c1.caption("The latent is 2-dimensional: the axes are z₀ and z₁ themselves, no projection needed.")
else:
    method = (
        c1.segmented_control(
            "Projection", METHODS, format_func=METHOD_LABELS.get, default="pca", key="projection_method"
        )
        or "pca"
    )
count = c2.select_slider(
    "Points", point_choices, key="projection_points", value=2_000 if 2_000 in point_choices else point_choices[-1]
)
c3.metric("Latent size", view.config.latent_dim)

labels = data.test_y[:count].numpy() if data.test_y is not None else None
track = tracks().track((view.run_id, method, count), method, seed=view.config.seed)
state = track.follow(view.epoch, view.weights_key, lambda: test_latents(view, count))
axes_key = ("axes_of", view.run_id, method, count)  # this session's frame of the run, grown epoch after epoch
axis_names = ("z₀", "z₁") if flat_latent else AXIS_NAMES[method]


def title_of(epoch: int) -> str:
    what = "Latent means" if flat_latent else METHOD_LABELS[method]
    return f"{what} of {count:,} test images · epoch {epoch}"


def run_moved_on() -> bool:
    """True when the training run this view shows has finished another epoch, or has ended."""
    if not view.is_live:
        return False
    live = session.registry().get(view.run_id)
    return live is None or live.snapshot().epoch > view.epoch or not live.snapshot().active


def follow() -> None:
    """Polled while a projection runs or the run trains: the page re-runs once the projection has
    ended (to show it), or, with none under way, once the run has finished another epoch (to
    project that one). A newer epoch never interrupts a projection: it waits for it."""
    now = track.state
    if now.version != state.version or (now.pending is None and run_moved_on()):
        st.rerun()
    if now.pending is None:
        return
    snapshot = now.pending.job.snapshot  # one reading, so the bar and its text agree
    elapsed = now.pending.job.elapsed_s
    on_show = f"; the scatter shows epoch {now.shown.epoch} meanwhile" if now.shown is not None else ""
    st.progress(
        snapshot.progress,
        text=f"{METHOD_LABELS[method]} of epoch {now.pending.epoch} running… "
        f"{snapshot.progress:.0%} ({elapsed:.1f} s){on_show}",
    )
    if now.shown is None and snapshot.preview is not None:
        st.plotly_chart(
            charts.latent_scatter(
                snapshot.preview, labels, view.class_names, title_of(now.pending.epoch) + " (preview)", axis_names
            ),
            key="latent_preview",
        )


if state.pending is not None or view.is_live:
    st.fragment(follow, run_every=0.5 if state.pending is not None else 1.0)()
failed = None if state.error is None else f"The projection of epoch {state.error[0]} failed: {state.error[1]}"
if state.shown is None:
    if failed:
        show_error(failed)
    st.stop()
shown = state.shown
axes = charts.covering_ranges(shown.points, st.session_state.get(axes_key))
st.session_state[axes_key] = axes
figure = charts.latent_scatter(shown.points, labels, view.class_names, title_of(shown.epoch), axis_names, axes)
event = st.plotly_chart(figure, key="latent_scatter", on_select="rerun", selection_mode="points")
if failed:
    show_error(failed)  # under the last scatter that could be drawn
units = "" if flat_latent else AXES_MEANING[method]
following = (
    " It follows the run: once a projection ends, the newest epoch is projected, turned (never "
    "scaled) to line up with the last."
    if view.is_live
    else ""
)
st.caption(
    f"Epoch {shown.epoch}, computed in {shown.elapsed_s:.2f} s. Click a point to see the image and its "
    f"decoding; drag to pan, scroll to zoom, click a legend entry to hide a class.{units}{following}"
)

selected = [p for p in (event.selection.points if event and event.selection else []) if "customdata" in p]
if selected:
    index = int(np.ravel(selected[0]["customdata"])[0])
    x = data.test_x[index : index + 1]
    y = data.test_y[index : index + 1] if data.test_y is not None else None
    label = class_name(int(y), view.class_names) if y is not None else "unlabelled"
    st.subheader(f"Image {index} · " + plain(label))
    left, right, rest = st.columns([1, 1, 3])
    with left:
        st.markdown("**Input**")
        image_grid(to_uint8(x), 1, cell_px=160)
    with right:
        st.markdown(f"**Decoded mean** (model of epoch {view.epoch})")
        image_grid(reconstruct(view.model, x, y), 1, cell_px=160)
    rest.markdown(f"**Latent mean at epoch {shown.epoch}**")
    rest.code(np.array2string(shown.latents[index], precision=2, max_line_width=60))
else:
    st.info("Click a point in the scatter to see that image and its decoding.", icon=":material/touch_app:")

with st.expander("Over the epochs: the codes of each saved epoch, played", icon=":material/play_circle:"):
    track = trajectory(view.frames)
    if track is None:
        st.info(
            "This run kept no latent means per epoch (it was saved before they were kept, or has not "
            "finished an epoch yet)."
        )
    else:
        tracked_labels = data.test_y[: track.points.shape[1]].numpy() if data.test_y is not None else None
        play([PlayedRun("Latent means", track, tracked_labels, view.class_names)], "latent_epochs")
        st.caption(
            "A VAE's codes spread into the circles of N(0, I) and stay there; an autoencoder's drift "
            "wherever reconstruction takes them. The plane is fixed by the last epoch"
            + ("." if flat_latent else " (its two principal directions, through the origin).")
        )
