"""Runs page: every run of the checkpoints folder and of this server in one table, with the queue and sweeps.

Runs another process trains (the CLI, torchrun) are followed live from their progress records."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from ui import access, session
from ui.charts import ComparedRun
from ui.curve_controls import compare_chart
from ui.runs import read_checkpoint
from ui.widgets import STATUS_ICONS, plain, show_error, wrapping_columns
from vae_core import runs as store
from vae_core.errors import VAEStudioError
from vae_core.history import RunClock, StepCurves

TABLE_KEY = "runs_table"
TABLE_PAGE_ROWS = 100
LIVE_REFRESH_S = 1.0  # while a run trains
FOLDER_WATCH_S = 5.0  # while none does: a look for new runs costs a folder listing (headers are cached)
PAGES = (
    ("app_pages/train.py", "Train", ":material/model_training:"),
    ("app_pages/latent.py", "Latent space", ":material/scatter_plot:"),
    ("app_pages/generate.py", "Generate", ":material/palette:"),
    ("app_pages/checkpoints.py", "Checkpoints", ":material/save:"),
)
SHOWN_CONFIG = (
    "model",
    "hidden",
    "latent_dim",
    "beta",
    "lr",
    "batch_size",
    "epochs",
    "recon",
    "kl_anneal",
    "kl_warmup_epochs",
    "free_bits",
    "seed",
    "data",
    "image_size",
    "device",
)
# The status column holds a word; why a run is killed, quiet, failed or unreadable has a column of its own.
STATUS_WORDS = {store.KILLED: "killed", store.STALE: "no heartbeat", "unreadable": "unreadable"}
STATUS_HELP = (
    "killed: the process training it ended without saying so (e.g. SIGKILL); no heartbeat: it has "
    f"not written for {store.STALE_AFTER_S / 60:.0f} minutes; · CLI: trained by another process"
)

st.title("Runs")
st.caption(
    "Every run in the checkpoints folder and in this server: the app's own, uploads, and runs the CLI "
    "(`vae-studio train`, `sweep`, torchrun) trains into the same folder, followed live while they train. "
    "Select rows to compare them; the selected run opens on every page."
)


# -- what the page lists ----------------------------------------------------------------------------------


def _job_row(job) -> dict:
    """A run of this server's registry as a table row (it may have no file yet: queued, first epoch)."""
    snap = job.snapshot()
    last = {k: v for k, v in snap.epoch_metrics[-1].items() if k != "kl_per_dim"} if snap.epoch_metrics else {}
    return {
        "run_id": job.run_id,
        "name": snap.name,
        "status": snap.status,
        "where": "this app",
        "live": snap.active,
        "epoch": snap.epoch,
        "epochs": snap.epochs,
        "metrics": last,
        "config": snap.config,
        "dataset": snap.dataset,
        "notes": "",
        "job": job,
        "record": None,
        "owner": job.owner,
        "why": snap.message or "",
    }


def _record_row(record: store.RunRecord) -> dict:
    where = f"CLI · pid {record.progress.pid}" if record.live else "file"
    return {
        "run_id": record.run_id,
        "name": record.name,
        "status": record.status,
        "where": where,
        "live": record.live,
        "epoch": record.epoch,
        "epochs": record.epochs,
        "metrics": record.metrics,
        "config": record.config,
        "dataset": record.dataset,
        "notes": record.notes,
        "job": None,
        "record": record,
        "owner": record.owner,
        "why": status_reason(record),
    }


def status_reason(record: store.RunRecord) -> str:
    """Why a run of the folder is killed, quiet, failed or unreadable ("" for the others)."""
    progress = record.progress
    if record.status == store.KILLED:
        left = "resume it from its last saved epoch" if record.checkpoint else "it saved nothing"
        return f"its process (pid {progress.pid}) ended mid-run; {left}"
    if record.status == store.STALE:
        return f"no word from pid {progress.pid} on {progress.host} for over {store.STALE_AFTER_S / 60:.0f} minutes"
    if record.error:
        return record.error
    return (progress.message or "") if progress is not None and record.status == "failed" else ""


