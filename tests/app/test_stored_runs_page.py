"""The Train page is the run's page for any run of the folder, not only the jobs of this server: a
finished run (after a restart, or the CLI's) and a run another process trains, from its progress
record; and no page shows another run in place of the one its link names."""

import json
import os
import socket
import time

from apphelpers import (
    CHECKPOINTS,
    assert_no_exception,
    open_page,
    page_text,
    plotly_specs,
    trace_values,
    train_checkpoint,
)

from vae_core.checkpoint import load_checkpoint
from vae_core.runs import POINT_FIELDS, PROGRESS_FORMAT


def _progress_line(app) -> str:
    return next(p.proto.text for p in app.get("progress"))


def _trace(app, name: str) -> list[float]:
    """The y values of the loss chart's trace `name`."""
    trace = next(t for t in plotly_specs(app)[0]["data"] if t.get("name") == name)
    return trace_values(trace["y"])


def _metric(app, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


def test_a_finished_run_this_server_never_trained_shows_on_the_train_page(app, saved_runs):
    saved = load_checkpoint(CHECKPOINTS / "vae-beta4.safetensors")
    app.query_params["run"] = "vae-beta4"
    app.run()
    assert_no_exception(app)
    steps = saved.state.step
    assert _progress_line(app).endswith(f"finished · epoch 2/2 · step {steps:,}/{steps:,}")
    last = saved.state.history.epochs[-1]
    assert _metric(app, "test −ELBO") == f"{last['test_neg_elbo']:.2f}"
    assert _metric(app, "active units") == f"{last['active_units']}/2"
    # Its mean speed over the time it trained (a checkpoint keeps no speed: this read 0 until 2026-12)
    seconds = saved.state.history.clock[-1][1]
    assert seconds > 0 and _metric(app, "samples/s") == f"{steps * saved.config.batch_size / seconds:,.0f}"
    total = _trace(app, "total")
    assert total == [float(v) for v in saved.state.history.curves().total]  # every step, from the checkpoint
    assert not {"Pause", "Stop"} & {b.label for b in app.button}


def test_a_run_another_process_trains_is_followed_from_its_progress_record(app, saved_runs):
    saved = load_checkpoint(CHECKPOINTS / "vae-beta1.safetensors")
    record = {
        "format": PROGRESS_FORMAT,
        "run_id": "elsewhere-live",
        "name": "trained elsewhere",
        "status": "running",
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.time() - 5,
        "heartbeat": time.time(),
        "step": 30,
        "total_steps": 120,
        "epoch": 1,
        "epochs": 4,
        "steps_per_epoch": 30,
        "samples_per_s": 640.0,
        "config": {**saved.config.to_dict(), "epochs": 4},
        "dataset": "digits",
        "points": {key: [] for key in POINT_FIELDS},
        "epoch_metrics": [{"epoch": 1, "step": 30, "test_neg_elbo": 41.5}],
    }
    for step, total in ((10, 50.0), (20, 45.0), (30, 42.0)):
        for key, value in zip(POINT_FIELDS, (step, None, total, total - 2.0, 2.0)):
            record["points"][key].append(value)
    path = CHECKPOINTS / "elsewhere-live.progress.json"
    path.write_text(json.dumps(record))
    try:
        app.query_params["run"] = "elsewhere-live"
        app.run()
        assert_no_exception(app)
        assert "running · epoch 1/4 · step 30/120" in _progress_line(app)
        assert _metric(app, "test −ELBO") == "41.50" and _metric(app, "samples/s") == "640"
        assert _trace(app, "total") == [50.0, 45.0, 42.0]
        assert "Trained by another process" in page_text(app)
        # The sidebar of every page links to it, as to a run of this server
        links = [link.proto.label for link in app.get("page_link")]
        assert "Training: trained elsewhere · epoch 1/4" in links, links
    finally:
        path.unlink()


def test_a_link_to_a_run_without_a_checkpoint_never_shows_another_run(app, saved_runs):
    app.query_params["run"] = "20990101-000000-later"
    open_page(app, "app_pages/generate.py")
    assert_no_exception(app)
    assert "has no checkpoint you can open yet" in page_text(app)
    assert app.query_params["run"] == "20990101-000000-later"  # the URL is left as it was


def test_pages_without_a_run_in_their_link_open_on_the_newest(app, saved_runs):
    newest = train_checkpoint("20991231-235959-newest")
    try:
        os.utime(CHECKPOINTS / "vae-beta1.safetensors")  # the most recently written file is not the newest run
        open_page(app, "app_pages/generate.py")
        assert_no_exception(app)
        assert app.query_params["run"] == "20991231-235959-newest"
    finally:
        newest.unlink()


def test_a_run_process_whose_server_is_gone_is_controlled_through_the_store(app, saved_runs):
    from vae_core.run_commands import read_commands

    saved = load_checkpoint(CHECKPOINTS / "vae-beta1.safetensors")
    record = {
        "format": PROGRESS_FORMAT,
        "run_id": "orphaned-live",
        "name": "orphaned",
        "status": "running",
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.time() - 5,
        "heartbeat": time.time(),
        "step": 10,
        "total_steps": 120,
        "epoch": 0,
        "epochs": 4,
        "steps_per_epoch": 30,
        "samples_per_s": 100.0,
        "config": {**saved.config.to_dict(), "epochs": 4},
        "dataset": "digits",
        "commands": True,
        "points": {key: [] for key in POINT_FIELDS},
        "epoch_metrics": [],
    }
    path = CHECKPOINTS / "orphaned-live.progress.json"
    path.write_text(json.dumps(record))
    commands = CHECKPOINTS / "orphaned-live.commands.json"
    try:
        app.query_params["run"] = "orphaned-live"
        app.run()
        assert_no_exception(app)
        assert "outlived the server that started it" in page_text(app)
        next(b for b in app.button if b.label == "Stop").click().run()
        assert_no_exception(app)
        assert [name for _, name, _ in read_commands(commands)] == ["stop"]
    finally:
        path.unlink()
        commands.unlink(missing_ok=True)
        (CHECKPOINTS / ".orphaned-live.commands.json.lock").unlink(missing_ok=True)


def _notice_script():
    from types import SimpleNamespace

    import streamlit as st

    from ui import runs

    runs.latest_epoch = lambda run_id: st.session_state["latest"]
    runs.newer_weights_notice(SimpleNamespace(run_id="20261206-000000-aaaaaa", epoch=3))


def test_a_page_on_older_weights_of_a_training_run_says_newer_ones_exist():
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_function(_notice_script)
    app.session_state["latest"] = 3
    app.run()
    assert "Weights of epoch 3, the newest the run has kept" in app.caption[0].value
    app.session_state["latest"] = 5
    app.run()
    assert app.info[0].value.startswith("These use the weights of epoch 3; the run has kept those of epoch 5")
    assert [b.label for b in app.button] == ["Show the newest"]
