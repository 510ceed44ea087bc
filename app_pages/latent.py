"""Latent space: the test images' latent means in 2D, coloured by label; click one to decode it."""

from __future__ import annotations

import numpy as np
import streamlit as st

from ui import charts, session
from ui.data_access import run_dataset, test_latents
from ui.latent_player import PlayedRun, play
from ui.runs import pick_run
from ui.widgets import class_name, image_grid, plain, show_error
from vae_core.errors import VAEStudioError
from vae_core.generate import reconstruct
from vae_core.latent_trajectory import trajectory
from vae_core.trainer import to_uint8
from vae_core.projection import METHODS, ProjectionCache

METHOD_LABELS = {"pca": "PCA (instant)", "tsne": "t-SNE", "umap": "UMAP"}

st.title("Latent space")
st.caption("Each point is one test image's posterior mean E[z|x]. A VAE's KL term pulls these towards "
           "N(0, I), so the space is filled without gaps and any point decodes to something plausible; "
           "a plain autoencoder's (model `ae`) is scattered and irregular.")


@st.cache_resource
def projections() -> ProjectionCache:
    """Server-wide: a projection computed once serves every session that asks for the same thing."""
    return ProjectionCache()


view = pick_run()
if view is None:
    st.stop()
try:
    data = run_dataset(view)
except VAEStudioError as error:
    show_error(f"The run's data cannot be loaded: {error}")
    st.stop()

test_count = int(data.test_x.shape[0])
point_choices = sorted({n for n in (100, 200, 500, 1_000, 2_000, 5_000, 10_000) if n < test_count}
                       | {min(test_count, 10_000)})
flat_latent = view.config.latent_dim == 2
c1, c2, c3 = st.columns([2, 2, 1])
if flat_latent:
    method = "pca"  # unused: a 2-D latent is shown as it is
    c1.caption("The latent is 2-dimensional: the axes are z₀ and z₁ themselves, no projection needed.")
else:
    method = c1.segmented_control("Projection", METHODS, format_func=METHOD_LABELS.get, default="pca",
                                  key="projection_method") or "pca"
count = c2.select_slider("Points", point_choices, key="projection_points",
                         value=2_000 if 2_000 in point_choices else point_choices[-1])
c3.metric("Latent size", view.config.latent_dim)

latents = test_latents(view, count)
labels = data.test_y[:count].numpy() if data.test_y is not None else None
key = (view.weights_key, method, count)
shown_key = (view.run_id, method, count)  # what this session last showed of the run, epoch after epoch
previous = st.session_state.get(("projection_of", *shown_key))
axes = st.session_state.get(("axes_of", *shown_key))
job = projections().get_or_start(key, latents, method, seed=view.config.seed,
                                 reference=previous[1] if previous is not None and len(previous[1]) == count else None)
axis_names = ("z₀", "z₁") if flat_latent else (f"{method} 1", f"{method} 2")


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
    """Polled while a projection runs or the run trains: the page re-runs once the projection is
    done, or once the run has finished another epoch (then this epoch's weights are projected,
    aligned onto what is shown now)."""
    if (job.done and not drawn_done) or run_moved_on():
        st.rerun()
    if not job.done:
        st.progress(job.progress, text=f"{METHOD_LABELS[method]} of epoch {view.epoch} running… "
                                       f"{job.progress:.0%} ({job.elapsed_s:.1f} s)")
    if previous is None and job.preview is not None:
        st.plotly_chart(charts.latent_scatter(job.preview, labels, view.class_names, title_of(view.epoch) + " (preview)",
                                              axis_names), key="latent_preview")


drawn_done = job.done
if not drawn_done or view.is_live:
    st.fragment(follow, run_every=0.5 if not job.done else 1.0)()
if job.error:
    show_error(f"The projection failed: {job.error}")
    st.stop()
if job.done and job.result is None:
    st.rerun()  # evicted and cancelled by other sessions' projections: the cache starts it again
if job.done:
    points, epoch = job.result, view.epoch
    axes = charts.covering_ranges(points, axes if previous is not None else None)
    st.session_state[("projection_of", *shown_key)] = (epoch, points)
    st.session_state[("axes_of", *shown_key)] = axes
elif previous is not None:
    epoch, points = previous  # the last epoch's scatter stays up, in the same frame, until this one is ready
else:
    st.stop()
figure = charts.latent_scatter(points, labels, view.class_names, title_of(epoch), axis_names, axes)
event = st.plotly_chart(figure, key="latent_scatter", on_select="rerun", selection_mode="points")
following = " It follows the run: each finished epoch is projected again and aligned onto this one." \
    if view.is_live else ""
st.caption(f"Computed in {job.elapsed_s:.2f} s. Click a point to see the image and its decoding; drag to pan, "
           f"scroll to zoom, click a legend entry to hide a class.{following}")

selected = [p for p in (event.selection.points if event and event.selection else []) if "customdata" in p]
if selected:
    index = int(np.ravel(selected[0]["customdata"])[0])
    x = data.test_x[index:index + 1]
    y = data.test_y[index:index + 1] if data.test_y is not None else None
    label = class_name(int(y), view.class_names) if y is not None else "unlabelled"
    st.subheader(f"Image {index} · " + plain(label))
    left, right, rest = st.columns([1, 1, 3])
    with left:
        st.markdown("**Input**")
        image_grid(to_uint8(x), 1, cell_px=160)
    with right:
        st.markdown("**Decoded mean**")
        image_grid(reconstruct(view.model, x, y), 1, cell_px=160)
    rest.markdown("**Latent mean**")
    rest.code(np.array2string(latents[index], precision=2, max_line_width=60))
else:
    st.info("Click a point in the scatter to see that image and its decoding.", icon=":material/touch_app:")

with st.expander("Over the epochs: the codes of each saved epoch, played", icon=":material/play_circle:"):
    track = trajectory(view.frames)
    if track is None:
        st.info("This run kept no latent means per epoch (it was saved before they were kept, or has not "
                "finished an epoch yet).")
    else:
        tracked_labels = data.test_y[:track.points.shape[1]].numpy() if data.test_y is not None else None
        play([PlayedRun("Latent means", track, tracked_labels, view.class_names)], "latent_epochs")
        st.caption("A VAE's codes spread into the circles of N(0, I) and stay there; an autoencoder's drift "
                   "wherever reconstruction takes them. The plane is fixed by the last epoch"
                   + ("." if flat_latent else " (its two principal directions, through the origin)."))
