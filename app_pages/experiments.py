"""Experiments: each claim of the note as one button that queues its runs and, when they finish,
shows them side by side with the finding written from their numbers. The experiments themselves
(runs, metrics, findings) live in vae_core/experiments.py; this page only queues and draws."""

from __future__ import annotations

import streamlit as st

from ui import charts, session
from ui.data_access import run_dataset, test_latents
from ui.runs import RunView, load_view
from ui.widgets import image_grid, plain, show_error
from vae_core import experiments, generate
from vae_core.data import describe_datasets
from vae_core.errors import VAEStudioError
from vae_core.projection import pca_layout

LAUNCHED = "experiment_runs"  # session state: experiment name -> [(label, run id), ...] of its last launch
SCATTER_POINTS = 1000
SAMPLES = 36

st.title("Experiments: the note's claims, on your data")
st.markdown("Each button trains the runs that show one claim of the note, on the data and for the epochs "
            "you choose, one after the other on this machine (they join the queue behind any run already "
            "training). When they have finished they appear side by side, measured the same way, with a "
            "finding written from the numbers.")

available = [row["name"] for row in describe_datasets() if row["available"]]
c1, c2, c3 = st.columns(3)
data = c1.selectbox("Data", available, key="experiment_data")
epochs = c2.number_input("Epochs per run", 1, 200, 5, key="experiment_epochs",
                         help="Five epochs of mnist-sample take a few seconds per run and show every effect.")
seed = c3.number_input("Seed", 0, 10_000, 0, key="experiment_seed")
base = experiments.base_config(data=data, epochs=int(epochs), seed=int(seed))
launched: dict = st.session_state.setdefault(LAUNCHED, {})


def launch(experiment: experiments.Experiment) -> None:
    """Queue every run of `experiment` and remember them for this session."""
    dataset = session.run_data(base)
    registry = session.registry()
    runs = []
    for run in experiment.runs(base):
        job = registry.submit(run.config, dataset, name=experiments.run_name(experiment, run))
        runs.append((run.label, job.run_id))
    launched[experiment.name] = runs


def views_of(runs: list[tuple[str, str]]) -> list[tuple[str, RunView | None, object]]:
    """(label, view once finished or None, the job's snapshot or None) of each launched run."""
    registry = session.registry()
    rows = []
    for label, run_id in runs:
        job = registry.get(run_id)
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
    registry = session.registry()
    for label, view, snap in rows:
        if view is not None:
            st.write(f"{label}: finished")
        elif snap is None:
            st.write(f"{label}: no longer in memory and no checkpoint; run the experiment again")
        elif snap.status == "queued":
            st.write(f"{label}: queued, {registry.position(snap.run_id)} in line")
        elif snap.active:
            st.progress(snap.progress, text=f"{label}: {snap.status}, epoch {snap.epoch} of {snap.epochs}")
        else:
            show_error(f"{label} ended {snap.status}" + (f": {snap.message}" if snap.message else ""))
    if live and not any(snap is not None and snap.active for _, _, snap in rows):
        st.rerun()  # every run has ended: draw the comparison, and stop polling


@st.cache_resource(max_entries=24, show_spinner="Measuring the run…")
def measured(weights_key: tuple, label: str, _view: RunView) -> experiments.RunResult:
    """A finished run measured once per set of weights (prior samples, the classifier, latent fill)."""
    dataset = run_dataset(_view)
    metrics = experiments.measure(_view.model, dataset, _view.epoch_metrics)
    return experiments.RunResult(label, _view.config, metrics, _view.epoch_metrics, _view.checkpoint_path)


def draw_run(experiment: experiments.Experiment, run: experiments.RunResult, view: RunView) -> None:
    st.subheader(run.label)
    if "scatter" in experiment.pictures:
        dataset = run_dataset(view)
        means = test_latents(view, SCATTER_POINTS)
        points = means if means.shape[1] == 2 else pca_layout(means)
        labels = dataset.test_y[:SCATTER_POINTS].numpy() if dataset.test_y is not None else None
        axes = ("z0", "z1") if means.shape[1] == 2 else ("PC 1", "PC 2")
        figure = charts.latent_scatter(points, labels, view.class_names, "test images' latent means", axes)
        figure.update_layout(height=380, showlegend=False)
        st.plotly_chart(figure, key=f"scatter_{experiment.name}_{run.label}")
    if "samples" in experiment.pictures:
        image_grid(generate.prior_samples(view.model, SAMPLES, seed=0), 6, caption="decoded z ~ N(0, I)")
    if "traversals" in experiment.pictures:
        dims = experiments.top_dimensions(run)
        image_grid(generate.traversal(view.model, dims, steps=7), 7,
                   caption="traversals of the dimensions with most KL: " + ", ".join(f"z{d}" for d in dims))
    if "kl_over_training" in experiment.pictures:
        st.caption("test KL of each latent dimension (nats) after each epoch")
        st.line_chart(experiments.kl_per_dim_by_epoch(run), height=220, x_label="epoch", y_label="nats")


def comparison(experiment: experiments.Experiment) -> None:
    rows = views_of(launched[experiment.name])
    if any(view is None for _, view, _ in rows):
        return
    results = [measured(view.weights_key, label, view) for label, view, _ in rows]
    result = experiments.finding_for(experiment.name, results)
    st.success(plain(result.finding), icon=":material/lightbulb:")
    st.dataframe(experiments.comparison_rows(result), hide_index=True)
    for column, run, (_, view, _) in zip(st.columns(len(results)), results, rows):
        with column:
            draw_run(experiment, run, view)


for experiment in experiments.EXPERIMENTS.values():
    with st.container(border=True):
        st.header(experiment.title)
        st.markdown(experiment.claim)
        count = len(experiment.runs(base))
        if st.button(f"Run it: {count} runs × {int(epochs)} epochs", key=f"run_{experiment.name}",
                     icon=":material/science:"):
            try:
                launch(experiment)
            except VAEStudioError as error:
                show_error(error)
        if experiment.name not in launched:
            continue
        try:
            live = any(snap is not None and snap.active for _, _, snap in views_of(launched[experiment.name]))
            st.fragment(progress, run_every=1.0 if live else None)(experiment, live)
            comparison(experiment)
        except VAEStudioError as error:
            show_error(error)
