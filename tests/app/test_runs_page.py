"""The Runs page (AppTest): the table with distinct names, names in the comparison's legend, the
hyperparameters that differ, rename and notes, the queue reordered and cancelled, a sweep queued,
and runs another process trains (a progress record) shown live, or as killed."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from apphelpers import (CHECKPOINTS, assert_no_exception, markdown_texts, open_page, plotly_specs, rendered,
                        trace_values, train_checkpoint)
from vae_core import runs as store
from vae_core.checkpoint import load_checkpoint
from vae_core.config import TrainConfig

PAGE = "app_pages/runs.py"
EARLY, LATE = "20261129-090000-aaaaaa", "20261129-100000-bbbbbb"


@pytest.fixture
def two_runs():
    """Two finished runs with the same stored name, β 1 and β 4; removed afterwards (the folder is shared)."""
    made = [train_checkpoint(EARLY, display_name="mlp twin"), train_checkpoint(LATE, display_name="mlp twin", beta=4.0)]
    yield made
    for path in made:
        path.unlink(missing_ok=True)
        store.progress_path(path).unlink(missing_ok=True)


@pytest.fixture
def records():
    """Progress records written by hand (as another process would), removed afterwards."""
    written = []

    def write(run_id, **changes):
        record = {"format": store.PROGRESS_FORMAT, "run_id": run_id, "name": "cli run", "status": "running",
                  "pid": os.getpid(), "host": socket.gethostname(), "started": time.time() - 5,
                  "heartbeat": time.time(), "step": 30, "total_steps": 120, "epoch": 2, "epochs": 8,
                  "steps_per_epoch": 15, "samples_per_s": 900.0,
                  "config": TrainConfig(data="digits", latent_dim=3).to_dict(), "dataset": "digits",
                  "points": {"step": [10, 20, 30], "wall": [1.0, 2.0, 3.0], "total": [90.0, 80.0, 70.0],
                             "recon": [85.0, 75.0, 66.0], "kl": [5.0, 5.0, 4.0]},
                  "epoch_metrics": [{"epoch": 1, "step": 15, "test_neg_elbo": 77.5, "test_recon": 70.0,
                                     "test_kl": 7.5, "active_units": 3}], "message": None, **changes}
        path = CHECKPOINTS / f"{run_id}{store.PROGRESS_SUFFIX}"
        path.write_text(json.dumps(record))
        written.append(path)
        return path

    yield write
    for path in written:
        path.unlink(missing_ok=True)


def table(app):
    return app.dataframe[0].value


def row_of(app, run_id):
    frame = table(app)
    rows = frame[frame["run id"] == run_id]
    assert len(rows) == 1, frame[["run id", "name"]]
    return rows.iloc[0]


def select_rows(app, *run_ids):
    frame = table(app)
    indices = [int(frame.index[frame["run id"] == run_id][0]) for run_id in run_ids]
    app.session_state["runs_table"] = {"selection": {"rows": indices, "columns": [], "cells": []}}
    return app.run()


def test_table_lists_runs_with_distinct_names_statuses_and_links(app, two_runs):
    open_page(app, PAGE)
    assert_no_exception(app)
    early, late = row_of(app, EARLY), row_of(app, LATE)
    assert (early["name"], late["name"]) == ("mlp twin", "mlp twin (2)")  # by creation time
    assert "why" not in table(app).columns  # no run to explain: no column for it
    assert early["status"] == late["status"] == "finished" and early["epoch"] == 2 and late["β"] == 4.0
    assert early["test −ELBO"] > 0 and early["link"] == f"?run={EARLY}"
    app.text_input(key="runs_filter").input("TWIN (2)").run()  # any case
    assert list(table(app)["run id"]) == [LATE]


def test_selected_runs_are_compared_by_name_and_differences_highlighted(app, two_runs):
    open_page(app, PAGE)
    select_rows(app, EARLY, LATE)
    assert_no_exception(app)
    (figure,) = [spec for spec in plotly_specs(app) if spec["data"]]
    names = [trace["name"] for trace in figure["data"]]
    assert "mlp twin" in names and "mlp twin (2)" in names  # names, not ids, in the legend
    assert any("differing (highlighted): beta" in rendered(text) for text in markdown_texts(app))
    assert app.get("download_button")  # the curves as CSV

    app.segmented_control(key="compare_x_axis").set_value("epoch").run()
    (figure,) = [spec for spec in plotly_specs(app) if spec["data"]]
    assert figure["layout"]["xaxis"]["title"]["text"] == "epoch"


def test_a_run_is_renamed_and_annotated_from_its_link(app, two_runs):
    app.query_params["run"] = EARLY
    open_page(app, PAGE)
    assert_no_exception(app)
    form_inputs = [box for box in app.text_input if box.label == "Name"]
    form_inputs[0].input("best so far")
    [area for area in app.text_area if area.label == "Notes"][0].input("β=1 baseline\nkeep it")
    [button for button in app.button if button.label == "Save"][0].click().run()
    assert_no_exception(app)
    saved = load_checkpoint(two_runs[0])
    assert saved.name == "best so far" and saved.notes == "β=1 baseline\nkeep it"
    assert row_of(app, EARLY)["name"] == "best so far" and row_of(app, LATE)["name"] == "mlp twin"


def _long_config(**changes):
    return TrainConfig(**{**dict(data="digits", hidden=(16,), latent_dim=2, batch_size=16, epochs=200,
                                 device="cpu"), **changes})


def test_queue_is_reordered_and_cancelled(app):
    from ui.session import registry, run_data

    jobs = [registry().submit(_long_config(seed=seed), run_data(_long_config())) for seed in range(3)]
    try:
        open_page(app, PAGE)
        assert_no_exception(app)
        assert [job.run_id for job in registry().queued()] == [jobs[1].run_id, jobs[2].run_id]
        queue_lines = [text for text in markdown_texts(app) if text.startswith("**1.**") or text.startswith("**2.**")]
        assert len(queue_lines) == 2
        app.button(key=f"queue_down_{jobs[1].run_id}").click().run()
        assert [job.run_id for job in registry().queued()] == [jobs[2].run_id, jobs[1].run_id]
        app.button(key=f"queue_cancel_{jobs[2].run_id}").click().run()
        assert_no_exception(app)
        assert [job.run_id for job in registry().queued()] == [jobs[1].run_id]
        assert jobs[2].status == "cancelled"
        assert jobs[0].run_id in list(table(app)["run id"]) and jobs[2].run_id not in list(table(app)["run id"])
    finally:
        registry().stop_all()
        for job in jobs:
            store.checkpoint_path(CHECKPOINTS, job.run_id).unlink(missing_ok=True)


def test_a_sweep_form_queues_one_run_per_combination(app):
    from ui.session import registry

    open_page(app, PAGE)
    app.selectbox(key="sweep_first").select("beta")
    app.text_input(key="sweep_first_values").input("0.5, 2")
    app.selectbox(key="sweep_second").select("latent_dim")
    app.text_input(key="sweep_second_values").input("2 3")
    app.selectbox(key="sweep_data").select("digits")
    [button for button in app.button if button.label == "Queue the sweep"][0].click().run()
    try:
        assert_no_exception(app)
        jobs = registry().jobs()
        assert [(job.config.beta, job.config.latent_dim) for job in jobs] == [(0.5, 2), (0.5, 3), (2.0, 2), (2.0, 3)]
        assert len(registry().queued()) == 3 and len({job.name for job in jobs}) == 4
        assert any("Queued 4 runs" in text for text in markdown_texts(app))
    finally:
        registry().stop_all()
        for job in registry().jobs():
            store.checkpoint_path(CHECKPOINTS, job.run_id).unlink(missing_ok=True)


def test_a_bad_sweep_value_is_a_message(app):
    open_page(app, PAGE)
    app.text_input(key="sweep_first_values").input("0.5 lots")
    [button for button in app.button if button.label == "Queue the sweep"][0].click().run()
    assert_no_exception(app)
    assert any("'lots' is not a number" in rendered(error.value) for error in app.error)


def test_runs_trained_elsewhere_are_live_or_killed(app, records):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    records("20261129-110000-cccccc")
    records("20261129-120000-dddddd", pid=dead.pid, name="died")
    open_page(app, PAGE)
    assert_no_exception(app)
    live, killed = row_of(app, "20261129-110000-cccccc"), row_of(app, "20261129-120000-dddddd")
    assert live["status"] == "running · CLI" and live["epoch"] == 2 and live["test −ELBO"] == 77.5
    assert killed["status"] == "killed"  # a word the column shows whole; why, in a column of its own
    assert killed["why"] == f"its process (pid {dead.pid}) ended mid-run; it saved nothing" and live["why"] == ""
    bars = [bar.proto.text for bar in app.get("progress")]
    assert any("cli run" in text and "epoch 2/8" in text and "step 30/120" in text for text in bars)
    assert not any("died" in text for text in bars)
    live_chart = [spec for spec in plotly_specs(app) if any(t.get("name") == "cli run" for t in spec["data"])]
    assert live_chart  # its loss points, named by the run


def test_a_live_beta_change_is_part_of_the_runs_record(app):
    """β changed while the run trained: the table says the β in force and how it moved, and so does
    the comparison's legend; the name stays the one it was given."""
    from vae_core.checkpoint import save_trainer_checkpoint
    from vae_core.data import load_dataset
    from vae_core.loop import run_to_end
    from vae_core.trainer import Trainer

    trainer = Trainer(TrainConfig(data="digits", hidden=(16,), latent_dim=2, epochs=1, device="cpu"),
                      load_dataset("digits"))
    run_to_end(trainer)
    trainer.beta = 4.0
    trainer.history.events.append({"step": trainer.step, "name": "beta", "value": 4.0})
    run_id = "20261129-110000-cccccc"
    path = save_trainer_checkpoint(trainer, run_id, "finished", CHECKPOINTS / f"{run_id}.safetensors",
                                   name="retuned run")
    try:
        open_page(app, PAGE)
        assert_no_exception(app)
        row = row_of(app, run_id)
        assert row["β"] == 4.0 and row["changed while training"] == "β 1→4" and row["name"] == "retuned run"
        select_rows(app, run_id)
        traces = {trace["name"]: trace for figure in plotly_specs(app) for trace in figure["data"]}
        assert "retuned run (β 1→4)" in traces
        marks = traces["retuned run (β 1→4): changed while training"]  # where on its curve it changed
        assert trace_values(marks["x"]) == [trainer.step] and marks["text"] == ["β→4"]
        assert trace_values(marks["y"]) == [pytest.approx(float(trainer.history.curves().total[-1]))]
    finally:
        path.unlink(missing_ok=True)
