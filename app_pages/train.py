"""Train: hyperparameters in a form, the run live beside them."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
import streamlit as st

from ui import access, session
from ui.widgets import STATUS_ICONS, duration, image_grid, nats, plain, scroll_into_view, show_error
from vae_core.config import (
    ACTIVE_KL_NATS,
    DEFAULT_HIDDEN,
    KL_ANNEALING,
    MODEL_DESCRIPTIONS,
    MODEL_NAMES,
    RECON_LOSSES,
    VARIATIONAL_MODELS,
    TrainConfig,
)
from vae_core.errors import VAEStudioError

# On a fresh server this page draws before torch has loaded (the warm-up loads it in the background):
# the form needs only torch-free modules (the dataset catalogue, config.py, the devices the warm-up
# found); what shows a run (charts, the engine) is imported by the functions that draw one.

LR_CHOICES = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 1.0, 10.0]
BATCH_CHOICES = [16, 32, 64, 128, 256, 512, 1024]
THREAD_CHOICES = [None, *range(1, (os.cpu_count() or 1) + 1)]  # None: timed when the run starts
DEFAULTS = TrainConfig()
FIRST_POINTS_WAIT_S = 3.0  # at most, after Start: a run process still warming up on a fresh server
ACTIVE_BEFORE_POINTS = ("queued", "starting", "running")
AE_NOTE = (
    "An autoencoder has no prior and no KL term, so it has no ELBO either: its loss is the reconstruction "
    "error alone, and that is what is shown."
)

st.title("Train a VAE")
st.caption(
    "The defaults are the study note's model: MLP 784-256-128 → z=10 → 128-256-784, Adam lr 1e-3, "
    "summed reconstruction + KL, on 5,000 real MNIST digits. One click trains it."
)


def _parse_hidden(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.replace(",", " ").split())
    except ValueError:
        raise VAEStudioError(f"hidden sizes must be whole numbers separated by spaces, not {text!r}") from None
    if not widths:
        raise VAEStudioError("give at least one hidden size, e.g. 256 128")
    return widths


def hyperparameter_form() -> Callable[[], None] | None:
    """Sliders in a form: moving one changes nothing until Start is pressed. Returns what Start asks
    for (a call that starts the run), or None; the page makes the call once the rest is drawn."""
    from vae_core.data import DEFAULT_DATASET, describe_datasets

    datasets = describe_datasets()
    names = [d["name"] for d in datasets]
    labels = {d["name"]: f"{d['name']}" + ("" if d["available"] else " (not installed)") for d in datasets}
    with st.form("hyperparameters", border=True):
        # Start at the top as well: on a first visit the defaults are the run to try, and the form is
        # taller than a window (at 1500x1000 its last button was below the fold).
        submitted_at_top = st.form_submit_button(
            "Start training", type="primary", width="stretch", key="start_top", help="With the settings below"
        )
        above = st.container()  # errors of a Start pressed here show here
        st.subheader("Data")
        source = st.selectbox(
            "Dataset",
            names,
            index=names.index(DEFAULT_DATASET),
            format_func=labels.get,
            help="Bundled data needs no download.",
        )
        upload = st.file_uploader(
            "Or your own file, used instead of the dataset above when chosen",
            type=["npz", "zip", "csv"],
            help=".npz (x, y), .zip of images (one folder per class), or .csv "
            "(pixels + a label column). Remove it to train on the dataset above.",
        )
        image_size = st.select_slider(
            "Resize your images to",
            options=[None, 16, 28, 32, 48, 64],
            value=None,
            format_func=lambda v: "native size" if v is None else f"{v}×{v}",
        )
        st.subheader("Model")
        model = st.selectbox(
            "Model",
            MODEL_NAMES,
            format_func=lambda m: f"{m} — {MODEL_DESCRIPTIONS[m]}",
            help="ae has no sampling and no KL: see why it cannot generate. cvae is "
            "conditioned on the label, to draw a chosen class.",
        )
        hidden = st.text_input(
            "Hidden sizes",
            "256 128",
            help="Encoder widths; the decoder mirrors them "
            "(mlp/ae/cvae). For conv: channels, e.g. 32 64. '400' with latent 20 is "
            "pytorch/examples' model.",
        )
        latent_dim = st.slider(
            "Latent size",
            2,
            128,
            DEFAULTS.latent_dim,
            help="2 shows the latent space directly and enables the manifold grid.",
        )
        st.subheader("Objective")
        recon = st.segmented_control(
            "Reconstruction loss",
            RECON_LOSSES,
            default=DEFAULTS.recon,
            required=True,
            format_func={"bce": "bce (Bernoulli)", "mse": "mse (Gaussian)"}.get,
            help="bce: the binary cross-entropy of pixels in [0, 1], a Bernoulli likelihood. "
            "mse: the note's Gaussian likelihood with variance 1 (half the summed "
            "squared error, plus a constant).",
        )
        beta = st.slider(
            "β (KL weight)",
            0.0,
            10.0,
            DEFAULTS.beta,
            0.1,
            help="β>1 presses the posterior to the prior (smoother, blurrier); β<1 the opposite.",
        )
        kl_anneal = st.segmented_control(
            "KL annealing",
            KL_ANNEALING,
            default=DEFAULTS.kl_anneal,
            required=True,
            help="Warm β up from 0 so the decoder learns to use z before the KL bites.",
        )
        warmup = st.slider("Annealing period (epochs)", 1.0, 20.0, DEFAULTS.kl_warmup_epochs, 0.5)
        free_bits = st.slider(
            "Free bits (nats per dimension)",
            0.0,
            2.0,
            0.0,
            0.05,
            help="Each dimension's KL is counted as at least this much, so collapsing it to the prior gains nothing.",
        )
        st.subheader("Optimisation")
        lr = st.select_slider("Learning rate", LR_CHOICES, value=DEFAULTS.lr, format_func=lambda v: f"{v:g}")
        batch_size = st.select_slider("Batch size", BATCH_CHOICES, value=DEFAULTS.batch_size)
        epochs = st.slider("Epochs", 1, 200, DEFAULTS.epochs)
        seed = st.number_input(
            "Seed", 0, 2**31 - 1, DEFAULTS.seed, help="Same seed and same CPU threads, same numbers."
        )
        device_column, threads_column = st.columns(2)
        # Keyed, so a choice survives the list growing when the warm-up finds a GPU.
        device = device_column.selectbox(
            "Device",
            session.device_choices(),
            key="train_device",
            help="auto: the GPU when there is one, else the CPU.",
        )
        threads = threads_column.selectbox(
            "CPU threads",
            THREAD_CHOICES,
            format_func=lambda n: "auto" if n is None else str(n),
            help="auto: a copy of the run's training step is timed on all cores and on one core fewer "
            "(the other left to this app), once per kind of model and batch size, and the faster "
            "count is used. The count is kept with the run: the sums a step computes depend on it, "
            "so a run repeats bit for bit with the same seed and count.",
        )
        submitted_at_bottom = st.form_submit_button("Start training", type="primary", width="stretch")
        below = st.container()  # errors show here, under the button the user just pressed
    if not (submitted_at_top or submitted_at_bottom):
        return None
    beside_start = above if submitted_at_top else below
    values = dict(
        model=model,
        latent_dim=latent_dim,
        recon=recon,
        beta=beta,
        kl_anneal=kl_anneal,
        kl_warmup_epochs=warmup,
        free_bits=free_bits,
        lr=lr,
        batch_size=batch_size,
        epochs=epochs,
        seed=int(seed),
        device=device,
        threads=threads,
    )
    return lambda: start_run(source, upload, image_size, values, hidden, beside_start)


def start_run(source: str, upload, image_size, values: dict, hidden_text: str, messages) -> None:
    try:
        if upload is not None:
            source = str(session.save_upload(upload, "data"))  # a chosen file wins over the dataset select
        hidden = _parse_hidden(hidden_text)
        if hidden == DEFAULT_HIDDEN["mlp"]:
            hidden = None  # the form's default: each model's own widths (config.DEFAULT_HIDDEN)
        config = TrainConfig(data=source, image_size=image_size, hidden=hidden, **values)
        registry = session.registry()
        if registry.executor == "process":
            # Its run process opens the data and checks the run (registry.submit): this server need not
            # have loaded torch, so a fresh server's first Start waits only for the run process.
            with messages, st.spinner("Checking the run and its data (at a server's start, once PyTorch has loaded)…"):
                job = registry.start(config, None, owner=access.current_owner(), data_roots=[session.data_root()])
            warnings = job.data_warnings
        else:
            if session.engine_warming_up():  # a fresh server: Start pressed before torch and the data are ready
                with messages, st.spinner("Loading PyTorch and the default dataset (once per server start)…"):
                    session.wait_for_engine_warm_up()
            data = session.run_data(config)
            job = registry.start(config, data, owner=access.current_owner())
            warnings = data.warnings
    except VAEStudioError as error:
        show_error(error, messages)
        return
    for warning in warnings:
        messages.warning(plain(warning))
    session.set_current_run(job.run_id)
    st.session_state["_scroll_to_run"] = True  # the page may be scrolled down to the form's last button
    # Give the job a moment to take its first steps, so the page opens with a curve on it rather than
    # waiting for the panel's next tick: a run next in line is one whose process is warming up or
    # starting it; one queued behind another run would wait for minutes.
    next_in_line = job.status != "queued" or (
        registry.position(job.run_id) == 1 and registry.busy_job(str(job.device)) is None
    )
    deadline = time.monotonic() + (FIRST_POINTS_WAIT_S if next_in_line else 0.0)
    while job.status in ACTIVE_BEFORE_POINTS and job.snapshot().step == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    st.rerun()


def shown_job(run_id: str | None):
    """The run `run_id` as this page shows it: the job this server drives, else the run's record in
    the checkpoints folder (a run of the CLI, of torchrun, of a run process whose server restarted,
    or an ended one); None when neither exists (yet)."""
    if not run_id:
        return None  # without importing the engine, which a fresh server's first page must not wait for
    job = access.visible_job(run_id)
    if job is not None:
        return job  # without importing ui.runs (and torch): a fresh server's first run is one of its jobs
    from ui.runs import stored_job

    return stored_job(run_id)


def newest_run() -> str | None:
    """With no run in the link, the run this page opens on: the newest this server trains or queued
    that this session may see, else the newest run in the checkpoints folder (trained here, by the CLI
    or elsewhere), as the other pages open on the newest run. None when there is none, and while a
    fresh server still loads the engine (the folder is listed without importing it)."""
    registry = session.existing_registry()
    active = [job for job in registry.jobs() if job.snapshot().active and access.can_see(job.owner)] if registry else []
    if active:
        return active[-1].run_id
    if session.engine_warming_up():
        return None  # a fresh server: its first page is the form, drawn before torch and Plotly load
    from vae_core.runs import creation_order, list_runs  # no torch: a fresh server's page does not wait

    stored = [
        record
        for record in access.visible_records(list_runs(session.CHECKPOINT_DIR))
        if record.checkpoint and record.error is None
    ]
    # By the creation time an id begins with, else (ids made elsewhere) by the newest file.
    stamped = [record for record in stored if creation_order(record.run_id)[0] != "~"]
    if stamped:
        return max(stamped, key=lambda record: creation_order(record.run_id)).run_id
    return max(stored, key=lambda record: record.mtime).run_id if stored else None


def stored_run_note(job, snap) -> None:
    """What can be done with a run this server does not drive."""
    if job.live:
        where = f"process {job.pid}" + (f" on {job.host}" if job.host else "")
        st.caption(
            f"Trained by another {where} (the CLI or torchrun): it is followed here live, from its "
            "progress record and its checkpoint of each epoch, and controlled where it runs."
        )
    elif snap.epoch < snap.epochs and snap.status in ("stopped", "failed", "killed", "stale"):
        st.page_link(
            "app_pages/checkpoints.py", label="Resume it from its last checkpoint", icon=":material/play_arrow:"
        )  # the router keeps ?run= on every page


def controls(job, snap) -> None:
    """Pause / resume / stop, and lr and beta while it runs; to its owner alone when served (ui/access.py)."""
    from vae_core.stored_runs import StoredRun

    if isinstance(job, StoredRun) and not job.commands:
        stored_run_note(job, snap)
        return
    if not access.can_control(job.owner):
        st.caption("A shared run: you can watch it, not change it.")
        return
    if isinstance(job, StoredRun):
        st.caption(
            f"Trained by run process {job.pid}, which outlived the server that started it: commands "
            "reach it through the checkpoints folder within a second."
        )
    cols = st.columns(3)
    if cols[0].button("Pause", disabled=snap.status != "running", width="stretch"):
        job.pause()
    if cols[1].button("Resume", disabled=snap.status != "paused", width="stretch"):
        job.resume()
    if cols[2].button("Stop", disabled=not snap.active, width="stretch", type="secondary"):
        job.stop()
    if snap.active:
        with st.form("live_change", border=False):
            c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
            lr = c1.number_input("Learning rate now", 1e-6, 100.0, float(snap.lr), format="%.6g")
            beta = c2.number_input("β now", 0.0, 1000.0, float(snap.beta), step=0.1, format="%.3g")
            if c3.form_submit_button("Apply", width="stretch"):
                try:
                    if lr != snap.lr:
                        job.set_lr(lr)
                    if beta != snap.beta:
                        job.set_beta(beta)
                except VAEStudioError as error:
                    show_error(error)


def progress(snap, variational: bool) -> None:
    icon = STATUS_ICONS.get(snap.status, "")
    eta = f" · ETA {duration(snap.eta_s)}" if snap.status == "running" else ""
    st.progress(
        snap.progress,
        text=f"{icon} {snap.status} · epoch {snap.epoch}/{snap.epochs} · step {snap.step:,}/{snap.total_steps:,}{eta}",
    )
    last = snap.epoch_metrics[-1] if snap.epoch_metrics else {}
    metrics_row(
        variational,
        samples_per_s=speed(snap),
        speed_help=speed_help(snap),
        loss=nats(float(np.mean(snap.curves.total[-50:])) if len(snap.curves) else None),
        test=nats(last.get("test_neg_elbo" if variational else "test_recon")),
        active_units=f"{last['active_units']}/{len(snap.kl_per_dim)}"
        if variational and last.get("active_units") is not None
        else "–",
    )  # a progress record written by another process may not say


def speed(snap) -> str:
    """Samples per second: while it trains, its speed now; once it has ended, its mean over the time it
    trained (a checkpoint keeps no speed: this is what a run read from one can show, and a run of this
    server shows the same kind of figure); none while it waits (paused, queued, starting)."""
    if snap.status == "running":
        return f"{snap.samples_per_s:,.0f}"
    if not snap.active and snap.step > 0 and snap.elapsed_s > 0:
        return f"{snap.step * int(snap.config['batch_size']) / snap.elapsed_s:,.0f}"
    return "–"


def speed_help(snap) -> str:
    on = f"{snap.device} on {snap.threads}" if snap.threads else str(snap.device)
    if snap.active:
        return f"{on} · ETA {duration(snap.eta_s)}"
    return f"{on} · the mean over its {duration(snap.elapsed_s)} of training"


def metrics_row(
    variational: bool,
    samples_per_s: str = "–",
    speed_help: str | None = None,
    loss: str = "–",
    test: str = "–",
    active_units: str = "–",
) -> None:
    cols = st.columns(4)
    cols[0].metric("samples/s", samples_per_s, help=speed_help)
    cols[1].metric("loss", loss, help="the training loss, mean of the last 50 steps (nats per image)")
    if variational:
        cols[2].metric("test −ELBO", test, help="nats per image, after the last epoch")
    else:
        cols[2].metric("test reconstruction error", test, help="per image, after the last epoch. " + AE_NOTE)
    cols[3].metric(
        "active units",
        active_units,
        help=f"latent dimensions the encoder uses: those whose KL on the test set, after the last "
        f"epoch, is at least {ACTIVE_KL_NATS} nats (the grey bars below are the others)"
        if variational
        else "an autoencoder's codes have no KL to count them by",
    )


def queue_note(job, snap) -> None:
    """Where a queued run stands and what it waits for (the run before it in its device's line, or the
    one training there), in place of the empty axes of a run with no steps yet."""
    registry = session.registry()
    device = str(snap.device)
    line = [(queued.run_id, queued.snapshot().name, queued.owner) for queued in registry.queued(device)]
    if job.run_id not in [run_id for run_id, _, _ in line]:  # queued by another server or the CLI
        from vae_core import run_queue

        line = [(run.run_id, run.name, run.owner) for run in run_queue.waiting(session.CHECKPOINT_DIR, device)]
    ids = [run_id for run_id, _, _ in line]
    if job.run_id not in ids:  # taken off the line this moment: the next tick shows it starting
        st.info(f"Queued: it starts by itself when {device} is free.", icon=":material/schedule:")
        return
    position = ids.index(job.run_id) + 1
    if position > 1:
        _, name, owner = line[position - 2]
        after = f"**{plain(name)}**" if access.can_see(owner) else "another person's run"
        waits_for = f"it starts after {after}, queued before it"
    else:
        busy = registry.busy_job(device)
        if busy is not None and access.can_see(busy.owner):
            waits_for = f"it starts when **{plain(busy.snapshot().name)}** ends, which trains on {device} now"
        elif busy is None and registry.warming_up(device):
            waits_for = (
                "it starts as soon as this server's run process has loaded PyTorch and the data "
                "(once per server start, a few seconds)"
            )
        else:
            waits_for = f"it starts when {device} is free"
    st.info(
        f"Queued, number {position} in line on {device}: {waits_for}. It starts by itself; **Stop** takes "
        "it out of the queue.",
        icon=":material/schedule:",
    )


def loss_sketch(curves, variational: bool, log_y: bool) -> None:
    """The curves as plain SVG above the interactive chart, hidden by CSS once that has drawn: the
    first points show while the browser still loads Plotly (ui/light_charts.py). A tab is sent it
    for SKETCH_FOR_S from the moment it first shows a run, unless it was sent a Plotly chart long
    enough before (the empty chart of a page that waited for its Start): its Plotly is loaded, and a
    sketch would only flash for a few frames before the chart."""
    from ui.light_charts import PLOTLY_LOADED_AFTER_S, SKETCH_FOR_S, hide_once_drawn, loss_sketch_svg

    now, state = time.monotonic(), st.session_state
    if "_loss_sketch_until" not in state:
        charted = state.get("_loss_chart_sent_at")
        plotly_loaded = charted is not None and now - charted > PLOTLY_LOADED_AFTER_S
        state["_loss_sketch_until"] = now if plotly_loaded else now + SKETCH_FOR_S
    if len(curves) and now < state["_loss_sketch_until"]:
        with st.container(key="loss_sketch"):
            st.markdown(hide_once_drawn("loss_area", "loss_sketch", "loss_chart"), unsafe_allow_html=True)
            st.image(loss_sketch_svg(curves, variational=variational, log_y=log_y), width="stretch")


# How often the run's panel re-runs while the run is active: each re-run costs the server a little, and
# the run shares its cores. Until the first points arrive, the person who pressed Start is waiting for
# them, so the panel looks more often (a second's timer alone added 0.5 s to the first point, on average).
LIVE_POLL_S = 1.0
FIRST_POINTS_POLL_S = 0.2


def awaits_first_points(job, snap) -> bool:
    """Whether someone who pressed Start waits for this run's first points: no step yet, and it trains,
    or it is next on a device nothing trains on (a fresh server's run process is still warming up)."""
    if snap.step > 0 or snap.status not in ("queued", "starting", "running"):
        return False
    if snap.status != "queued":
        return True
    registry = session.existing_registry()
    line = registry.queued(str(snap.device)) if registry else []
    return bool(line) and line[0].run_id == job.run_id and registry.busy_job(str(snap.device)) is None


def live_panel() -> None:
    """Re-run by its fragment while the job is active (LIVE_POLL_S); the page re-runs once when the
    first points arrive (to slow the timer) and once when the run ends (to stop it)."""
    from ui.curve_controls import PLOTLY_CONFIG, apply_curve_options, csv_download, curve_controls

    job = shown_job(session.current_run_id())
    if job is None:
        return
    snap = job.snapshot()
    variational = snap.config["model"] in VARIATIONAL_MODELS
    # Each part whose number of elements changes (a scroll script sent or not; the live-change form,
    # gone once the run ends) is inside a container of its own: what follows keeps its place in the
    # page, which Streamlit would otherwise redraw from scratch (the loss chart blinked as a run ended).
    with st.container(key="run_top"):
        st.markdown(
            f"**Run** {plain(snap.name)} · `{job.run_id}` · {plain(snap.dataset)} · {snap.config['model']} · "
            f"z={snap.config['latent_dim']} · {snap.device}"
        )
        if snap.message:
            show_error(snap.message)
        ended = slurm_end(job.run_id)
        if ended is not None and ended.state in ("failed", "cancelled") and not said_by(snap, ended):
            show_error(f"Its SLURM job: {ended.text()}.")
        # Once after Start, and once when the run's error (a divergence) appears: the user may be far down.
        seen_error = st.session_state.get("_error_shown_for")
        # A run that has just ended re-runs the whole page (below), which would drop a script sent now
        # unseen: the scroll is left to that run. So does a run's first points' arrival: until then the
        # scroll is sent on each look (the person who pressed Start waits for them) and kept for that run.
        ending = st.session_state.get("_live_was_active", False) and not snap.active
        scroll = st.session_state.get("_scroll_to_run", False)
        if scroll and not ending and not st.session_state.get("_live_awaits_first_points", False):
            del st.session_state["_scroll_to_run"]
        if not ending and (scroll or (snap.message and seen_error != job.run_id)):
            scroll_into_view("run_top")
            if snap.message:
                st.session_state["_error_shown_for"] = job.run_id
    with st.container(key="run_state"):
        progress(snap, variational)
        controls(job, snap)
        if snap.status == "queued":
            queue_note(job, snap)
    if snap.status == "queued":
        return  # no steps yet: nothing to chart
    options = curve_controls("loss", wall_time=snap.curves.clock is not None)
    with st.container(key="loss_area"):
        loss_sketch(snap.curves, variational, options.log_y)
        from ui import charts  # once the sketch is on its way: on a fresh server this import takes 0.3 s

        figure = charts.loss_figure(
            snap.curves,
            snap.epoch_metrics,
            snap.events,
            log_y=options.log_y,
            variational=variational,
            free_bits=float(snap.config.get("free_bits") or 0.0),
            revision=job.run_id,
        )
        st.plotly_chart(
            apply_curve_options(figure, options, snap.steps_per_epoch, snap.curves.clock),
            key="loss_chart",
            config=PLOTLY_CONFIG,
        )
    csv_download([(snap.name, snap.curves, snap.steps_per_epoch)], key="loss_csv", file_name=f"{job.run_id}.csv")
    left, right = st.columns([1, 1])
    with left:
        if variational and snap.step == 0:
            st.caption("KL per latent dimension: appears with the first steps.")
        elif variational:
            st.plotly_chart(charts.kl_per_dim_figure(snap.kl_per_dim, snap.config["free_bits"]), key="kl_chart")
        else:
            st.info(
                AE_NOTE + " Nothing pulls its codes towards N(0, I), so there is no KL per dimension to show either.",
                icon=":material/info:",
            )
    with right:
        st.markdown("**Reconstructions** of fixed test images (top: input, bottom: decoded)")
        if snap.frames:
            frame = snap.frames[-1]
            inputs = (
                snap.fixed_inputs[:8]
                if len(snap.fixed_inputs)
                else np.zeros((0, *frame.reconstructions.shape[1:]), dtype=np.uint8)
            )
            image_grid(np.concatenate([inputs, frame.reconstructions[:8]]), 8, caption=f"epoch {frame.epoch}")
        else:
            st.caption("Appears after the first epoch.")
    was_active = st.session_state.get("_live_was_active", False)
    st.session_state["_live_was_active"] = snap.active
    if was_active and not snap.active:
        st.rerun()  # once, so the fragment is rebuilt without its timer and the page stops polling
    if st.session_state.get("_live_awaits_first_points") and snap.step > 0:
        st.rerun()  # once: the first points are drawn, so the fragment is rebuilt on the slower timer


def slurm_place(run_id: str | None):
    """Where run `run_id`, sent to SLURM and not ended there, is (executor_state.ExecutorState), when
    this session may see it; None for any other run, and when the app sends no run to SLURM."""
    registry = session.existing_registry()
    if not run_id or registry is None or registry.slurm is None:
        return None
    return next(
        (state for state, run in registry.slurm.active_runs() if run.run_id == run_id and access.can_see(run.owner)),
        None,
    )


def slurm_end(run_id: str | None):
    """How run `run_id` ended in SLURM (executor_state.ExecutorState), for its owner to see; None for a
    run not sent there or not ended. Only the executor knows why a job that wrote no record failed, or
    that a run whose record still reads "running" was given up (too many time limits without a new
    epoch). Served, a state that names no owner (written before states kept one) is shown to no one."""
    registry = session.existing_registry()
    if not run_id or registry is None or registry.slurm is None:
        return None
    state = registry.slurm.place(run_id)
    if state is None or state.active:
        return None
    # Served, only its owner's: a state naming no owner is not taken for a shared run's (can_see would).
    return state if not access.served() or (state.owner is not None and access.can_see(state.owner)) else None


def said_by(snap, ended) -> bool:
    """Whether the run's own record already says why it ended as its SLURM state does (a job that
    failed in training writes its error in both)."""
    return bool(ended.reason) and (snap.message or "").startswith(ended.reason)


def slurm_place_panel(run_id: str) -> None:
    """Re-run by its fragment (LIVE_POLL_S) while the run waits in SLURM or its job loads its data: its
    place, as the Runs page says it; the whole page re-runs once its job has written its record (to
    show it live) or it has left SLURM's queue."""
    place = slurm_place(run_id)
    if place is None or shown_job(run_id) is not None:
        st.rerun()
    st.info(f"Run `{run_id}` is {place.text()}. It shows here, live, once its job trains.", icon=":material/schedule:")


INVITATION = "Set the hyperparameters and press **Start training**. The curves appear here within a second."
# A fresh server is still loading PyTorch for its runs: its first run's curves take a few seconds.
INVITATION_WARMING_UP = (
    "Set the hyperparameters and press **Start training**. This server has just started and is loading "
    "PyTorch: the first run's curves appear here a few seconds after Start, later runs' within a second."
)


def invitation() -> str:
    return INVITATION_WARMING_UP if session.engine_warming_up() else INVITATION


def empty_panel(run_id: str | None, starting: bool):
    """The run's side with no run to show; returns its note, which says a pressed Start's run is on its
    way (the page is drawn before Start's work, which comes last) until that work says otherwise."""
    ended = None if starting else slurm_end(run_id)
    if ended is not None:
        show_error(f"Run {run_id} ended in SLURM before its job wrote any record: {ended.text()}.")
    elif run_id:
        st.warning(
            f"Run `{run_id}` is not in the checkpoints folder yet: a run shows here once it is queued, "
            "or once its process has written its first progress record. If it was deleted, pick another "
            "run on the **Runs** page."
        )
    note = st.empty()
    if starting:
        note.info(
            "Starting your run: its curves appear here with its first steps (on a freshly started server, "
            "once PyTorch has loaded, a few seconds).",
            icon=":material/hourglass_top:",
        )
    else:
        note.info(invitation())
    # The run's gauges, empty: where its numbers will show (and, on a fresh server, the browser has
    # their code loaded before the first run's panel arrives).
    st.progress(0.0, text="No run yet")
    metrics_row(variational=True)
    if starting or session.engine_warming_up():
        # Start was just pressed, or the server is fresh: the browser's CPU is better spent on the
        # form and on the run's first points (drawn as a sketch while Plotly loads) than on parsing
        # Plotly's bundle, which takes it a second or more; and a fresh server's on loading PyTorch.
        return note
    # Empty axes now, so the browser has the chart library loaded before the first point arrives.
    from ui import charts

    st.plotly_chart(charts.empty_loss_figure(), key="loss_chart")
    st.session_state.setdefault("_loss_chart_sent_at", time.monotonic())  # see loss_sketch
    return note


# Below 1100 px the form and the run share too little width (at 900, metric values and choices were
# cut to "4…"): the two columns stack there, as Streamlit's own do below 640 px.
_PAGE_COLUMNS = ".st-key-train_columns > [data-testid='stLayoutWrapper'] > [data-testid='stHorizontalBlock']"
st.markdown(
    f"<style>@media (max-width: 1100px) {{ {_PAGE_COLUMNS} {{ flex-wrap: wrap; }} "
    f"{_PAGE_COLUMNS} > [data-testid='stColumn'] {{ min-width: 100%; }} }}</style>",
    unsafe_allow_html=True,
)
with st.container(key="train_columns"):
    left, right = st.columns([1, 2], gap="large")
with left:
    # Drawn first: it needs nothing heavy, so on a fresh server it is usable while torch still loads.
    start_pressed = hyperparameter_form()
with right:
    run_id = session.current_run_id() or newest_run()
    if run_id and run_id != session.current_run_id():
        session.set_current_run(run_id)
    job = shown_job(run_id)
    run_note = None
    if job is None and slurm_place(run_id) is not None:  # pending in SLURM: not in the folder yet
        st.fragment(slurm_place_panel, run_every=LIVE_POLL_S)(run_id)
    elif job is None:
        run_note = empty_panel(run_id, starting=start_pressed is not None)
    else:
        snap = job.snapshot()
        st.session_state["_live_was_active"] = snap.active
        waiting = st.session_state["_live_awaits_first_points"] = awaits_first_points(job, snap)
        poll = (FIRST_POINTS_POLL_S if waiting else LIVE_POLL_S) if snap.active else None
        st.fragment(live_panel, run_every=poll)()
if start_pressed is not None:
    # Last, once the rest of the page is on its way: on a fresh server Start waits here for the
    # warm-up to end, with the page around the form drawn.
    start_pressed()
    if run_note is not None:  # reached only when no run was made (a made one re-runs the page)
        run_note.info(invitation())
