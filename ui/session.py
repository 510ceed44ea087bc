"""Server-wide resources and per-session state, held in Streamlit's caches and session state.

The job registry, cached datasets, the run a session is looking at (kept in the URL as ?run=), and each
session's private folder for uploads.

Nothing heavy is imported at module level: torch, the engine and the datasets are imported by the
functions that need them, so the first page a fresh server draws is not held up by them. A
background warm-up imports them meanwhile (see `start_background_warm_ups`)."""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import streamlit as st

from vae_core.runs import default_checkpoint_dir

from .identity import current_owner, served

CHECKPOINT_DIR = default_checkpoint_dir()  # the folder the CLI writes to and lists by default too
RUN_PARAM = "run"

_registry_made = threading.Event()


EXECUTOR_ENV = "VAE_STUDIO_EXECUTOR"  # local (the default): each run in a process of its own; slurm; thread


# No spinner: the warm-up thread calls these outside any script run, where a spinner has no page to
# show in (Streamlit logs "missing ScriptRunContext" for it).
@st.cache_resource(show_spinner=False)
def registry():
    """One registry per server process, shared by every browser session, so jobs outlive reloads.
    Runs train in processes of their own and queue in the checkpoints folder (vae_core/registry.py);
    VAE_STUDIO_EXECUTOR=slurm sends them to a SLURM cluster, =thread trains them on this server's
    threads (the AppTests); vae_core/slurm_settings.executor_setting reads the setting."""
    from vae_core.registry import JobRegistry

    CHECKPOINT_DIR.mkdir(parents=True, exist_ok=True)
    made = JobRegistry(CHECKPOINT_DIR, executor=os.environ.get(EXECUTOR_ENV, "process"), upload_root=upload_root())
    _registry_made.set()
    return made


def existing_registry():
    """The registry if this process has made one, else None: a page that only wants to show running
    jobs need not import the engine on a fresh server, where no job can be running yet."""
    return registry() if _registry_made.is_set() else None


_warm_up_lock = threading.Lock()
_warm_up_thread: threading.Thread | None = None
_engine_warm = threading.Event()  # set once the warm-up has readied what Start needs (or failed trying)
_devices_found: tuple[str, ...] = ()  # what the warm-up found; listing devices needs torch
ENGINE_WARM_UP_TIMEOUT_S = 120.0
WARM_UP_LOG_PREFIX = "VAE Studio: ready to train after a warm-up of"
IDLE_WARM_UP_AFTER_S = 15.0
RUN_PROCESS_WAIT_S = 10.0  # at most: a run process slower than this to warm up is not waited for
FIRST_POINTS_SETTLE_S = 1.0


def _warm_up() -> None:
    try:
        _warm_up_engine()
    finally:
        _engine_warm.set()  # even after an error: Start then loads what it needs itself, and says what failed
    # What the first Start does not need waits until the CPU has been idle a while (nothing trained
    # for IDLE_WARM_UP_AFTER_S in a row): compiling UMAP's kernels takes a core and the GIL for
    # seconds (2 s of CPU with numba's disk cache warm), and pandas (for the Runs page's table) a few
    # tenths. A run's steps,
    # or the first steps of a person who just opened the app, would share the CPU with them.
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < IDLE_WARM_UP_AFTER_S:
        if _training():
            idle_since = time.monotonic()
        time.sleep(1.0)
    import pandas  # noqa: F401

    from vae_core.projection import warm_up_projections

    warm_up_projections()


def _training() -> bool:
    return any(job.snapshot().active for job in registry().jobs())


def _warm_up_engine() -> tuple:
    """Everything the first Start needs in this server: torch and the engine, the devices and the
    default dataset (for the pages; the run process loads its own copy). The run process is started
    first and readies itself meanwhile (vae_core/worker.py: torch, data, the first optimiser, the
    thread count); it also checks each new run, so Start needs none of this here. This server imports
    torch once the run process is warm and a run started meanwhile has drawn its first points.
    Prints how long each took (one line in the server's log; bench/bench_startup.py reads it) and
    returns the default run's (config, dataset, device)."""
    global _devices_found
    took = {}  # phase -> (wall seconds, this thread's CPU seconds): on a busy machine they differ
    began = phase = time.perf_counter()
    cpu = time.thread_time()

    def done(name: str) -> None:
        nonlocal phase, cpu
        took[name] = (time.perf_counter() - phase, time.thread_time() - cpu)
        phase, cpu = time.perf_counter(), time.thread_time()

    if registry().executor == "process":  # VAE_STUDIO_EXECUTOR local (the default) or process
        registry().warm_up()  # first: the first run's start-up is the run process's
        # Then torch here, after the run process's warm-up and the first points of a run started
        # meanwhile: on 2 cores this import slowed them both. Measured on a fresh server (bench_startup's
        # cold start, Start pressed once the form is usable): health -> first point 3.08 s (median of 4
        # rounds) against 3.77 s and 3.54 s (medians of 5 and 4) when this import followed the run
        # process's torch and Start waited for it.
        registry().wait_for_run_process(RUN_PROCESS_WAIT_S)
        _wait_for_first_points(RUN_PROCESS_WAIT_S)
        done("the run process's warm-up")
    import torch  # noqa: F401

    done("torch")
    from vae_core.config import TrainConfig
    from vae_core.data import DEFAULT_DATASET, load_dataset
    from vae_core.device import available_devices, resolve_device

    _devices_found = tuple(available_devices())
    done("engine")
    dataset = load_dataset(DEFAULT_DATASET)
    done("dataset")
    default_run = TrainConfig()
    print(
        f"{WARM_UP_LOG_PREFIX} {time.perf_counter() - began:.2f} s: "
        + ", ".join(f"{name} {wall:.2f} s (CPU {busy:.2f} s)" for name, (wall, busy) in took.items()),
        file=sys.stderr,
        flush=True,
    )
    return default_run, dataset, resolve_device(default_run.device)


