"""A run as the pages see it, whether it is training now or lives in a checkpoint file.

Its config, history, pictures and a CPU copy of the model for decoding. The pages never reach into a job."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st
import torch

from vae_core.byte_cache import ByteCache, nbytes_of
from vae_core.checkpoint import RunCheckpoint, load_checkpoint
from vae_core.config import TrainConfig, limits
from vae_core.errors import VAEStudioError
from vae_core.history import StepCurves
from vae_core.models import VAE, build_model
from vae_core.safe_files import file_version

from . import access, session
from .widgets import show_error

PICKER_KEY = "run_picker"


@dataclass(frozen=True)
class RunView:
    run_id: str
    name: str  # the run's display name: text from a file, shown as text, never as Markdown
    config: TrainConfig
    status: str
    epoch: int  # epoch of the weights `model` holds
    curves: StepCurves
    epoch_metrics: tuple[dict, ...]
    events: tuple[dict, ...]
    frames: tuple
    model: VAE
    class_names: tuple[str, ...] | None
    checkpoint_path: str | None
    weights_key: tuple  # identifies the weights `model` holds, for caches of what they compute

    @property
    def is_live(self) -> bool:
        return self.status in ("starting", "running", "paused")


def _live_view(job) -> RunView:
    snap = job.snapshot()
    epoch, weights = job.latest_weights()
    weights_key = ("job", job.run_id, epoch)
    model = _model_from_weights(weights_key, job.config, job.dataset.image_shape, job.dataset.num_classes, weights)
    return RunView(
        run_id=job.run_id,
        name=snap.name,
        config=job.config,
        status=snap.status,
        epoch=epoch,
        curves=snap.curves,
        epoch_metrics=snap.epoch_metrics,
        events=snap.events,
        frames=snap.frames,
        model=model,
        class_names=job.dataset.class_names,
        checkpoint_path=snap.checkpoint_path,
        weights_key=weights_key,
    )


@st.cache_resource
def _runs_read() -> ByteCache:
    """Server-wide: the checkpoints read from files and the models built to draw runs, the least recently
    used dropped once they weigh config.Limits.checkpoint_cache_bytes together. Weighed by their tensors
    and arrays, not counted: one upload of 8 M history rows weighs as much as a hundred short runs."""
    return ByteCache(lambda: limits().checkpoint_cache_bytes, weigh=_weight)


def _weight(value) -> int:
    """A model by its weights and buffers, a checkpoint by its tensors and arrays."""
    return nbytes_of(value.state_dict() if isinstance(value, torch.nn.Module) else value)


def _model_from_weights(weights_key, config, image_shape, num_classes, weights) -> VAE:
    """Built once per weights_key: the weights behind one key never change."""

    def build() -> VAE:
        model = build_model(config, image_shape, num_classes)
        model.load_state_dict(weights)
        return model.eval()

    return _runs_read().get_or_load(("model", weights_key), build)


def _loaded(path: Path) -> RunCheckpoint:
    checkpoint = load_checkpoint(path)
    checkpoint.state.history.curves()  # made once now, so they are weighed with it: every page draws them
    return checkpoint


def read_checkpoint(path: Path) -> RunCheckpoint:
    """A checkpoint, cached until the file changes; a VAEStudioError when it cannot be read (a link loop too)."""
    return _runs_read().get_or_load(("file", str(path)), lambda: _loaded(path), version=file_version(path))


def _file_view(path: Path) -> RunView:
    ckpt = read_checkpoint(path)
    history = ckpt.state.history
    weights_key = ("file", str(path), file_version(path))
    model = _model_from_weights(
        weights_key, ckpt.config, ckpt.dataset.image_shape, ckpt.dataset.num_classes, ckpt.state.model_state
    )
    return RunView(
        run_id=ckpt.run_id,
        name=ckpt.name,
        config=ckpt.config,
        status=ckpt.status,
        epoch=ckpt.state.epoch,
        curves=history.curves(),
        epoch_metrics=tuple(history.epochs),
        events=tuple(history.events),
        frames=tuple(history.frames),
        model=model,
        class_names=ckpt.dataset.class_names,
        checkpoint_path=str(path),
        weights_key=weights_key,
    )


def stored_job(run_id: str | None):
    """The run `run_id` of the checkpoints folder as its page shows it (vae_core/stored_runs.py), for a
    run this server does not drive: trained by the CLI, by torchrun, by a run process that outlived
    its server, or ended. None when the folder has no such run or this session may not see it."""
    from vae_core.run_ids import is_valid_run_id
    from vae_core.runs import read_run
    from vae_core.stored_runs import stored_run

    if not is_valid_run_id(run_id):
        return None
    record = read_run(session.CHECKPOINT_DIR, run_id)
    if record is None or not access.can_see(record.owner) or not record.config:
        return None
    checkpoint, fixed_inputs = None, None
    if record.checkpoint is not None and record.error is None:
        try:
            checkpoint = read_checkpoint(Path(record.checkpoint))
        except (OSError, VAEStudioError):
            pass  # the record alone still shows its curve
    try:
        from vae_core.trainer import FIXED_INPUTS, to_uint8

        fixed_inputs = to_uint8(session.run_data(TrainConfig.from_dict(record.config)).test_x[:FIXED_INPUTS])
    except VAEStudioError:
        pass  # data this server may not open: the reconstructions show without their inputs
    return stored_run(session.CHECKPOINT_DIR, record, checkpoint, fixed_inputs)


def run_label(name: str, run_id: str) -> str:
    """Names need not be unique (two runs of the same model), ids are: show both when they differ."""
    return run_id if name in ("", run_id) else f"{name} · {run_id}"


def run_choices() -> dict[str, str]:
    """key -> label of every run a page can show: jobs in memory first, then files. Keys are
    'job:<id>' or 'file:<path>'. A job whose checkpoint was deleted is gone (it can no longer be
    resumed or reloaded), unless it is still training. Only runs this session may see (ui/access.py)."""
    choices: dict[str, str] = {}
    listed = set()
    for job in session.registry().jobs():
        if not access.can_see(job.owner):
            continue
        snap = job.snapshot()
        if not snap.active and snap.checkpoint_path and not Path(snap.checkpoint_path).exists():
            continue
        choices[f"job:{job.run_id}"] = f"{run_label(snap.name, job.run_id)} · {snap.status}"
        listed.add(job.run_id)
    # The run store reads headers only (no weights), makes names distinct and sees runs the CLI trains.
    from vae_core.runs import list_runs

    # Unreadable ones too where they are shown: the page that opens one says what is wrong.
    for record in sorted(
        access.visible_records(list_runs(session.CHECKPOINT_DIR)), key=lambda r: r.mtime, reverse=True
    ):
        if record.checkpoint and record.run_id not in listed:
            where = "training elsewhere" if record.live else "saved"
            choices[f"file:{record.checkpoint}"] = f"{run_label(record.display_name, record.run_id)} · {where}"
    return choices


def load_view(key: str) -> RunView:
    kind, _, value = key.partition(":")
    if kind == "job":
        job = session.registry().get(value)
        if job is None:
            raise VAEStudioError(f"run {value} is no longer in memory; open its checkpoint instead")
        return _live_view(job)
    return _file_view(Path(value))


def _run_id_of(key: str) -> str:
    """The run id behind a choice key: the job's id, or the checkpoint file's stem."""
    kind, _, value = key.partition(":")
    return value if kind == "job" else Path(value).stem


def newest(keys: list[str]) -> str:
    """The choice of the run created last: by the creation time its id begins with, else (ids made
    elsewhere) the most recently written file, which run_choices lists first among files."""
    from vae_core.runs import creation_order

    stamped = [key for key in keys if creation_order(_run_id_of(key))[0] != "~"]
    return max(stamped, key=lambda key: creation_order(_run_id_of(key))) if stamped else keys[0]


def _follow_waiting_picker() -> None:
    picked = st.session_state.get(f"{PICKER_KEY}_waiting")
    if picked is not None:
        session.set_current_run(_run_id_of(picked))


def _follow_picker() -> None:
    session.set_current_run(_run_id_of(st.session_state[PICKER_KEY]))


def pick_run(label: str = "Run") -> RunView | None:
    """A select box of runs in the sidebar, on the session's current run (the URL's ?run=, or the
    run just started or uploaded). Shows an error (not a traceback) when a checkpoint cannot be
    read; None when there is no run."""
    choices = run_choices()
    if not choices:
        st.info("No run yet. Train one on the **Train** page, or upload a checkpoint on **Checkpoints**.")
        return None
    keys = list(choices)
    current = session.current_run_id()
    if current and not any(_run_id_of(key) == current for key in keys):
        # Never another run in its place: the URL names this one, and it may be a moment from readable.
        # The id is not repeated: when served, a link to another person's run must tell nothing of it.
        st.info(
            "The run this page's link names has no checkpoint you can open yet: it appears here once its "
            "first epoch has ended (its curves are on the **Train** page meanwhile). Pick another run in "
            "the sidebar to open it.",
            icon=":material/hourglass_top:",
        )
        st.sidebar.selectbox(
            label,
            [None, *keys],
            format_func=lambda key: "–" if key is None else choices[key],
            key=f"{PICKER_KEY}_waiting",
            on_change=_follow_waiting_picker,
        )
        return None
    picked = st.session_state.get(PICKER_KEY)
    if picked not in keys or (current and _run_id_of(picked) != current):
        # The current run changed elsewhere (a link, a start, an upload): the picker follows it; with
        # none named, the newest run.
        picked = next((k for k in keys if _run_id_of(k) == current), None) or newest(keys)
    # Set on every run: each page has its own picker widget, which would otherwise start on keys[0].
    st.session_state[PICKER_KEY] = picked
    key = st.sidebar.selectbox(label, keys, format_func=choices.get, key=PICKER_KEY, on_change=_follow_picker)
    try:
        view = load_view(key)
    except VAEStudioError as error:
        show_error(error)
        return None
    if view.run_id != current:
        session.set_current_run(view.run_id)
    if view.is_live or (kind_of(key) == "file" and _trained_elsewhere(view.run_id)):
        st.fragment(lambda: newer_weights_notice(view), run_every=WEIGHTS_WATCH_S)()
    return view


WEIGHTS_WATCH_S = 2.0


def kind_of(key: str) -> str:
    return key.partition(":")[0]


def _trained_elsewhere(run_id: str) -> bool:
    from vae_core.runs import read_run

    record = read_run(session.CHECKPOINT_DIR, run_id)
    return record is not None and record.live


def latest_epoch(run_id: str) -> int | None:
    """The last epoch whose weights the run has kept: its job's, else its checkpoint's (None: unknown)."""
    job = session.registry().get(run_id)
    if job is not None:
        return job.snapshot().weights_epoch
    from vae_core.runs import read_run

    record = read_run(session.CHECKPOINT_DIR, run_id)
    return None if record is None else record.epoch if record.checkpoint else None


def newer_weights_notice(view: RunView) -> None:
    """While the run trains, a page that decoded its weights of one epoch says so, and says when newer
    ones exist (at each epoch end), rather than showing old pictures as if they were the run's now."""
    latest = latest_epoch(view.run_id)
    if latest is not None and latest > view.epoch:
        left, right = st.columns([4, 1], vertical_alignment="center")
        left.info(
            f"These use the weights of epoch {view.epoch}; the run has kept those of epoch {latest} since.",
            icon=":material/update:",
        )
        if right.button("Show the newest", key="newer_weights"):
            st.rerun(scope="app")
    else:
        st.caption(
            f"Weights of epoch {view.epoch}, the newest the run has kept: it is still training, and each "
            "epoch end brings newer ones."
        )


