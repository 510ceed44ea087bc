"""The sidebar of every page: the runs training now, each a link to its live panel.

So a new tab (or another person on the same machine) sees at once that the device is in use."""

from __future__ import annotations

import streamlit as st

from . import access, session
from .widgets import plain

TRAIN_PAGE = "app_pages/train.py"


BADGE_REFRESH_S = 2.0  # the epoch it says moves on while the page stays


def training_badge() -> None:
    """One link per active run, in the order they train and then start: 'Training: <run name> · epoch
    3/10' or 'Queued: <run name> · 10 epochs' (the id in its tooltip), opening the Train page on it,
    kept up to date by a fragment of its own while runs are active: this server's
    jobs, and the runs other processes train in the folder (the CLI, torchrun, a run process whose
    server restarted). Served, another person's run is only said to hold the device, without its name
    or a link."""
    if _active_runs():
        with st.sidebar:
            st.fragment(_badges, run_every=BADGE_REFRESH_S)()


def _active_runs() -> list[tuple]:
    """(run id, name, status, epoch, epochs, device, owner) of each run active now."""
    from vae_core.runs import live_runs

    registry = session.existing_registry()
    runs = []
    # The training ones first, then the queued ones in the queue's order (the Runs page's), which
    # moving a run up or down changes: the order they were submitted in is not the order they start.
    jobs = registry.jobs() if registry is not None else []
    queued = registry.queued() if registry is not None else []
    queued_ids = {job.run_id for job in queued}
    for job in [job for job in jobs if job.run_id not in queued_ids] + queued:
        snap = job.snapshot()
        if snap.active:
            runs.append((job.run_id, snap.name, snap.status, snap.epoch, snap.epochs, snap.device, job.owner))
    known = {run[0] for run in runs}
    for record in live_runs(session.CHECKPOINT_DIR):
        if record.run_id not in known:
            runs.append(
                (
                    record.run_id,
                    record.display_name,
                    record.status,
                    record.epoch,
                    record.epochs,
                    str(record.config.get("device", "cpu")),
                    record.owner,
                )
            )
    return runs


def _badges() -> None:
    for run_id, name, status, epoch, epochs, device, owner in _active_runs():
        doing = {"running": "Training", "queued": "Queued"}.get(status, f"Training ({status})")
        if not access.can_see(owner):
            if status != "queued":
                st.caption(f"{doing}: another person's run on {device}")
            continue
        where = f"{epochs} epoch{'' if epochs == 1 else 's'}" if status == "queued" else f"epoch {epoch}/{epochs}"
        st.page_link(
            TRAIN_PAGE,
            label=f"{doing}: {plain(name)} · {where}",
            icon=":material/model_training:",
            query_params={session.RUN_PARAM: run_id},
            help=f"run `{run_id}`",
            width="stretch",
        )
