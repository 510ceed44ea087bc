"""Train page: the form starts a real (tiny) job; the live panel shows its curves and controls."""

import time

from apphelpers import assert_no_exception, plotly_specs, trace_values


def _set_small_run(app, epochs=2, dataset="digits"):
    form_select = {s.label: s for s in app.selectbox}
    form_select["Dataset"].set_value(dataset)
    sliders = {s.label: s for s in app.slider}
    sliders["Epochs"].set_value(epochs)
    sliders["Latent size"].set_value(2)
    app.text_input[0].set_value("32")
    return app


def _start(app):
    next(b for b in app.button if b.label == "Start training").click()
    return app.run()


def _job(run_id):
    from ui.session import registry
    return registry().get(run_id)


def test_defaults_are_the_notes_model(app):
    app.run()
    assert_no_exception(app)
    selects = {s.label: s.value for s in app.selectbox}
    assert selects["Dataset"] == "mnist-sample" and selects["Model"] == "mlp"
    assert {s.label: s.value for s in app.slider}["Latent size"] == 10
    assert app.text_input[0].value == "256 128"
    assert {s.label: s.value for s in app.select_slider}["Learning rate"] == 1e-3


def test_start_trains_and_the_live_panel_shows_curves_and_pictures(app):
    app.run()
    _start(_set_small_run(app))
    assert_no_exception(app)
    run_id = app.query_params["run"]
    run_id = run_id[0] if isinstance(run_id, list) else run_id
    job = _job(run_id)
    assert job is not None and job.wait(60)
    app.run()
    assert_no_exception(app)
    assert any("finished" in p.proto.text for p in app.get("progress"))
    charts = plotly_specs(app)
    names = {t.get("name") for spec in charts for t in spec["data"]}
    assert {"total", "reconstruction", "KL", "test −ELBO"} <= names
    loss = next(spec for spec in charts if any(t.get("name") == "KL" for t in spec["data"]))
    kl_trace = next(t for t in loss["data"] if t.get("name") == "KL")
    assert trace_values(kl_trace["x"]) == list(range(1, job.snapshot().step + 1))  # one point per step
    assert len(app.get("image")) >= 1  # the reconstruction grid
    assert {b.label: b.disabled for b in app.button}["Pause"] is True  # nothing left to pause


def test_controls_pause_resume_stop_and_live_changes(app):
    app.run()
    _start(_set_small_run(app, epochs=200))
    run_id = app.session_state["run"]
    job = _job(run_id)
    buttons = {b.label: b for b in app.button}
    buttons["Pause"].click()
    app.run()
    assert job.wait(0.5) is False
    deadline = time.monotonic() + 10
    while job.snapshot().status != "paused" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.snapshot().status == "paused"
    app.run()
    numbers = {n.label: n for n in app.number_input}
    numbers["β now"].set_value(3.0)
    next(b for b in app.button if b.label == "Apply").click()
    app.run()
    {b.label: b for b in app.button}["Resume"].click()
    app.run()
    deadline = time.monotonic() + 10
    while not job.snapshot().events and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(e["name"], e["value"]) for e in job.snapshot().events] == [("beta", 3.0)]
    {b.label: b for b in app.button}["Stop"].click()
    app.run()
    assert job.wait(5) and job.snapshot().status == "stopped"


def test_a_second_start_on_a_busy_device_gets_a_message(app):
    app.run()
    _start(_set_small_run(app, epochs=200))
    assert_no_exception(app)
    _start(app)
    assert_no_exception(app)
    assert any("is busy training run" in e.value for e in app.error)


def test_bad_hidden_sizes_get_a_clear_message(app):
    app.run()
    _set_small_run(app)
    app.text_input[0].set_value("wide")
    _start(app)
    assert_no_exception(app)
    assert any("hidden sizes must be whole numbers" in e.value for e in app.error)


def test_unavailable_dataset_says_where_to_put_the_files(app):
    app.run()
    _set_small_run(app, dataset="kmnist")
    _start(app)
    assert_no_exception(app)
    assert any("kmnist" in e.value.lower() for e in app.error)


def test_a_run_id_this_server_does_not_know_points_to_its_checkpoint(app):
    app.query_params["run"] = "20200101-000000-gone"
    app.run()
    assert_no_exception(app)
    assert any("20200101-000000-gone" in w.value and "Checkpoints" in w.value for w in app.warning)
