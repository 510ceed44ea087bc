"""The Runs page (AppTest): the table with distinct names, names in the comparison's legend, the
hyperparameters that differ, rename and notes, the queue reordered and cancelled, a sweep queued,
and runs another process trains (a progress record) shown live, or as killed."""

import json
import os
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest
from apphelpers import (
    CHECKPOINTS,
    assert_no_exception,
    markdown_texts,
    open_page,
    plotly_specs,
    rendered,
    trace_values,
    train_checkpoint,
)

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
        record = {
            "format": store.PROGRESS_FORMAT,
            "run_id": run_id,
            "name": "cli run",
            "status": "running",
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time() - 5,
            "heartbeat": time.time(),
            "step": 30,
            "total_steps": 120,
            "epoch": 2,
            "epochs": 8,
            "steps_per_epoch": 15,
            "samples_per_s": 900.0,
            "config": TrainConfig(data="digits", latent_dim=3).to_dict(),
            "dataset": "digits",
            "points": {
                "step": [10, 20, 30],
                "wall": [1.0, 2.0, 3.0],
                "total": [90.0, 80.0, 70.0],
                "recon": [85.0, 75.0, 66.0],
                "kl": [5.0, 5.0, 4.0],
            },
            "epoch_metrics": [
                {"epoch": 1, "step": 15, "test_neg_elbo": 77.5, "test_recon": 70.0, "test_kl": 7.5, "active_units": 3}
            ],
            "message": None,
            **changes,
        }
        path = CHECKPOINTS / f"{run_id}{store.PROGRESS_SUFFIX}"
        path.write_text(json.dumps(record))
        written.append(path)
        return path

    yield write
    for path in written:
        path.unlink(missing_ok=True)


def table(app):
    return app.dataframe[0].value


def dated_run_ids(app) -> list[str]:
    """The table's run ids made by run_ids.new_run_id, in its order (ids named by hand, as the other
    tests' runs are, sort after every dated one: runs.creation_order)."""
    return [run_id for run_id in table(app)["run id"] if store.creation_order(run_id)[0] != "~"]


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
    next(area for area in app.text_area if area.label == "Notes").input("β=1 baseline\nkeep it")
    next(button for button in app.button if button.label == "Save").click().run()
    assert_no_exception(app)
    saved = load_checkpoint(two_runs[0])
    assert saved.name == "best so far" and saved.notes == "β=1 baseline\nkeep it"
    assert row_of(app, EARLY)["name"] == "best so far" and row_of(app, LATE)["name"] == "mlp twin"


def _long_config(**changes):
    return TrainConfig(
        **{**dict(data="digits", hidden=(16,), latent_dim=2, batch_size=16, epochs=200, device="cpu"), **changes}
    )


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


def _queue_button(app):
    return next(button for button in app.button if button.label == "Queue the sweep")


def _sweep_caption(app) -> str:
    return next(
        rendered(c.value) for c in app.caption if "with the dataset and epochs chosen here" in rendered(c.value)
    )


def _forget_sweeps():
    """Sweep records of a test, removed with its runs (the folder is shared)."""
    import shutil

    from vae_core.sweep import SWEEPS_FOLDER

    shutil.rmtree(CHECKPOINTS / SWEEPS_FOLDER, ignore_errors=True)