def gather_runs() -> list[dict]:
    """Files and this server's jobs that this session may see (ui/access.py), one row per run id (a job
    still active wins over its file), in creation order, with display names made distinct."""
    rows = {
        record.run_id: _record_row(record) for record in access.visible_records(store.list_runs(session.CHECKPOINT_DIR))
    }
    registry = session.existing_registry()
    for job in registry.jobs() if registry is not None else ():
        if not access.can_see(job.owner):
            continue
        row = _job_row(job)
        if row["status"] == "cancelled":
            continue
        if row["live"] or job.run_id not in rows:
            if job.run_id in rows:
                row.update(notes=rows[job.run_id]["notes"], record=rows[job.run_id]["record"])
            rows[job.run_id] = row
        else:
            rows[job.run_id]["job"] = job
    ordered = [rows[run_id] for run_id in sorted(rows, key=store.creation_order)]
    for row, name in zip(ordered, store.distinct_names([row["name"] for row in ordered])):
        row["display_name"] = name
    return ordered


def _started(run_id: str, record) -> dt.datetime | None:
    """When the run was made: its id's timestamp (run_ids.new_run_id), else its record's start."""
    try:
        return dt.datetime.strptime(run_id[:15], "%Y%m%d-%H%M%S")
    except ValueError:
        progress = record.progress if record is not None else None
        return dt.datetime.fromtimestamp(progress.started) if progress is not None else None


def status_label(row: dict) -> str:
    word = STATUS_WORDS.get(row["status"], row["status"])
    return f"{word} · CLI" if row["where"].startswith("CLI") else word


def table_frame(rows: list[dict]) -> pd.DataFrame:
    """Plain values only: names read from files are shown as text by st.dataframe, never as Markdown."""
    records = []
    for row in rows:
        config, metrics = row["config"], row["metrics"]
        variational = config.get("model") != "ae"
        records.append(
            {
                "status": status_label(row),
                "why": row["why"],
                "name": row["display_name"],
                "epoch": row["epoch"],
                "progress": row["epoch"] / row["epochs"] if row["epochs"] else 0.0,
                "test −ELBO": metrics.get("test_neg_elbo") if variational else None,
                "test recon": metrics.get("test_recon"),
                "active units": metrics.get("active_units"),
                "model": config.get("model"),
                "z": config.get("latent_dim"),
                "β": _in_force(row, "beta") if variational else None,
                "lr": _in_force(row, "lr"),
                "changed while training": row["record"].live_changes() if row["record"] is not None else "",
                "batch": config.get("batch_size"),
                "dataset": row["dataset"],
                "started": _started(row["run_id"], row["record"]),
                "where": row["where"],
                "link": f"?{session.RUN_PARAM}={row['run_id']}",
                "run id": row["run_id"],
            }
        )
    frame = pd.DataFrame(records)
    # The "why" and "changed while training" columns take room only when a listed run needs them.
    for column in ("why", "changed while training"):
        if not frame.empty and not frame[column].astype(bool).any():
            frame = frame.drop(columns=column)
    return frame


def _in_force(row: dict, name: str):
    """The lr or β a run trains with now: a job's snapshot says, else its file's last live change."""
    if row["job"] is not None:
        return getattr(row["job"].snapshot(), name)
    return row["record"].in_force(name) if row["record"] is not None else row["config"].get(name)


COLUMNS = {
    "status": st.column_config.TextColumn("status", help=STATUS_HELP),
    "why": st.column_config.TextColumn(
        "why", width="medium", help="Why a run was killed, went quiet, failed or cannot be read"
    ),
    "name": st.column_config.TextColumn("name", width="medium"),
    "epoch": st.column_config.NumberColumn("epoch", format="%d"),
    "progress": st.column_config.ProgressColumn("done", min_value=0.0, max_value=1.0, format="percent"),
    "test −ELBO": st.column_config.NumberColumn("test −ELBO", format="%.2f", help="nats per image, last epoch"),
    "test recon": st.column_config.NumberColumn("test recon", format="%.2f"),
    "active units": st.column_config.NumberColumn("active units", format="%d"),
    "β": st.column_config.NumberColumn("β", format="%g"),
    "lr": st.column_config.NumberColumn("lr", format="%g"),
    "started": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss"),
    "link": st.column_config.LinkColumn("link", display_text="open", help="This run, on every page"),
}


# -- live: runs training now ------------------------------------------------------------------------------


