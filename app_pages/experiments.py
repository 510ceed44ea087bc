"""Experiments page: one button per claim of the note, which queues its runs and then shows their finding.

When the runs finish, they stand side by side with the finding written from their numbers. The
experiments themselves (runs, metrics, findings) live in vae_core/experiments.py; this page only queues
and draws."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from ui import access, charts, session
from ui.data_access import run_dataset, test_latents
from ui.findings import judge_note, visible_findings
from ui.latent_player import PlayedRun, play
from ui.runs import RunView, load_view, pick_run, stored_job
from ui.widgets import class_picker, image_grid, nats, plain, show_error
from vae_core import experiments, generate
from vae_core.data import describe_datasets
from vae_core.errors import VAEStudioError
from vae_core.executor_state import ExecutorState
from vae_core.latent_trajectory import trajectory
from vae_core.metrics import iwae_nll
from vae_core.projection import pca_layout

LAUNCHED = "experiment_runs"  # session state: experiment name -> [(label, run id), ...] of its last launch
SCATTER_POINTS = 1000
SAMPLES = 36
BENCH_RESULTS = Path(__file__).resolve().parents[1] / "bench" / "RESULTS.md"  # in the checkout, beside the app
# What a grid of prior samples shows, by what the model generates from (generate.prior_kind).
PRIOR_SAMPLES_CAPTIONS = {
    "gaussian": "decoded z ~ N(0, I)",
    "none": "decoded z ~ N(0, I), a prior this autoencoder never learned",
    "codes": "each slot's code drawn from the learned code prior, decoded",
}
IWAE_K = 50
IWAE_IMAGES = 500
EXPLORER_GRID = 41  # click targets per side of the explorer's plane
EXPLORE_X, EXPLORE_Y, PLANE = "explore_x", "explore_y", "explorer_plane"
FOCUS_PARAM = "experiment"  # ?experiment=NAME: the experiment a link (the Theory page's) asks to see first

st.title("Experiments: the note's claims, on your data")
WHERE_RUNS_TRAIN = {
    "slurm": "each as a SLURM job of its own, all submitted at once (they train as the cluster finds room)",
    "local": "one after the other on this machine (they join the queue behind any run already training)",
}
st.markdown(
    "Each button trains the runs that show one claim of the note, on the data and for the epochs "
    f"you choose, {WHERE_RUNS_TRAIN['slurm' if session.registry().slurm else 'local']}. When they have "
    "finished they appear side by side, measured the same way, with a finding written from the numbers."
)

available = [row["name"] for row in describe_datasets() if row["available"]]
c1, c2, c3 = st.columns(3)
data = c1.selectbox("Data", available, key="experiment_data")
epochs = c2.number_input(
    "Epochs per run",
    1,
    200,
    5,
    key="experiment_epochs",
    help="Five epochs of mnist-sample take a few seconds per run and show every effect.",
)
seed = c3.number_input("Seed", 0, 10_000, 0, key="experiment_seed")
base = experiments.base_config(data=data, epochs=int(epochs), seed=int(seed))
launched: dict = st.session_state.setdefault(LAUNCHED, {})


def launch(experiment: experiments.Experiment) -> None:
    """Queue every run of `experiment` and remember them for this session."""
    dataset = session.run_data(base)
    registry = session.registry()
    runs = []
    for run in experiment.runs(base):
        job = registry.submit(
            run.config, dataset, name=experiments.run_name(experiment, run), owner=access.current_owner()
        )
        runs.append((run.label, job.run_id))
    launched[experiment.name] = runs


def views_of(runs: list[tuple[str, str]]) -> list[tuple[str, RunView | None, object]]:
    """(label, view once finished or None, the job's snapshot or None) of each launched run; for a run
    sent to SLURM and not training yet, its executor state in place of a snapshot."""
    registry = session.registry()
    rows = []
    for label, run_id in runs:
        job = registry.get(run_id)
        if job is None and registry.slurm is not None:  # a SLURM job's run: not this server's job
            place = registry.slurm.place(run_id)
            stored = None if place is not None and place.waiting else stored_job(run_id)
            if stored is None and place is not None and place.active:
                rows.append((label, None, place))  # pending in SLURM, or its job has not written yet
                continue
            if stored is not None:
                snap = stored.snapshot()
                finished = snap.status == "finished"
                rows.append((label, load_view(f"file:{snap.checkpoint_path}") if finished else None, snap))
                continue
        if job is None:  # forgotten by the registry: its checkpoint, if it saved one
            path = session.CHECKPOINT_DIR / f"{run_id}.safetensors"
            rows.append((label, load_view(f"file:{path}") if path.exists() else None, None))
            continue
        snap = job.snapshot()
        rows.append((label, load_view(f"job:{run_id}") if snap.status == "finished" else None, snap))
    return rows


def progress(experiment: experiments.Experiment, live: bool) -> None:
    """Where each run stands; re-run every second while one is still to finish (see below)."""
    rows = views_of(launched[experiment.name])
    if live and not any(snap is not None and snap.active for _, _, snap in rows):
        st.rerun()  # every run has ended: redraw the page with the comparison, and stop polling
    if all(view is not None for _, view, _ in rows):
        return  # all finished: the comparison below says it
    registry = session.registry()
    for label, view, snap in rows:
        if view is not None:
            st.write(f"{label}: finished")
        elif isinstance(snap, ExecutorState):
            st.write(f"{label}: {snap.text()}")
        elif snap is None:
            st.write(f"{label}: no longer in memory and no checkpoint; run the experiment again")
        elif snap.status == "queued":
            st.write(f"{label}: queued, {registry.position(snap.run_id)} in line")
        elif snap.active:
            st.progress(snap.progress, text=f"{label}: {snap.status}, epoch {snap.epoch} of {snap.epochs}")
        else:
            show_error(f"{label} ended {snap.status}" + (f": {snap.message}" if snap.message else ""))


# By count, not bytes: a RunResult is numbers (a few metrics, each epoch's test metrics), no tensors.
@st.cache_resource(max_entries=24, show_spinner="Measuring the run…")
def measured(weights_key: tuple, label: str, _view: RunView) -> experiments.RunResult:
    """A finished run measured once per set of weights (prior samples, the classifier, latent fill)."""
    dataset = run_dataset(_view)
    metrics = experiments.measure(_view.model, dataset, _view.epoch_metrics)
    return experiments.RunResult(label, _view.config, metrics, _view.epoch_metrics, _view.checkpoint_path)


def scatter_points(view: RunView) -> np.ndarray:
    """The test images' latent means in 2-D: as they are for a 2-D latent, else their first two
    principal components."""
    means = test_latents(view, SCATTER_POINTS)
    return means if means.shape[1] == 2 else pca_layout(means)


def draw_run(
    experiment: experiments.Experiment,
    run: experiments.RunResult,
    view: RunView,
    frame: tuple[list[float], list[float]] | None,
) -> None:
    st.subheader(run.label)
    if "scatter" in experiment.pictures:
        dataset = run_dataset(view)
        labels = dataset.test_y[:SCATTER_POINTS].numpy() if dataset.test_y is not None else None
        axes = ("z0", "z1") if view.config.latent_dim == 2 else ("PC 1", "PC 2")
        figure = charts.latent_scatter(
            scatter_points(view), labels, view.class_names, "test images' latent means", axes, frame
        )
        figure.update_layout(height=380, showlegend=False)
        st.plotly_chart(figure, key=f"scatter_{experiment.name}_{run.label}")
    if "samples" in experiment.pictures:
        image_grid(
            generate.prior_samples(view.model, SAMPLES, seed=0),
            6,
            caption=PRIOR_SAMPLES_CAPTIONS[generate.prior_kind(view.model)],
        )
    if "traversals" in experiment.pictures:
        dims = experiments.top_dimensions(run.epoch_metrics, run.config.latent_dim)
        image_grid(
            generate.traversal(view.model, dims, steps=7),
            7,
            caption="traversals of the dimensions with most KL: " + ", ".join(f"z{d}" for d in dims),
        )
    if "kl_over_training" in experiment.pictures:
        st.caption("test KL of each latent dimension (nats) after each epoch")
        st.plotly_chart(
            charts.kl_by_epoch_figure(experiments.kl_per_dim_by_epoch(run)),
            key=f"kl_by_epoch_{experiment.name}_{run.label}",
        )


def comparison(experiment: experiments.Experiment) -> None:
    rows = views_of(launched[experiment.name])
    if any(view is None for _, view, _ in rows):
        return
    results = [measured(view.weights_key, label, view) for label, view, _ in rows]
    result = experiments.finding_for(experiment.name, results)
    try:  # kept beside the runs, so the Theory page shows it and a restart finds it
        experiments.save_finding(
            session.CHECKPOINT_DIR,
            result,
            [run_id for _, run_id in launched[experiment.name]],
            owner=access.current_owner(),  # served: this person's, beside (never over) anyone else's
        )
    except OSError as error:
        st.caption(plain(f"The finding could not be saved for later: {error.strerror or error}"))
    st.success(plain(result.finding), icon=":material/lightbulb:")
    if result.real_recognised is not None:
        st.caption(judge_note(result.real_recognised))
    st.dataframe(experiments.comparison_rows(result), hide_index=True)
    # One frame for every scatter, so the spread of the codes compares at a glance.
    frame = (
        charts.covering_ranges(np.concatenate([scatter_points(view) for _, view, _ in rows]))
        if "scatter" in experiment.pictures
        else None
    )
    for column, run, (_, view, _) in zip(st.columns(len(results)), results, rows):
        with column:
            draw_run(experiment, run, view, frame)
    if "scatter" in experiment.pictures:
        played_over_epochs(experiment, rows)


def played_over_epochs(experiment: experiments.Experiment, rows: list[tuple[str, RunView, object]]) -> None:
    """The runs' scatters over their saved epochs, side by side under one player."""
    played = []
    for label, view, _ in rows:
        track = trajectory(view.frames)
        if track is None:
            return  # a run saved before the means of each epoch were kept
        data = run_dataset(view)
        labels = data.test_y[: track.points.shape[1]].numpy() if data.test_y is not None else None
        played.append(PlayedRun(label, track, labels, view.class_names))
    st.markdown(
        "**Over the epochs**: the same test images' means at each saved epoch, in one frame for every "
        "run, with N(0, I)'s 1σ and 2σ circles: see where each run's codes settle, and how."
    )
    play(played, f"epochs_{experiment.name}", height=380)


def restore_saved(
    experiment: experiments.Experiment, saved: experiments.SavedFinding | None, focus: str | None
) -> bool:
    """The runs of the experiment's last saved finding, shown again (at once for the experiment a link
    asked for, else on a click): True when they are now this session's runs of the experiment."""
    if saved is None:
        return False
    if experiment.name != focus:
        st.caption(f"Last finding, saved {saved.saved[:10]}: " + plain(saved.finding))
        if saved.real_recognised is not None:
            st.caption(judge_note(saved.real_recognised))
        if not st.button("Show its runs", key=f"show_{experiment.name}", icon=":material/history:"):
            return False
    launched[experiment.name] = [tuple(run) for run in saved.runs]
    return True


focus = st.query_params.get(FOCUS_PARAM)
saved_findings = visible_findings()
for experiment in sorted(experiments.EXPERIMENTS.values(), key=lambda e: e.name != focus):  # the linked one first
    with st.container(border=True):
        st.header(experiment.title)
        st.markdown(experiment.claim)
        count = len(experiment.runs(base))
        if st.button(
            f"Run it: {count} runs × {int(epochs)} epochs", key=f"run_{experiment.name}", icon=":material/science:"
        ):
            try:
                launch(experiment)
            except VAEStudioError as error:
                show_error(error)
        if experiment.name not in launched and not restore_saved(
            experiment, saved_findings.get(experiment.name), focus
        ):
            continue
        try:
            live = any(snap is not None and snap.active for _, _, snap in views_of(launched[experiment.name]))
            st.fragment(progress, run_every=1.0 if live else None)(experiment, live)
            comparison(experiment)
        except VAEStudioError as error:
            show_error(error)


def reference_rows(view: RunView, elbo: float | None, iwae: float | None) -> list[dict]:
    """The run's own bounds, then the published ones and the project's reference runs on its data."""

    def row(source, data, model, bound, value, differs):
        return {
            "source": source,
            "data": data,
            "model": model,
            "bound": bound,
            "nats": nats(value),
            "what differs": differs,
        }

    rows = [row("your run", view.config.data, view.config.model, "−ELBO", elbo, f"{view.epoch} epoch(s)")]
    if iwae is not None:
        rows.append(
            row(
                "your run",
                view.config.data,
                view.config.model,
                f"IWAE k={IWAE_K}",
                iwae,
                f"first {IWAE_IMAGES} test images",
            )
        )
    bench = experiments.bench_references_in(BENCH_RESULTS)
    for reference in (*experiments.PUBLISHED, *(r for r in bench if r.data == view.config.data)):
        rows.append(
            row(reference.source, reference.data, reference.model, reference.bound, reference.value, reference.differs)
        )
    return rows


def take_click() -> None:
    """A click on the plane moves the point to decode there (before the sliders are drawn)."""
    points = st.session_state[PLANE].selection.points
    if points:
        st.session_state[EXPLORE_X] = round(float(points[0]["x"]), 2)
        st.session_state[EXPLORE_Y] = round(float(points[0]["y"]), 2)


def plane_figure(view: RunView, dims: tuple[int, int], span: float, point: tuple[float, float]) -> go.Figure:
    """The test images' means on the plane of `dims`, an invisible grid of click targets covering it,
    and a star where the decoded point is."""
    dataset = run_dataset(view)
    means = test_latents(view, SCATTER_POINTS)[:, list(dims)]
    labels = dataset.test_y[:SCATTER_POINTS].numpy() if dataset.test_y is not None else None
    frame = ([-span, span], [-span, span])
    figure = charts.latent_scatter(
        means,
        labels,
        view.class_names,
        "test images' latent means (click anywhere)",
        (f"z{dims[0]}", f"z{dims[1]}"),
        frame,
    )
    ticks = np.linspace(-span, span, EXPLORER_GRID)
    grid_x, grid_y = np.meshgrid(ticks, ticks)
    figure.add_trace(
        go.Scatter(
            x=grid_x.ravel(),
            y=grid_y.ravel(),
            mode="markers",
            showlegend=False,
            name="plane",
            marker={"size": 12, "opacity": 0.01, "color": "#888"},
            hovertemplate="decode z = (%{x:.2f}, %{y:.2f})<extra></extra>",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=[point[0]],
            y=[point[1]],
            mode="markers",
            name="decoded here",
            marker={"size": 16, "symbol": "star", "color": "#d62728", "line": {"width": 1, "color": "white"}},
        )
    )
    figure.update_layout(height=480, dragmode="pan")
    return figure


def explorer(view: RunView) -> None:
    latent_dim = view.config.latent_dim
    top = experiments.top_dimensions(view.epoch_metrics, latent_dim, 2)
    c1, c2 = st.columns(2)
    first = c1.selectbox(
        "Horizontal: dimension", range(latent_dim), index=top[0], format_func=lambda d: f"z{d}", key="explore_dim_x"
    )
    second = c2.selectbox(
        "Vertical: dimension", range(latent_dim), index=top[1], format_func=lambda d: f"z{d}", key="explore_dim_y"
    )
    if first == second:
        st.warning("Pick two different dimensions for the plane.")
        return
    means = test_latents(view, SCATTER_POINTS)[:, [first, second]]
    # The frame holds the prior's +-3 sigma and the test means, wherever an autoencoder put them.
    span = float(max(3.0, math.ceil(np.percentile(np.abs(means), 99.5))))
    for key in (EXPLORE_X, EXPLORE_Y):
        st.session_state[key] = float(np.clip(st.session_state.get(key, 0.0), -span, span))
    label = class_picker(view.model.num_classes, view.class_names) if view.model.conditional else None
    left, right = st.columns([3, 1])
    with right:
        x = st.slider(f"z{first}", -span, span, step=0.05, key=EXPLORE_X)
        y = st.slider(f"z{second}", -span, span, step=0.05, key=EXPLORE_Y)
        z = torch.zeros(1, latent_dim)
        z[0, first], z[0, second] = x, y
        labels = torch.tensor([label]) if label is not None else None
        image_grid(
            generate.decode(view.model, z, labels),
            1,
            cell_px=180,
            caption=f"decoded z{first}={x:.2f}, z{second}={y:.2f}, other dimensions 0",
        )
    with left:
        st.plotly_chart(
            plane_figure(view, (first, second), span, (x, y)), key=PLANE, on_select=take_click, selection_mode="points"
        )


st.divider()
view = pick_run("Run to explore and judge")
st.header("Latent explorer")
st.markdown(
    "A plane through two latent dimensions (by default the two with most KL), the others held at 0, "
    "the prior's mean. Click anywhere on it, or move the sliders, and see what the decoder makes of "
    "that point; the dots are the test images' means on the same plane. Where a VAE's dots cover the "
    "prior, every point decodes to something plausible; between an autoencoder's clumps, it does not."
)
if view is not None:
    try:
        explorer(view)
    except VAEStudioError as error:
        show_error(error)

st.header("Is my number good?")
st.markdown(
    "A test −ELBO means little alone. Here it stands beside the published one-layer VAE on binarised "
    "MNIST (Burda et al. 2016, Table 1) and this project's own reference runs (`make bench`), with what "
    "sets them apart."
)
if view is not None:
    last = view.epoch_metrics[-1] if view.epoch_metrics else None
    iwae_key = f"iwae_{view.weights_key}"
    if (
        view.model.variational
        and last is not None
        and st.button(f"Compute the IWAE bound (k={IWAE_K}, first {IWAE_IMAGES} test images)", key="judge_iwae")
    ):
        try:
            data = run_dataset(view)
            y = data.test_y[:IWAE_IMAGES] if data.test_y is not None else None
            with st.spinner("Sampling…"):
                st.session_state[iwae_key] = iwae_nll(
                    view.model,
                    data.test_x[:IWAE_IMAGES],
                    y,
                    recon=view.config.recon,
                    k=IWAE_K,
                    generator=torch.Generator().manual_seed(0),
                )
        except VAEStudioError as error:
            show_error(error)
    if last is None:
        st.info("This run has not finished an epoch yet, so it has no test −ELBO.")
    else:
        st.dataframe(reference_rows(view, last.get("test_neg_elbo"), st.session_state.get(iwae_key)), hide_index=True)
        try:
            train_images = int(run_dataset(view).train_x.shape[0])
        except VAEStudioError:
            train_images = 0
        st.markdown(
            "\n".join(f"- {plain(note)}" for note in experiments.what_differs(view.config, train_images, view.epoch))
        )
