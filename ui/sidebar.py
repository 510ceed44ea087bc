"""What the sidebar shows on every page: the runs training now, each a link to its live panel, so a
new tab (or another person on the same machine) sees at once that the device is in use."""

from __future__ import annotations

import streamlit as st

from . import access, session
from .widgets import plain

TRAIN_PAGE = "app_pages/train.py"


BADGE_REFRESH_S = 2.0  # the epoch it says moves on while the page stays


def training_badge() -> None:
    """One link per active run: 'Training: <run name> · epoch 3/10' (the id in its tooltip), opening the
    Train page on it, kept up to date by a fragment of its own while runs are active. Served, another
    person's run is only said to hold the device, without its name or a link."""
    registry = session.existing_registry()
    if registry is None or not any(job.snapshot().active for job in registry.jobs()):
        return  # no registry in this process yet, or nothing active: nothing to show or to refresh
    with st.sidebar:
        st.fragment(_badges, run_every=BADGE_REFRESH_S)()


def _badges() -> None:
    for job in session.registry().jobs():
        snap = job.snapshot()
        if not snap.active:
            continue
        doing = {"running": "Training", "queued": "Queued"}.get(snap.status, f"Training ({snap.status})")
        if not access.can_see(job.owner):
            if snap.status != "queued":
                st.caption(f"{doing}: another person's run on {snap.device}")
            continue
        st.page_link(TRAIN_PAGE, label=f"{doing}: {plain(snap.name)} · epoch {snap.epoch}/{snap.epochs}",
                     icon=":material/model_training:", query_params={session.RUN_PARAM: job.run_id},
                     help=f"run `{job.run_id}`", width="stretch")