def _progress_curves(progress: store.Progress) -> StepCurves:
    """A progress record's loss points as curves, its wall times as their clock."""
    points = progress.points

    def column(key: str) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in points[key]], dtype=np.float32)

    nothing = np.full(len(points["step"]), np.nan, dtype=np.float32)
    return StepCurves(
        step=np.asarray(points["step"], dtype=np.int64),
        total=column("total"),
        recon=column("recon"),
        kl=column("kl"),
        beta=nothing,
        lr=nothing,
        clock=RunClock.from_points(points["step"], points["wall"]),
    )


def _seen(rows: list[dict]) -> tuple:
    """What makes the page redraw: the runs there are, and which of them train now."""
    return (
        tuple(row["run_id"] for row in rows),
        tuple(row["run_id"] for row in rows if row["live"] and row["status"] != "queued"),
    )


def _folder_and_jobs() -> tuple:
    """What changes when a run is added, removed, queued, started or ends: the folder's modification
    time (every file is written by a rename into it) and the statuses of this server's jobs."""
    try:
        folder = os.stat(session.CHECKPOINT_DIR).st_mtime_ns
    except OSError:
        folder = None
    registry = session.existing_registry()
    return folder, tuple((job.run_id, job.status) for job in registry.jobs()) if registry is not None else ()


def live_panel() -> None:
    """Re-run by its fragment: every second while a run trains, else every few seconds only to look
    for new runs (as TensorBoard watches its log folder). The page re-runs once when the runs or the
    live ones change (a CLI run appeared or ended), so the table catches up and the pace changes."""
    watched = _folder_and_jobs()
    if not st.session_state.get("_runs_seen", ((), ()))[1] and st.session_state.get("_runs_watched") == watched:
        return  # nothing trains and nothing changed: no listing (an idle tab costs a stat every few seconds)
    every = gather_runs()
    st.session_state["_runs_watched"] = watched
    if st.session_state.get("_runs_seen") != _seen(every):
        st.session_state["_runs_seen"] = _seen(every)
        st.rerun()
    rows = [row for row in every if row["live"] and row["status"] != "queued"]
    if not rows:
        return
    st.subheader("Training now")
    for row in rows:
        record, job = row["record"], row["job"]
        if job is not None:
            snap = job.snapshot()
            step, total, speed = snap.step, snap.total_steps, snap.samples_per_s
        else:
            step, total, speed = record.step, record.progress.total_steps, record.progress.samples_per_s
        icon = STATUS_ICONS.get(row["status"], "")
        st.progress(
            min(1.0, step / total) if total else 0.0,
            text=f"{icon} {plain(row['display_name'])} · {row['where']} · epoch {row['epoch']}/{row['epochs']} · "
            f"step {step:,}/{total:,} · {speed:,.0f} samples/s",
        )
    external = [row for row in rows if row["job"] is None]
    if external:
        compare_chart(
            [
                ComparedRun(
                    row["display_name"],
                    _progress_curves(row["record"].progress),
                    row["record"].progress.epoch_metrics,
                    row["record"].progress.steps_per_epoch,
                )
                for row in external
            ],
            "total",
            key="live",
        )
        st.caption(
            "Runs trained by another process, read from their progress records (a point per write, "
            "the mean loss of the steps since the one before)."
        )


# -- the queue ---------------------------------------------------------------------------------------------


def _queue_action(action, run_id: str, *args) -> None:
    """A button's callback: a run may have started or ended since the page was drawn. The owner is
    checked again here: a disabled button is disabled by the browser, not by the server."""
    job = access.visible_job(run_id)
    if job is None or not access.can_control(job.owner):
        st.session_state["_runs_message"] = ("error", "Only the person who queued a run can move or cancel it.")
        return
    try:
        action(run_id, *args)
    except VAEStudioError as error:
        st.session_state["_runs_message"] = ("error", str(error))


def _cancel_cluster_run(registry, run_id: str) -> None:
    """The cancel button of a SLURM run: its owner is checked again here, from its queue record."""
    owners = {run.run_id: run.owner for _, run in registry.slurm.active_runs()}
    if run_id not in owners or not access.can_control(owners[run_id]):
        st.session_state["_runs_message"] = ("error", "Only the person who queued a run can cancel it.")
        return
    try:
        registry.cancel(run_id)
    except VAEStudioError as error:
        st.session_state["_runs_message"] = ("error", str(error))


