"""Generate: decoded grids of a trained model, and a timeline of how its pictures evolved."""

from __future__ import annotations

import numpy as np
import streamlit as st

from ui.data_access import run_dataset
from ui.runs import pick_run
from ui.widgets import class_name, class_picker, counted, epoch_player, image_grid, plain, show_error, wrapping_tabs
from vae_core import generate
from vae_core.errors import VAEStudioError
from vae_core.trainer import to_uint8

st.title("Generate")

view = pick_run()
if view is None:
    st.stop()
model = view.model
config = view.config
beta_text = f" · β={config.beta:g}" if model.variational else ""  # an autoencoder has no KL to weigh
st.caption(f"Run `{view.run_id}` · {config.model} · z={config.latent_dim}{beta_text} · weights of epoch {view.epoch}")
prior = generate.prior_kind(model)  # each family described by what it is: no prior, N(0, I), or codes
if prior == "none":
    st.warning(
        "This is a plain autoencoder: nothing made its latent space look like N(0, I), so decoding "
        "draws from the prior gives shapes no image looks like. Compare with a VAE run.",
        icon=":material/warning:",
    )
elif prior == "codes":
    st.info(
        f"This is a VQ-VAE: its decoder only sees codes, one of {model.codebook.shape[0]} learned vectors in "
        f"each of {model.slots} slots, and its prior is a learned categorical distribution over each slot's "
        "code (how often training used it). Samples draw each slot's code from that prior, on its own.",
        icon=":material/grid_view:",
    )
label = None
if model.conditional:
    # One class for every picture below: a grid mixing classes would show the labels, not the latent.
    label = class_picker(model.num_classes, view.class_names)
    class_text = " · class " + plain(class_name(label, view.class_names))
else:
    class_text = ""

tab_names = [
    "Samples from the prior",
    "Reconstructions",
    "Interpolation",
    "Traversals",
    "2D manifold",
    "Per class",
    "Timeline",
]
tabs = wrapping_tabs("generate_tabs", tab_names)

with tabs["Samples from the prior"]:
    if prior == "codes":
        # The codes come from learned frequencies, not from N(0, T²I): no temperature to set.
        c2, c3 = st.columns(2)
        temperature, drawn = 1.0, "each slot's code drawn from the learned code prior, decoded"
    else:
        c1, c2, c3 = st.columns(3)
        temperature = c1.slider(
            "Temperature", 0.0, 2.0, 1.0, 0.05, help="z ~ N(0, T²I). Below 1: cleaner, more typical; above 1: stranger."
        )
        drawn = "decoded z ~ N(0, T²I)"
    count = c2.select_slider("How many", [16, 32, 64, 100], value=64)
    seed = c3.number_input("Seed", 0, 10_000, 0)
    image_grid(
        generate.prior_samples(model, count, temperature=temperature, seed=int(seed), label=label),
        columns=int(np.ceil(np.sqrt(count))),
        caption=drawn + class_text,
    )
    if prior == "gaussian":
        st.caption(
            "Averaging over the posterior makes VAE samples blurrier than their inputs: the decoder's "
            "mean is the average of all images that could have produced z."
        )

try:
    data = run_dataset(view)
except VAEStudioError as error:
    data = None
    for name in ("Reconstructions", "Interpolation"):
        show_error(f"The run's data cannot be loaded: {error}", tabs[name])