def test_a_sweep_form_queues_one_run_per_combination(app):
    from ui.session import registry
    from vae_core.sweep import list_sweeps

    open_page(app, PAGE)
    app.selectbox(key="sweep_first").select("beta")
    app.text_input(key="sweep_first_values").input("0.5, 2")
    app.selectbox(key="sweep_second").select("latent_dim").run()
    app.text_input(key="sweep_second_values").input("2 3")
    app.selectbox(key="sweep_data_defaults").select("digits")
    app.number_input(key="sweep_epochs_defaults").set_value(3).run()
    # The count shows before anything is queued: 2 values × 2 values.
    assert _sweep_caption(app).startswith("2 × 2 = 4 runs · ") and registry().jobs() == []
    _queue_button(app).click().run()
    try:
        assert_no_exception(app)
        jobs = registry().jobs()
        assert [(job.config.beta, job.config.latent_dim) for job in jobs] == [(0.5, 2), (0.5, 3), (2.0, 2), (2.0, 3)]
        assert [job.config.epochs for job in jobs] == [3, 3, 3, 3]
        assert len(registry().queued()) == 3 and len({job.name for job in jobs}) == 4
        confirmation = [rendered(s.value) for s in app.success if "Queued" in s.value]
        assert len(confirmation) == 1 and confirmation[0].startswith("Queued 4 runs (beta 0.5, 2 × latent_dim 2, 3): ")
        app.run()
        app.run()  # the page reruns as the runs appear: the confirmation stays until dismissed
        assert [rendered(s.value) for s in app.success if "Queued" in s.value] == confirmation
        app.button(key="sweep_queued_dismiss").click().run()
        assert not [s for s in app.success if "Queued" in s.value]
        # Newest first, the sweep's runs together in the order it queued them (their ids share a second).
        assert dated_run_ids(app)[:4] == [job.run_id for job in jobs]
        [sweep] = list_sweeps(CHECKPOINTS)
        assert [run.run_id for run in sweep.runs] == [job.run_id for job in jobs] and sweep.fields == (
            "beta",
            "latent_dim",
        )
    finally:
        registry().stop_all()
        for job in registry().jobs():
            store.checkpoint_path(CHECKPOINTS, job.run_id).unlink(missing_ok=True)
        _forget_sweeps()


def test_the_sweep_form_starts_from_the_train_pages_defaults_and_says_them(app):
    """Nothing pre-filled but the first hyperparameter; the dataset, epochs and the rest are the
    Train form's (its DEFAULTS = TrainConfig(), its dataset select = data.DEFAULT_DATASET)."""
    from vae_core.config import TrainConfig, limits
    from vae_core.data import DEFAULT_DATASET

    open_page(app, PAGE)
    assert_no_exception(app)
    defaults = TrainConfig()
    assert app.selectbox(key="sweep_second").value == "none"
    assert app.selectbox(key="sweep_data_defaults").value == DEFAULT_DATASET == "mnist-sample"
    epochs = app.number_input(key="sweep_epochs_defaults")
    assert epochs.value == defaults.epochs == 10 and epochs.max == limits().max_epochs == 1000
    assert _sweep_caption(app) == (
        "3 runs · each run: model mlp, hidden 256-128, latent_dim 10, lr 0.001, batch_size 128, epochs 10, "
        "recon bce, kl_anneal none, free_bits 0, seed 0, data mnist-sample, device auto; beta swept — the Train "
        "page's defaults, with the dataset and epochs chosen here."
    )
    assert (
        defaults.model,
        defaults.hidden,
        defaults.latent_dim,
        defaults.lr,
        defaults.batch_size,
        defaults.recon,
        defaults.kl_anneal,
        defaults.free_bits,
        defaults.seed,
        defaults.device,
    ) == ("mlp", (256, 128), 10, 0.001, 128, "bce", "none", 0.0, 0, "auto")
    app.text_input(key="sweep_first_values").input("0.5 lots").run()
    assert _sweep_caption(app).startswith("not yet a sweep: beta: 'lots' is not a number · ")
    app.selectbox(key="sweep_second").select("beta").run()
    assert _sweep_caption(app).startswith("not yet a sweep: choose two different hyperparameters")