def cluster_queue_section(registry) -> None:
    """Runs sent to SLURM (VAE_STUDIO_EXECUTOR=slurm): where each is, in the scheduler's words."""
    runs = [(state, run) for state, run in registry.slurm.active_runs() if access.can_see(run.owner)]
    if not runs:
        return
    st.subheader("Queue on the cluster")
    st.caption("Each run is a SLURM job of its own; they train side by side as the cluster allows.")
    for state, run in runs:
        left, cancel = st.columns([10, 1], vertical_alignment="center")
        epochs = run.config.epochs
        left.markdown(f"{plain(run.name)} · {epochs} epoch{'' if epochs == 1 else 's'} · {plain(state.text())}")
        cancel.button(
            "",
            icon=":material/close:",
            key=f"cluster_cancel_{run.run_id}",
            help="Cancel this run (its SLURM job too)",
            on_click=_cancel_cluster_run,
            args=(registry, run.run_id),
            disabled=not access.can_control(run.owner),
        )


def queue_section() -> None:
    registry = session.existing_registry()
    if registry is not None and registry.slurm is not None:
        cluster_queue_section(registry)
        return
    waiting = [job for job in registry.queued() if access.can_see(job.owner)] if registry is not None else []
    if not waiting:
        return
    st.subheader("Queue")
    st.caption(
        "One run trains per device: on one CPU or GPU, two runs side by side would each take about twice "
        "as long, so the first result comes sooner one after the other. Queued runs start by themselves, "
        "in this order."
    )
    for job in waiting:
        position = registry.position(job.run_id)
        last = len(registry.queued(str(job.device)))  # positions count within the device's own queue
        busy = registry.busy_job(str(job.device))
        left, up, down, cancel = st.columns([8, 1, 1, 1], vertical_alignment="center")
        ahead = (
            ""
            if busy is None
            else (
                f", after {plain(busy.snapshot().name)}"
                if access.can_see(busy.owner)
                else ", after another person's run"
            )
        )
        fixed = not access.can_control(job.owner)
        epochs = job.config.epochs
        left.markdown(
            f"**{position}.** {plain(job.snapshot().name)} · {epochs} epoch{'' if epochs == 1 else 's'} "
            f"· {job.device}{ahead}"
        )
        up.button(
            "",
            icon=":material/arrow_upward:",
            key=f"queue_up_{job.run_id}",
            help="Earlier",
            on_click=_queue_action,
            args=(registry.move, job.run_id, -1),
            disabled=fixed or position == 1,
        )
        down.button(
            "",
            icon=":material/arrow_downward:",
            key=f"queue_down_{job.run_id}",
            help="Later",
            on_click=_queue_action,
            args=(registry.move, job.run_id, 1),
            disabled=fixed or position == last,
        )
        cancel.button(
            "",
            icon=":material/close:",
            key=f"queue_cancel_{job.run_id}",
            help="Cancel this run",
            on_click=_queue_action,
            args=(registry.cancel, job.run_id),
            disabled=fixed,
        )


# -- the table and the selected runs ---------------------------------------------------------------------


def filtered(rows: list[dict]) -> list[dict]:
    left, right = st.columns([2, 3])
    text = left.text_input("Filter by name", key="runs_filter", placeholder="e.g. z10").strip().lower()
    statuses = sorted({status_label(row) for row in rows})
    chosen = right.multiselect("Status", statuses, key="runs_status_filter", placeholder="every status")
    return [row for row in rows if text in row["display_name"].lower() and (not chosen or status_label(row) in chosen)]


def _forget_selection() -> None:
    """A new page of the table: its row numbers are other runs'."""
    st.session_state.pop(TABLE_KEY, None)