def _wait_for_first_points(timeout_s: float) -> None:
    """While a run started on this fresh server waits for its first points, and FIRST_POINTS_SETTLE_S
    after they came: the page that draws them, and the browser, need the CPU and the GIL then."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(
        job.snapshot().active and job.snapshot().step == 0 for job in registry().jobs()
    ):
        time.sleep(0.05)
    if registry().jobs():
        time.sleep(FIRST_POINTS_SETTLE_S)


def engine_warming_up() -> bool:
    """True while the background warm-up is still readying what Start needs."""
    return _warm_up_thread is not None and not _engine_warm.is_set()


def wait_for_engine_warm_up() -> None:
    """Start pressed before the warm-up ended: wait for it, rather than importing torch and parsing the
    dataset a second time beside it (two threads doing the same work at once on a busy CPU)."""
    if _warm_up_thread is not None:
        _engine_warm.wait(ENGINE_WARM_UP_TIMEOUT_S)


def device_choices() -> list[str]:
    """The Train form's devices without importing torch: "auto" (resolved when the run starts), then
    those the warm-up found, or just the CPU, always present, until it has looked."""
    return ["auto", *(_devices_found or ("cpu",))]


def start_background_warm_ups() -> None:
    """Once per process, in the background: import torch and the engine, load the default dataset,
    and compile (or load from numba's disk cache) UMAP's kernels, so neither the first Start nor the
    first UMAP projection waits for them. VAE_STUDIO_WARM_UP=0 turns it off (the AppTests, which
    share one process between many app runs)."""
    global _warm_up_thread
    if os.environ.get("VAE_STUDIO_WARM_UP", "1") == "0":
        return
    with _warm_up_lock:
        if _warm_up_thread is None:
            _warm_up_thread = threading.Thread(target=_warm_up, name="warm-up", daemon=True)
            _warm_up_thread.start()


def run_data(config):
    """The data a run config names, loaded once per server and shared (immutable tensors).

    `config.data` may come from a file anyone made (an uploaded checkpoint): it may name a built-in
    dataset or a file uploaded to this server process, nothing else (DataError otherwise), so a
    crafted checkpoint cannot make the server read, list or quote its own files. Local model: one
    person uses this server, so every upload of this process is theirs; served (ui/identity.py): only
    this person's own uploads."""
    from vae_core.data import load_run_data

    # vae_core's own cache shares one copy per dataset between sessions within a memory budget; a
    # Streamlit cache around it would pin evicted datasets beyond that budget.
    with st.spinner("Loading the dataset…"):
        return load_run_data(config, [data_root()])


def data_root() -> Path:
    """The folder whose files this person's runs may read as their data (besides the built-in
    datasets): locally every upload of this server process, served only this person's own."""
    return private_dir() if served() else upload_root()


# -- the run this session looks at ------------------------------------------------------------------


def _valid_run_id(value) -> str | None:
    from vae_core.run_ids import is_valid_run_id

    return value if is_valid_run_id(value) else None


def current_run_id() -> str | None:
    """The run this session looks at: the URL's ?run= wins, so a reload or a shared link finds it.
    A value that is not a run id (a crafted link) is ignored, never shown."""
    run_id = _valid_run_id(st.query_params.get(RUN_PARAM)) or st.session_state.get(RUN_PARAM)
    if run_id and st.session_state.get(RUN_PARAM) != run_id:
        st.session_state[RUN_PARAM] = run_id
    return run_id


def set_current_run(run_id: str | None) -> None:
    st.session_state[RUN_PARAM] = run_id
    if run_id:
        st.query_params[RUN_PARAM] = run_id
    elif RUN_PARAM in st.query_params:
        del st.query_params[RUN_PARAM]


def keep_run_in_url() -> None:
    """Called by the router on every run. Streamlit clears the query parameters when the sidebar
    switches page; putting ?run= back keeps a reload or a copied link on the same run."""
    run_id = current_run_id()
    if run_id:
        # Set even when the script already sees it: a link to the page the tab is on passes its
        # query to the script but leaves the address bar as it was; setting it updates the bar.
        st.query_params[RUN_PARAM] = run_id
    elif not run_id and RUN_PARAM in st.query_params:
        del st.query_params[RUN_PARAM]  # not a run id: drop it from the URL too


# -- uploads -----------------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def upload_root() -> Path:
    """This server process's folder for uploads: made by mkdtemp (a fresh unpredictable name, owned
    by us, mode 0700), never a shared fixed path another local user could create first. Removed
    when the process exits."""
    folder = Path(tempfile.mkdtemp(prefix="vae_studio_uploads_"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def private_dir() -> Path:
    """The folder for this person's uploads. Served (ui/identity.py): one per signed-in person, named
    by their owner id (a hash of their identity, never the identity itself), so their uploads follow
    them to every tab and no one else's run may read them. Locally: one per browser session, named by
    a random token kept only in the session."""
    token = current_owner() or st.session_state.get("_upload_token")  # no owner: local
    if token is None:
        token = st.session_state["_upload_token"] = secrets.token_hex(16)
    folder = upload_root() / token
    folder.mkdir(exist_ok=True, mode=0o700)
    return folder


def save_upload(upload, subfolder: str) -> Path:
    """Write an uploaded file into this session's folder under a sanitised name."""
    folder = private_dir() / subfolder
    folder.mkdir(exist_ok=True, mode=0o700)
    from vae_core.data import safe_upload_name

    target = folder / safe_upload_name(upload.name)
    with open(target, "wb") as handle:
        shutil.copyfileobj(upload, handle)
    return target