def test_one_run_is_queued_as_one_run_within_the_epoch_limit(app, monkeypatch):
    from ui.session import registry

    monkeypatch.setenv("VAE_STUDIO_MAX_EPOCHS", "4")
    open_page(app, PAGE)
    assert app.number_input(key="sweep_epochs_defaults").max == 4  # the one limit, config.Limits
    app.text_input(key="sweep_first_values").input("2").run()
    app.selectbox(key="sweep_data_defaults").select("digits")
    app.number_input(key="sweep_epochs_defaults").set_value(2).run()
    assert _sweep_caption(app).startswith("1 run · ")
    app.selectbox(key="sweep_second").select("epochs").run()
    app.text_input(key="sweep_second_values").input("1 5").run()
    assert _sweep_caption(app).startswith("1 × 2 = 2 runs · ")
    _queue_button(app).click().run()
    try:  # epochs 5 is over the limit: nothing is queued
        assert any("at most 4 epochs" in rendered(error.value) for error in app.error) and registry().jobs() == []
        app.selectbox(key="sweep_second").select("none").run()
        _queue_button(app).click().run()
        assert_no_exception(app)
        assert [(job.config.beta, job.config.epochs) for job in registry().jobs()] == [(2.0, 2)]
        assert any(rendered(s.value).startswith("Queued 1 run (beta 2): ") for s in app.success)
    finally:
        registry().stop_all()
        for job in registry().jobs():
            store.checkpoint_path(CHECKPOINTS, job.run_id).unlink(missing_ok=True)
        _forget_sweeps()


def test_a_bad_sweep_value_is_a_message(app):
    open_page(app, PAGE)
    app.text_input(key="sweep_first_values").input("0.5 lots")
    next(button for button in app.button if button.label == "Queue the sweep").click().run()
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

    trainer = Trainer(
        TrainConfig(data="digits", hidden=(16,), latent_dim=2, epochs=1, device="cpu"), load_dataset("digits")
    )
    run_to_end(trainer)
    trainer.beta = 4.0
    trainer.history.events.append({"step": trainer.step, "name": "beta", "value": 4.0})
    run_id = "20261129-110000-cccccc"
    path = save_trainer_checkpoint(
        trainer, run_id, "finished", CHECKPOINTS / f"{run_id}.safetensors", name="retuned run"
    )
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


def test_queue_arrows_end_where_the_queue_does_and_the_sidebar_lists_it_in_its_order(app):
    from ui.session import registry, run_data
    from ui.widgets import plain

    jobs = [
        registry().submit(_long_config(seed=seed, epochs=100 + seed), run_data(_long_config())) for seed in range(4)
    ]
    try:
        open_page(app, PAGE)
        first, middle, last = jobs[1], jobs[2], jobs[3]

        def enabled(job) -> tuple[bool, bool]:
            return (
                not app.button(key=f"queue_up_{job.run_id}").disabled,
                not app.button(key=f"queue_down_{job.run_id}").disabled,
            )

        assert [enabled(first), enabled(middle), enabled(last)] == [(False, True), (True, True), (True, False)]
        lines = [rendered(text) for text in markdown_texts(app) if text.startswith("**")]
        assert [line.split(" · ")[1] for line in lines[:3]] == ["101 epochs", "102 epochs", "103 epochs"]
        app.button(key=f"queue_up_{last.run_id}").click().run()
        order = [job.run_id for job in registry().queued()]
        assert order == [first.run_id, last.run_id, middle.run_id]
        queued_badges = [link.label for link in app.get("page_link") if link.label.startswith("Queued: ")]
        assert queued_badges == [
            f"Queued: {plain(registry().get(run_id).snapshot().name)} · {registry().get(run_id).config.epochs} epochs"
            for run_id in order
        ]
        assert enabled(middle) == (True, False)  # last now
    finally:
        registry().stop_all()
        for job in jobs:
            store.checkpoint_path(CHECKPOINTS, job.run_id).unlink(missing_ok=True)


# Made in one second, their ids sort by their random tails: newest first alone would list HIGH first.
SWEPT_LOW, SWEPT_HIGH = "20261201-100000-aaaaaa", "20261201-100000-bbbbbb"
NEVER_RAN = "20261201-100000-cccccc"