def table_page(rows: list[dict], sweeps: list) -> list[dict]:
    """The rows of the page of the table shown: newest first (a sweep's runs together, in its order),
    TABLE_PAGE_ROWS a page, so a folder of thousands of runs draws as fast as one of a hundred."""
    from vae_core.sweep import newest_first as newest_first_order

    by_id = {row["run_id"]: row for row in rows}
    newest_first = [by_id[run_id] for run_id in newest_first_order(list(by_id), sweeps)]
    page_count = max(1, -(-len(rows) // TABLE_PAGE_ROWS))
    if page_count == 1:
        return newest_first
    page = int(
        st.number_input(
            f"Page (of {page_count}, {TABLE_PAGE_ROWS} runs each, newest first)",
            1,
            page_count,
            1,
            key="runs_page",
            on_change=_forget_selection,
        )
    )
    return newest_first[(page - 1) * TABLE_PAGE_ROWS : page * TABLE_PAGE_ROWS]


def runs_table(rows: list[dict], sweeps: list) -> list[dict]:
    """The table (one page of it); returns the selected rows."""
    rows = table_page(rows, sweeps)
    event = st.dataframe(
        table_frame(rows),
        hide_index=True,
        width="stretch",
        column_config=COLUMNS,
        on_select="rerun",
        selection_mode="multi-row",
        key=TABLE_KEY,
    )
    chosen = [rows[index] for index in event.selection.rows if index < len(rows)]
    if len(chosen) == 1 and session.current_run_id() != chosen[0]["run_id"]:
        session.set_current_run(chosen[0]["run_id"])  # the one selected run opens on every page
    if not chosen:  # the session's run (a link's ?run=, a run opened on another page) is shown
        chosen = [row for row in rows if row["run_id"] == session.current_run_id()]
    return chosen


def differing_config(rows: list[dict]) -> None:
    """The hyperparameters of the selected runs side by side, the ones that differ highlighted."""
    keys = [key for key in SHOWN_CONFIG if any(key in row["config"] for row in rows)]
    table = pd.DataFrame(
        {row["display_name"]: [_shown(row["config"].get(key)) for key in keys] for row in rows}, index=keys
    )
    differs = table.nunique(axis=1) > 1

    def highlight(column):
        return [
            "background-color: rgba(255, 189, 69, 0.35); font-weight: 600" if differs[key] else ""
            for key in column.index
        ]

    differing = ", ".join(key for key in keys if differs[key]) or "none"
    st.markdown("**Hyperparameters**" + (f" · differing (highlighted): {plain(differing)}" if len(rows) > 1 else ""))
    st.dataframe(table.style.apply(highlight, axis=0), width="stretch")


def _shown(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def run_curves(row: dict) -> ComparedRun | None:
    """A row's curves, test metrics, steps per epoch and live changes: from its job, checkpoint or
    progress record (which keeps no events: a run another process trains shows no change marks)."""
    record, job = row["record"], row["job"]
    if job is not None and row["live"]:
        snap = job.snapshot()
        return ComparedRun(row["display_name"], snap.curves, snap.epoch_metrics, snap.steps_per_epoch, snap.events)
    if record is not None and record.checkpoint and not record.live:
        checkpoint = read_checkpoint(session.CHECKPOINT_DIR / f"{row['run_id']}{store.CHECKPOINT_SUFFIX}")
        history = checkpoint.state.history
        return ComparedRun(
            row["display_name"], history.curves(), tuple(history.epochs), history.steps_per_epoch, tuple(history.events)
        )
    if record is not None and record.progress is not None:
        return ComparedRun(
            row["display_name"],
            _progress_curves(record.progress),
            record.progress.epoch_metrics,
            record.progress.steps_per_epoch,
        )
    return None


def compare_section(rows: list[dict]) -> None:
    metric = st.segmented_control(
        "Curve",
        ["total", "recon", "kl"],
        default="total",
        key="runs_metric",
        format_func={"total": "total loss", "recon": "reconstruction", "kl": "KL"}.get,
    )
    drawn = []
    for row in rows:
        try:
            found = run_curves(row)
        except VAEStudioError as error:
            show_error(error)
            continue
        if found is not None:
            changes = row["record"].live_changes() if row["record"] is not None else ""
            drawn.append(found._replace(name=found.name + (f" ({changes})" if changes else "")))
    if not drawn:
        st.caption("No curves yet for the selected runs.")
        return
    compare_chart(drawn, metric or "total", key="compare")


def labels_form(row: dict) -> None:
    """Rename a run and edit its notes (kept in its checkpoint's metadata)."""
    job, record = row["job"], row["record"]
    training_here = job is not None and row["live"]
    elsewhere = record is not None and record.live and job is None
    with st.form(f"labels_{row['run_id']}", border=True):
        st.markdown("**Name and notes**")
        name = st.text_input("Name", row["name"], max_chars=80)
        notes = st.text_area(
            "Notes",
            row["notes"],
            max_chars=4000,
            disabled=training_here or elsewhere,
            help="Saved in the run's checkpoint. Editable once the run has ended." if training_here else None,
        )
        if elsewhere:
            st.caption(
                "This run is training in another process: rename it when it has ended (its next save "
                "would undo the change)."
            )
        if not st.form_submit_button("Save", disabled=elsewhere):
            return
    try:
        if job is not None:
            job.rename(store.checked_name(name))  # shown at once; a training run keeps it in its next save
        if not training_here:
            store.relabel_run(session.CHECKPOINT_DIR, row["run_id"], name=name, notes=notes)
    except VAEStudioError as error:
        show_error(error)
        return
    st.session_state["_runs_message"] = ("success", f"Saved the name and notes of {name}.")
    st.rerun()


def selected_section(chosen: list[dict]) -> None:
    if len(chosen) == 1:
        row = chosen[0]
        st.subheader(plain(row["display_name"]))
        links = st.columns(len(PAGES))
        for column, (page, title, icon) in zip(links, PAGES):
            column.page_link(page, label=f"Open in {title}", icon=icon, query_params={session.RUN_PARAM: row["run_id"]})
        if row["record"] is not None and row["record"].error:
            show_error(row["record"].error)
        elif row["why"]:
            st.info(plain(f"{status_label(row)}: {row['why']}"), icon=":material/info:")
    else:
        st.subheader(f"{len(chosen)} runs selected")
    compare_section(chosen)
    left, right = st.columns([3, 2], gap="large")
    with left:
        differing_config(chosen)
    with right:
        if len(chosen) == 1 and chosen[0]["status"] not in ("unreadable", "queued"):
            if access.can_control(chosen[0]["owner"]):
                labels_form(chosen[0])
            else:
                st.caption("A shared run of this server: read-only here.")


# -- sweeps ------------------------------------------------------------------------------------------------


def sweep_form(base_row: dict | None) -> None:
    """Widgets outside a form, so the number of runs shows as the values are typed, before queueing."""
    from vae_core.config import TrainConfig, limits
    from vae_core.data import DEFAULT_DATASET, describe_datasets
    from vae_core.sweep import APP_SWEEPABLE, parse_values, run_count_text, sweep_axes

    # The Train form's own defaults (its DEFAULTS and its dataset select), unless a run is selected.
    base = TrainConfig.from_dict(base_row["config"]) if base_row else TrainConfig(data=DEFAULT_DATASET)
    datasets = [row["name"] for row in describe_datasets() if row["available"]]
    datasets = datasets if base.data in datasets else [base.data, *datasets]
    base_key = base_row["run_id"] if base_row else "defaults"  # the fields start again on another base

    with st.expander("Sweep: queue runs over one or two hyperparameters", expanded=False, icon=":material/grid_view:"):
        c1, c2 = st.columns(2)
        fields = list(APP_SWEEPABLE)
        first = c1.selectbox("Hyperparameter", fields, index=fields.index("beta"), key="sweep_first")
        first_values = c1.text_input(
            "Values", "0.5 1 4", key="sweep_first_values", help="Separated by spaces or commas"
        )
        second = c2.selectbox("Second hyperparameter (optional)", ["none", *fields], index=0, key="sweep_second")
        second_values = c2.text_input(
            "Values ",
            "",
            key="sweep_second_values",
            disabled=second == "none",
            placeholder="e.g. 2 10" if second != "none" else "choose a hyperparameter first",
        )
        c3, c4 = st.columns(2)
        data = c3.selectbox(
            "Dataset",
            datasets,
            index=datasets.index(base.data),
            key=f"sweep_data_{base_key}",
            format_func=lambda source: Path(source).name,
        )  # an upload's path names private folders
        most = limits().max_epochs
        epochs = c4.number_input(
            "Epochs",
            1,
            most,
            min(base.epochs, most),
            key=f"sweep_epochs_{base_key}",
            help=f"Of every run, unless epochs is a swept hyperparameter. At most {most:,} (VAE_STUDIO_MAX_EPOCHS).",
        )
        chosen = [(first, first_values)] + ([(second, second_values)] if second != "none" else [])
        try:
            axes = sweep_axes(chosen)
            count = run_count_text([len(parse_values(name, text)) for name, text in axes.items()])
        except VAEStudioError as error:
            count = f"not yet a sweep: {error}"
        rest = base.replace(data=data, epochs=int(epochs))
        st.caption(plain(f"{count} · {_base_text(base_row, rest, dict(chosen))}."))
        if not st.button("Queue the sweep", type="primary", key="sweep_queue"):
            return
        try:
            queue_sweep(rest, sweep_axes(chosen))
        except VAEStudioError as error:
            show_error(error)
            return
        st.rerun()


def _base_text(base_row: dict | None, config, axes: dict) -> str:
    """What the runs of a sweep share, said exactly: its values, then where they come from."""
    origin = (
        f"the config of the selected run, {base_row['display_name']}," if base_row else "the Train page's defaults,"
    )
    shown = {
        "model": config.model,
        "hidden": "-".join(map(str, config.hidden)),
        "latent_dim": config.latent_dim,
        "beta": f"{config.beta:g}",
        "lr": f"{config.lr:g}",
        "batch_size": config.batch_size,
        "epochs": config.epochs,
        "recon": config.recon,
        "kl_anneal": config.kl_anneal,
        "free_bits": f"{config.free_bits:g}",
        "seed": config.seed,
        "data": Path(config.data).name,
        "device": config.device,
    }
    kept = ", ".join(f"{name} {value}" for name, value in shown.items() if name not in axes)
    swept = ", ".join(name for name in shown if name in axes)
    return (
        f"each run: {kept}"
        + (f"; {swept} swept" if swept else "")
        + f" — {origin} with the dataset and epochs chosen here"
    )


def queue_sweep(base, axes: dict[str, str]) -> None:
    """Check every run of the sweep (all or nothing), queue them in sweep order, record the sweep, and
    keep a confirmation that stays until the next sweep or until it is dismissed."""
    from vae_core.sweep import new_sweep_record, runs_word, save_sweep, sweep_configs
    from vae_core.trainer import check_trainable

    configs = sweep_configs(base, axes)
    datasets = [session.run_data(config) for config in configs]
    for config, dataset in zip(configs, datasets):  # none queued if one may not be
        check_trainable(config, dataset)
    registry, owner = session.registry(), access.current_owner()
    jobs = [registry.submit(config, dataset, owner=owner) for config, dataset in zip(configs, datasets)]
    sweep = new_sweep_record(configs, list(axes), [job.run_id for job in jobs], owner)
    save_sweep(session.CHECKPOINT_DIR, sweep)
    st.session_state[SWEEP_QUEUED_KEY] = (
        f"Queued {runs_word(len(jobs))} ({sweep.axes_text()}): "
        + ", ".join(job.snapshot().name for job in jobs)
        + ". They start by themselves, one after the other, in the Queue's order; the table lists them "
        "newest first, in sweep order, and Sweeps compares their results as they finish."
    )
    st.session_state[SWEEP_PICKED_KEY] = sweep.sweep_id


SWEEP_QUEUED_KEY = "_sweep_queued"
SWEEP_PICKED_KEY = "sweep_summary_picked"


def sweep_confirmation() -> None:
    """The last sweep queued, said until the next one or until dismissed: the page reruns as soon as
    its runs appear, which would wipe a one-off message."""
    text = st.session_state.get(SWEEP_QUEUED_KEY)
    if not text:
        return
    left, right = st.columns([12, 1], vertical_alignment="center")
    left.success(plain(text), icon=":material/check_circle:")
    right.button(
        "",
        icon=":material/close:",
        key="sweep_queued_dismiss",
        help="Dismiss",
        on_click=lambda: st.session_state.pop(SWEEP_QUEUED_KEY, None),
    )


def visible_sweeps() -> list:
    """The sweeps of the folder this session may see, newest first."""
    from vae_core.sweep import list_sweeps

    return [sweep for sweep in list_sweeps(session.CHECKPOINT_DIR) if access.can_see(sweep.owner)]


def sweeps_section(sweeps: list, rows: list[dict]) -> None:
    """A sweep's test metrics against its swept values, as a chart and a table: finished or not."""
    from ui.runs import sweep_figure, sweep_parallel_figure
    from vae_core.sweep import SUMMARY_METRICS, runs_word, sweep_summary

    if not sweeps:
        return
    st.subheader("Sweeps")
    by_id = {sweep.sweep_id: sweep for sweep in sweeps}
    if st.session_state.get(SWEEP_PICKED_KEY) not in by_id:
        st.session_state[SWEEP_PICKED_KEY] = sweeps[0].sweep_id
    picked = st.selectbox(
        "Sweep",
        list(by_id),
        key=SWEEP_PICKED_KEY,
        format_func=lambda sweep_id: (
            f"{dt.datetime.fromtimestamp(by_id[sweep_id].created):%Y-%m-%d %H:%M} · {by_id[sweep_id].label()}"
        ),
    )
    sweep = by_id[picked]
    names = {row["run_id"]: row["display_name"] for row in rows}
    summary = sweep_summary(sweep, {row["run_id"]: row for row in rows})
    finished = sum(row["status"] == "finished" for row in summary)
    # The line chart draws two swept fields at most: a sweep of more is shown as parallel coordinates only.
    views = ["Metric by value", "Parallel coordinates"] if len(sweep.fields) <= 2 else ["Parallel coordinates"]
    view = (
        views[0]
        if len(views) == 1
        else st.segmented_control("View", views, default=views[0], key="sweep_view", required=True)
    )
    if view == "Parallel coordinates":
        st.plotly_chart(sweep_parallel_figure(sweep, summary), key="sweep_parallel", config={"displaylogo": False})
        st.caption(
            f"{finished} of {runs_word(len(summary))} finished. A line per run with a finished epoch: its "
            "swept values, then the test metrics of its last finished epoch in nats per image, coloured by "
            "its test −ELBO (lower is better). Drag along an axis to keep the runs in a range."
        )
    else:
        metric = (
            st.segmented_control(
                "Metric", list(SUMMARY_METRICS), default="test −ELBO", key="sweep_metric", required=True
            )
            or "test −ELBO"
        )
        st.plotly_chart(sweep_figure(sweep, summary, metric), key="sweep_chart", config={"displaylogo": False})
        st.caption(
            f"{finished} of {runs_word(len(summary))} finished. The test metrics of each run's last finished "
            "epoch, in nats per image: filled dots finished runs, open dots runs not finished (training, "
            "stopped or failed); a run with no finished epoch has no dot yet."
        )
    frame = pd.DataFrame(
        [
            {
                "name": names.get(row["run_id"], row["run_id"]),
                **{field_name: row[field_name] for field_name in sweep.fields},
                "status": row["status"],
                "epoch": f"{row['epoch']}/{row['epochs']}" if row["epoch"] is not None else "",
                **{label: row[label] for label in SUMMARY_METRICS},
            }
            for row in summary
        ]
    )
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        key="sweep_table",
        column_config={label: st.column_config.NumberColumn(label, format="%.2f") for label in SUMMARY_METRICS},
    )


# -- the page ----------------------------------------------------------------------------------------------

message = st.session_state.pop("_runs_message", None)
if message:
    (show_error if message[0] == "error" else lambda text: st.success(plain(text)))(message[1])
sweep_confirmation()

all_rows = gather_runs()
st.session_state["_runs_seen"] = _seen(all_rows)
st.fragment(live_panel, run_every=LIVE_REFRESH_S if _seen(all_rows)[1] else FOLDER_WATCH_S)()
queue_section()

if not all_rows:
    st.info(
        "No runs yet. Train one on the **Train** page, queue a sweep below, or run `vae-studio train` "
        "(it writes into this app's checkpoints folder)."
    )
    sweep_form(None)
    st.stop()

all_sweeps = visible_sweeps()
st.subheader("All runs")
shown = filtered(all_rows)
selected = runs_table(shown, all_sweeps)
refresh, note = wrapping_columns("runs_refresh", [1, 5], flexible=1, vertical_alignment="center")
refresh.button("Refresh", icon=":material/refresh:", help="Look at the checkpoints folder again")
note.caption(
    f"{len(shown)} of {len(all_rows)} runs · newest first, a sweep's runs in its order · sort by "
    f"clicking a column · folder `{plain(session.CHECKPOINT_DIR.name)}`"
)
if selected:
    selected_section(selected)
else:
    st.caption("Select one or more rows to compare their curves and hyperparameters, rename a run or add notes.")
sweeps_section(all_sweeps, all_rows)
sweep_form(selected[0] if len(selected) == 1 else None)