def sweep_parallel_figure(sweep, summary: list[dict]):
    """A sweep as parallel coordinates (W&B's view of a sweep): an axis per swept field, its values in
    sweep order, then an axis per test metric; a line per run that has a finished epoch, coloured by
    its test −ELBO. Unlike the line chart it shows every swept field, however many."""
    import plotly.graph_objects as go

    from vae_core.sweep import SUMMARY_METRICS, shown_value

    rows = [row for row in summary if all(row[label] is not None for label in SUMMARY_METRICS)]
    dimensions = []
    for field_name in sweep.fields:
        values = sweep.values_of(field_name)
        dimensions.append(
            {
                "label": field_name,
                "values": [values.index(row[field_name]) for row in rows],
                "tickvals": list(range(len(values))),
                "ticktext": [shown_value(value) for value in values],
                "range": [-0.25, len(values) - 0.75],
            }
        )
    for label in SUMMARY_METRICS:
        dimensions.append({"label": f"{label} (nats)", "values": [row[label] for row in rows]})
    colours = [row["test −ELBO"] for row in rows]
    figure = go.Figure(
        go.Parcoords(
            dimensions=dimensions,
            line={
                "color": colours,
                "colorscale": "Viridis_r",
                "showscale": bool(rows),
                "colorbar": {"title": {"text": "test −ELBO"}, "thickness": 12},
            },
        )
    )
    figure.update_layout(height=340, margin={"l": 60, "r": 40, "t": 50, "b": 20})
    return figure