@pytest.fixture
def half_done_sweep():
    """A sweep of β 1, 4, 8 recorded as the form records one: two runs finished, the third never ran."""
    from vae_core.sweep import SweepRecord, SweptRun, save_sweep

    made = [train_checkpoint(SWEPT_LOW, beta=1.0), train_checkpoint(SWEPT_HIGH, beta=4.0)]
    sweep = SweepRecord(
        "20261207-100000-ssssss",
        ("beta",),
        (SweptRun(SWEPT_LOW, {"beta": 1.0}), SweptRun(SWEPT_HIGH, {"beta": 4.0}), SweptRun(NEVER_RAN, {"beta": 8.0})),
        created=1_796_464_800.0,
    )  # a past time: one from the future is refused
    save_sweep(CHECKPOINTS, sweep)
    yield made
    for path in made:
        path.unlink(missing_ok=True)
    _forget_sweeps()


def test_a_sweeps_summary_shows_each_runs_last_metrics_against_its_value(app, half_done_sweep):
    open_page(app, PAGE)
    assert_no_exception(app)
    # Its runs together, in the sweep's order, though bbbbbb sorts newer than aaaaaa.
    listed = dated_run_ids(app)
    assert listed[listed.index(SWEPT_LOW) : listed.index(SWEPT_LOW) + 2] == [SWEPT_LOW, SWEPT_HIGH]
    assert "beta 1, 4, 8 · 3 runs" in app.selectbox(key="sweep_summary_picked").format_func(
        app.selectbox(key="sweep_summary_picked").value
    )
    last = [load_checkpoint(path).state.history.epochs[-1] for path in half_done_sweep]  # read independently
    chart = next(spec for spec in plotly_specs(app) if spec["layout"]["xaxis"]["title"]["text"] == "beta")
    [trace] = chart["data"]
    assert trace["x"] == ["1", "4"] and trace_values(trace["y"]) == [m["test_neg_elbo"] for m in last]
    assert trace["marker"]["symbol"] == ["circle", "circle"]  # both finished
    assert chart["layout"]["xaxis"]["categoryarray"] == ["1", "4", "8"]
    assert any(rendered(c.value).startswith("2 of 3 runs finished.") for c in app.caption)
    summary = next(
        frame.value for frame in app.dataframe if "test −ELBO" in frame.value.columns and "beta" in frame.value.columns
    )
    assert list(summary["beta"]) == [1.0, 4.0, 8.0]
    assert list(summary["status"]) == ["finished", "finished", "not found"]
    assert list(summary["epoch"]) == ["2/2", "2/2", ""]
    for label, key in (("test −ELBO", "test_neg_elbo"), ("reconstruction", "test_recon"), ("KL", "test_kl")):
        assert list(summary[label])[:2] == [m[key] for m in last] and pd.isna(list(summary[label])[2])
    app.segmented_control(key="sweep_metric").set_value("KL").run()
    chart = next(spec for spec in plotly_specs(app) if spec["layout"]["xaxis"]["title"]["text"] == "beta")
    assert trace_values(chart["data"][0]["y"]) == [m["test_kl"] for m in last]
    assert chart["layout"]["yaxis"]["title"]["text"] == "KL (nats)"
    # Parallel coordinates: the swept value's axis and the metrics' axes, read independently again.
    app.segmented_control(key="sweep_view").set_value("Parallel coordinates").run()
    assert_no_exception(app)
    [parallel] = [spec for spec in plotly_specs(app) if spec["data"] and spec["data"][0]["type"] == "parcoords"]
    axes = {axis["label"]: axis for axis in parallel["data"][0]["dimensions"]}
    assert trace_values(axes["beta"]["values"]) == [0, 1] and axes["beta"]["ticktext"] == ["1", "4", "8"]
    assert trace_values(axes["test −ELBO (nats)"]["values"]) == [m["test_neg_elbo"] for m in last]
