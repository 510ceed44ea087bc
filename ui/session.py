"""Server-wide resources and per-session state: the job registry, cached datasets, the run a
session is looking at, and each session's private folder for uploads."""

from __future__ import annotations

import os
import runpy
import secrets
import shutil
import tempfile
import threading
from pathlib import Path

import streamlit as st
import torch

from vae_core.data import DEFAULT_DATASET, load_dataset
from vae_core.projection import warm_up_umap
from vae_core.registry import JobRegistry
from vae_core.trainer import make_adam

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_DIR = Path(os.environ.get("VAE_STUDIO_CHECKPOINTS", ROOT / "checkpoints"))
UPLOAD_ROOT = Path(tempfile.gettempdir()) / "vae_studio_uploads"
RUN_PARAM = "run"


@st.cache_resource
def registry() -> JobRegistry:
    """One registry per server process, shared by every browser session, so jobs outlive reloads."""
    CHECKPOINT_DIR.mkdir(parents=True, exist_ok=True)
    return JobRegistry(CHECKPOINT_DIR)


_warm_up_lock = threading.Lock()
_warm_up_thread: threading.Thread | None = None


def _warm_up() -> None:
    # The first optimiser a process builds imports torch._dynamo (~2.5 s): pay it before Start does.
    make_adam(torch.nn.Linear(1, 1), 1e-3)
    load_dataset(DEFAULT_DATASET)  # parsed once, so the first Start does not wait for it
    warm_up_umap()


def start_background_warm_ups() -> None:
    """Once per process, in the background: load the default dataset, and compile (or load from
    numba's disk cache) UMAP's kernels so a person's first UMAP projection does not wait for the
    JIT. VAE_STUDIO_WARM_UP=0 turns it off (the AppTests, which share one process between many
    app runs)."""
    global _warm_up_thread
    if os.environ.get("VAE_STUDIO_WARM_UP", "1") == "0":
        return
    with _warm_up_lock:
        if _warm_up_thread is None:
            _warm_up_thread = threading.Thread(target=_warm_up, name="warm-up", daemon=True)
            _warm_up_thread.start()


@st.cache_resource(max_entries=8, show_spinner="Loading the dataset…")
def dataset(source: str, image_size: int | None, test_fraction: float, seed: int):
    """Datasets are loaded once per server and shared; they are immutable tensors."""
    return load_dataset(source, image_size=image_size, test_fraction=test_fraction, seed=seed)


def require_router() -> None:
    """Called first by every page. Because a `pages/` folder exists, Streamlit runs a page file on
    its own, without app.py's st.navigation, in its legacy multipage mode: for the first request a
    fresh server gets on a deep link (/latent...), and in every AppTest run. Leave that mode and run
    the page through the router, in this same run (a rerun would drop a button's click)."""
    from streamlit.runtime.pages_manager import PagesManager
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        runpy.run_path(str(ROOT / "app.py"), run_name="__main__")
        st.stop()


def current_run_id() -> str | None:
    """The run this session looks at: the URL's ?run= wins, so a reload or a shared link finds it."""
    run_id = st.query_params.get(RUN_PARAM) or st.session_state.get(RUN_PARAM)
    if run_id and st.session_state.get(RUN_PARAM) != run_id:
        st.session_state[RUN_PARAM] = run_id
    return run_id


def set_current_run(run_id: str | None) -> None:
    st.session_state[RUN_PARAM] = run_id
    if run_id:
        st.query_params[RUN_PARAM] = run_id
    elif RUN_PARAM in st.query_params:
        del st.query_params[RUN_PARAM]


def private_dir() -> Path:
    """This browser session's own folder for uploads. Its name is a random token kept only in the
    session, so one session cannot name, read or delete another's files."""
    token = st.session_state.get("_upload_token")
    if token is None:
        token = st.session_state["_upload_token"] = secrets.token_hex(16)
    folder = UPLOAD_ROOT / token
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def save_upload(upload, subfolder: str) -> Path:
    """Write an uploaded file into this session's folder under a sanitised name."""
    safe_name = Path(upload.name).name.replace(os.sep, "_") or "upload"
    folder = private_dir() / subfolder
    folder.mkdir(exist_ok=True)
    target = folder / safe_name
    with open(target, "wb") as handle:
        shutil.copyfileobj(upload, handle)
    return target