def sweep_figure(sweep, summary: list[dict], metric: str):
    """A sweep's `metric` (a column of vae_core.sweep.sweep_summary) against its first swept field, one
    line per value of its second (as TensorBoard's HParams plots a metric per value): finished runs
    as filled dots, runs not finished (still training, stopped, failed) as open ones at their last
    finished epoch. Runs with no finished epoch have no point."""
    import plotly.graph_objects as go

    from vae_core.sweep import shown_value

    from .charts import PALETTE

    first, *rest = sweep.fields
    second = rest[0] if rest else None
    groups = sweep.values_of(second) if second else [None]
    figure = go.Figure()
    for index, group in enumerate(groups):
        rows = [row for row in summary if (second is None or row[second] == group) and row[metric] is not None]
        if not rows:
            continue
        figure.add_trace(
            go.Scatter(
                x=[shown_value(row[first]) for row in rows],
                y=[row[metric] for row in rows],
                mode="lines+markers",
                name=f"{second} = {shown_value(group)}" if second else metric,
                line={"color": PALETTE[index % len(PALETTE)]},
                marker={
                    "size": 10,
                    "symbol": ["circle" if row["status"] == "finished" else "circle-open" for row in rows],
                },
                customdata=[[row["status"], f"{row['epoch']}/{row['epochs']}"] for row in rows],
                hovertemplate=f"{first} %{{x}}<br>{metric} %{{y:.2f}}<br>%{{customdata[0]}}, epoch %{{customdata[1]}}"
                "<extra></extra>",
            )
        )
    figure.update_layout(
        height=320,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        showlegend=second is not None,
        xaxis={
            "title": {"text": first},
            "type": "category",
            "categoryorder": "array",
            "categoryarray": [shown_value(value) for value in sweep.values_of(first)],
        },
        yaxis={"title": {"text": f"{metric} (nats)"}},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
    )
    return figure