if data is not None:
    test_x, test_y = data.test_x, data.test_y
    with tabs["Reconstructions"]:
        count = st.slider("Test images", 8, 64, 16, 8)
        x = test_x[:count]
        y = test_y[:count] if test_y is not None else None
        originals = to_uint8(x)
        recon = generate.reconstruct(model, x, y)
        rows = [item for pair in zip(np.split(originals, count // 8), np.split(recon, count // 8)) for item in pair]
        image_grid(np.concatenate(rows), 8, caption="odd rows: inputs · even rows: decoded posterior means")

    with tabs["Interpolation"]:
        c1, c2, c3 = st.columns(3)
        top = int(test_x.shape[0]) - 1
        a = c1.number_input("From test image", 0, top, 0)
        b = c2.number_input("To test image", 0, top, min(1, top))
        steps = c3.slider("Steps", 3, 16, 10)
        y_a = test_y[a] if test_y is not None else None
        y_b = test_y[b] if test_y is not None else None
        path = generate.interpolate(model, test_x[a], test_x[b], steps, y_a, y_b)
        ends = to_uint8(test_x[[a, b]])
        image_grid(
            np.concatenate([ends[:1], path, ends[1:]]),
            steps + 2,
            caption="input A · decoded straight line from μ(A) to μ(B) · input B",
        )
        st.caption("In a VAE the path stays on plausible images; an autoencoder's crosses holes.")

with tabs["Traversals"]:
    c1, c2 = st.columns(2)
    if model.variational:
        kl = np.asarray(view.epoch_metrics[-1]["kl_per_dim"]) if view.epoch_metrics else np.zeros(config.latent_dim)
        order = [int(i) for i in np.argsort(-kl)]
        dimensions_label, span_label = "Dimensions (most informative first)", "Range (± standard deviations)"
        describe = lambda d: f"z{d} ({kl[d]:.2f} nats)"  # noqa: E731
        explanation = (
            "Each row moves one latent dimension from −range to +range, the others at 0. Dimensions "
            "with ~0 nats of KL have collapsed to the prior: the decoder ignores them, so their rows "
            "do not change."
        )
    else:
        order = list(range(config.latent_dim))
        dimensions_label, span_label = "Dimensions", "Range (± latent units)"
        describe = lambda d: f"z{d}"  # noqa: E731
        explanation = (
            "Each row moves one latent dimension from −range to +range, the others at 0. An "
            "autoencoder has no prior and no KL, so nothing ranks its dimensions and nothing says "
            "where its codes lie: the range is in raw latent units, and 0 may be far from any code."
            if prior == "none"
            else "Each row moves one latent dimension from −range to +range, the others at 0, in raw latent "
            "units. A VQ-VAE has no KL per dimension to rank them by, and its decoder snaps every z to "
            "the nearest codes: a row changes in jumps, where z crosses from one code to the next."
        )
    shown = c1.slider(dimensions_label, 1, config.latent_dim, min(8, config.latent_dim))
    span = c2.slider(span_label, 1.0, 5.0, 3.0, 0.5)
    rows = ", ".join(describe(d) for d in order[:shown])
    image_grid(
        generate.traversal(model, order[:shown], steps=11, span=span, label=label),
        11,
        caption=f"rows: {rows}{class_text}",
    )
    st.caption(explanation)

with tabs["2D manifold"]:
    if config.latent_dim == 2:
        steps = st.slider("Grid size", 5, 25, 15)
        grid_of = {
            "gaussian": "the prior's quantiles",
            "none": "N(0, 1)'s quantiles (an autoencoder has no prior: its codes may lie elsewhere)",
            "codes": "N(0, 1)'s quantiles, each snapped to its nearest codes (a VQ-VAE's prior is over "
            "codes, not over this plane)",
        }[prior]
        image_grid(
            generate.manifold(model, steps, label=label),
            steps,
            cell_px=40,
            caption=f"decoded z on an even grid of {grid_of} (z₀ → right, z₁ → up){class_text}",
        )
    else:
        st.info("The manifold grid needs a 2-dimensional latent space: train with latent size 2.")

with tabs["Per class"]:
    if model.conditional:
        image_grid(
            generate.per_class(model, 10, seed=0),
            10,
            caption="one row per class, the same z in each column: the label sets the class, z the style",
        )
    else:
        st.info("Per-class generation needs the conditional model: train with model `cvae`.")

with tabs["Timeline"]:
    frames = view.frames
    if not frames:
        st.info("The pictures of each epoch appear once the first epoch has ended.")
    else:

        def show_frame(epoch: int) -> None:
            frame = next(f for f in frames if f.epoch == epoch)
            left, right = st.columns(2)
            with left:
                image_grid(frame.reconstructions, 8, caption=f"reconstructions, epoch {frame.epoch}")
            with right:
                image_grid(frame.samples, 8, caption=f"the same fixed z decoded, epoch {frame.epoch}")

        epoch_player(
            [f.epoch for f in frames],
            "timeline",
            show_frame,
            f"{counted(len(frames), 'saved epoch')}. The same test images and the same z every epoch, so you see the "
            "model learn.",
        )
