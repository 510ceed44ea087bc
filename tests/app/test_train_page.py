"""Train page: the form starts a real (tiny) job; the live panel shows its curves and controls."""

import os
import stat
import time
from pathlib import Path

from apphelpers import assert_no_exception, markdown_texts, plotly_specs, rendered, trace_values

from ui.widgets import plain  # labels are markdown: "(2)" arrives as "\\(2\\)"


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
    assert loss["layout"]["uirevision"] == run_id  # the reader's zoom is kept for this run, not carried to another
    assert len(app.get("image")) >= 1  # the reconstruction grid
    assert {b.label: b.disabled for b in app.button}["Pause"] is True  # nothing left to pause
    snap = job.snapshot()
    metrics = {m.label: m.value for m in app.metric}
    # Ended: its mean speed over the time it trained, as for a run read from its checkpoint
    assert (
        snap.elapsed_s > 0 and metrics["samples/s"] == f"{snap.step * snap.config['batch_size'] / snap.elapsed_s:,.0f}"
    ), metrics
    kl = snap.kl_per_dim
    assert metrics["active units"] == f"{int((kl >= 0.05).sum())}/{len(kl)}", (metrics, kl)


def test_the_test_elbo_shown_is_the_one_vae_studio_eval_reports_for_the_runs_checkpoint(app, capsys):
    """Computed apart from the page: the CLI loads the run's last checkpoint and evaluates it."""
    import json

    from ui import session
    from ui.widgets import nats
    from vae_core.cli import main

    app.run()
    _start(_set_small_run(app, epochs=2))
    job = _job(app.session_state["run"])
    assert job.wait(60) and job.snapshot().status == "finished"
    app.run()
    shown = {m.label: m.value for m in app.metric}["test −ELBO"]
    assert main(["eval", str(session.CHECKPOINT_DIR / f"{job.run_id}.safetensors"), "--quiet"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert shown == nats(evaluated["test_neg_elbo"]), (shown, evaluated)


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
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["samples/s"] == "–", metrics  # a paused run trains nothing
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


def test_a_second_start_queues_behind_the_first_and_says_so(app):
    app.run()
    _start(_set_small_run(app, epochs=200))
    first = app.session_state["run"]
    _start(app)
    assert_no_exception(app)
    second = app.session_state["run"]
    assert second != first and _job(second).snapshot().status == "queued"
    note = rendered(" ".join(i.value for i in app.info))
    assert f"Queued, number 1 in line on cpu: it starts when **{_job(first).snapshot().name}** ends" in note
    assert not [chart for chart in app.get("plotly_chart")], "a queued run has no steps to chart"
    _start(app)
    third = app.session_state["run"]
    note = rendered(" ".join(i.value for i in app.info))
    assert f"Queued, number 2 in line on cpu: it starts after **{_job(second).snapshot().name}**" in note, note
    {b.label: b for b in app.button}["Stop"].click()
    app.run()
    assert _job(third).wait(5) and _job(third).snapshot().status == "cancelled"
    app.query_params["run"] = second
    app.run()
    badges = [link.label for link in app.get("page_link")]
    assert any(
        label.startswith(f"Training: {plain(_job(first).snapshot().name)} · ")
        or label.startswith(f"Training (starting): {plain(_job(first).snapshot().name)} · ")
        for label in badges
    ), badges
    assert any(label.startswith(f"Queued: {plain(_job(second).snapshot().name)} · ") for label in badges), badges
    {b.label: b for b in app.button}["Stop"].click()  # takes the queued run out of the queue
    app.run()
    assert _job(second).wait(5) and _job(second).snapshot().status == "cancelled"


def test_every_new_tab_shows_the_training_run_with_a_link_to_it(app):
    from apphelpers import APP
    from streamlit.testing.v1 import AppTest

    app.run()
    _start(_set_small_run(app, epochs=200))
    run_id = app.session_state["run"]
    other_tab = AppTest.from_file(APP, default_timeout=60)
    other_tab.switch_page("app_pages/theory.py")
    other_tab.run()
    name = _job(run_id).snapshot().name
    link = next(link for link in other_tab.get("page_link") if link.proto.query_string == f"run={run_id}")
    assert (
        link.label.startswith(f"Training: {plain(name)} · epoch ") and run_id in link.proto.help
    )  # by name, id beside
    assert link.proto.query_string == f"run={run_id}" and link.proto.page_script_hash  # the Train page, on the run


def test_a_tab_with_no_run_in_its_link_opens_on_the_training_run_else_the_newest_stored_one(app, monkeypatch, tmp_path):
    from apphelpers import APP, train_checkpoint
    from streamlit.testing.v1 import AppTest

    from ui import session

    monkeypatch.setattr(session, "CHECKPOINT_DIR", tmp_path)
    # Ids made elsewhere (no creation time in them): the newest file is the newest run.
    older, newer = (
        train_checkpoint(name).rename(tmp_path / f"{name}.safetensors") for name in ("zz-older", "aa-newer")
    )
    os.utime(older, (time.time() - 60, time.time() - 60))
    app.run()
    assert app.query_params.get("run") == newer.stem and app.session_state["run"] == newer.stem
    assert any(f"`{newer.stem}`" in text for text in markdown_texts(app))  # the run's panel, on its record
    monkeypatch.setattr(session, "engine_warming_up", lambda: True)  # a fresh server: the form comes first
    fresh = AppTest.from_file(APP, default_timeout=60)
    fresh.run()
    assert "run" not in fresh.session_state and not fresh.query_params.get("run")
    monkeypatch.setattr(session, "engine_warming_up", lambda: False)
    _start(_set_small_run(app, epochs=200))
    training = app.session_state["run"]
    other_tab = AppTest.from_file(APP, default_timeout=60)
    other_tab.run()
    assert other_tab.session_state["run"] == training != newer.stem


def test_form_errors_show_beside_the_start_button(app):
    app.run()
    _set_small_run(app)
    app.text_input[0].set_value("wide")
    _start(app)
    form = next(block for block in app.get("form"))
    errors = [e.value for e in form.get("error")]  # inside the form, under its button
    assert any("hidden sizes must be whole numbers" in e for e in errors), errors


def test_a_start_that_makes_no_run_leaves_the_panel_inviting_one(monkeypatch, tmp_path):
    """The page is drawn before Start's work, so the empty panel first says the run is on its way;
    when no run is made (a form error), it goes back to inviting a Start."""
    from apphelpers import APP
    from streamlit.testing.v1 import AppTest

    from ui import session

    monkeypatch.setattr(session, "CHECKPOINT_DIR", tmp_path)  # no stored run to open on
    page = AppTest.from_file(APP, default_timeout=60)
    page.run()
    _set_small_run(page)
    page.text_input[0].set_value("wide")
    _start(page)
    assert_no_exception(page)
    notes = [info.value for info in page.info]
    assert any(note.startswith("Set the hyperparameters") for note in notes), notes
    assert not any("Starting your run" in note for note in notes), notes


def test_a_chosen_data_file_is_used_whatever_the_dataset_select_says(app):
    import io

    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    buffer = io.BytesIO()
    np.savez(buffer, x=(digits.images[:300] * 16).astype(np.uint8), y=digits.target[:300])
    app.run()
    _set_small_run(app, epochs=1)
    assert {s.label: s.value for s in app.selectbox}["Dataset"] == "digits"
    name = "d" * 300 + ".npz"  # longer than a file system allows: must not crash
    next(u for u in app.file_uploader if "own file" in u.label).upload(name, buffer.getvalue())
    _start(app)
    assert_no_exception(app)
    job = _job(app.session_state["run"])
    assert job is not None and job.dataset.train_x.shape[0] + job.dataset.test_x.shape[0] == 300  # not all digits
    assert job.dataset.name.startswith("ddd") and job.dataset.name.endswith(".npz")
    saved = Path(job.config.data)
    assert all(stat.S_IMODE(folder.stat().st_mode) == 0o700 for folder in (saved.parent, saved.parent.parent))
    assert job.wait(60)


def test_an_autoencoder_run_shows_its_reconstruction_error_and_no_kl_or_bound(app):
    app.run()
    _set_small_run(app)
    {s.label: s for s in app.selectbox}["Model"].set_value("ae")
    _start(app)
    job = _job(app.session_state["run"])
    assert job.wait(60)
    app.run()
    assert_no_exception(app)
    metrics = {m.label: m.value for m in app.metric}
    assert "test −ELBO" not in metrics and float(metrics["test reconstruction error"].replace(",", "")) > 0
    names = {t.get("name") for spec in plotly_specs(app) for t in spec["data"]}
    assert names == {"reconstruction", "test reconstruction"}  # no KL, no bound, no KL-per-dimension bars
    assert any("no prior and no KL term" in i.value for i in app.info)


def test_bad_hidden_sizes_get_a_clear_message(app):
    app.run()
    _set_small_run(app)
    app.text_input[0].set_value("wide")
    _start(app)
    assert_no_exception(app)
    assert any("hidden sizes must be whole numbers" in rendered(e.value) for e in app.error)


def test_unavailable_dataset_says_where_to_put_the_files(app):
    app.run()
    _set_small_run(app, dataset="kmnist")
    _start(app)
    assert_no_exception(app)
    assert any("kmnist" in e.value.lower() for e in app.error)


def test_a_run_id_the_folder_does_not_have_is_named_as_missing_not_replaced(app):
    app.query_params["run"] = "20200101-000000-gone"
    app.run()
    assert_no_exception(app)
    assert any("20200101-000000-gone" in w.value and "not in the checkpoints folder" in w.value for w in app.warning)
    assert [p.proto.text for p in app.get("progress")] == ["No run yet"]  # no other run in its place


def _sketches(app) -> list[str]:
    """The loss curves' SVG sketches on the page (ui/light_charts.py), decoded from their data URIs."""
    import base64

    prefix = "data:image/svg+xml;base64,"
    return [
        base64.b64decode(img.url[len(prefix) :]).decode()
        for image in app.get("image")
        for img in image.proto.imgs
        if img.url.startswith(prefix)
    ]


def test_a_runs_first_points_show_as_a_sketch_until_the_chart_has_drawn(app):
    app.run()
    _start(_set_small_run(app, epochs=1))
    run_id = app.session_state["run"]
    assert _job(run_id).wait(60)
    app.run()
    assert_no_exception(app)
    steps = len(_job(run_id).snapshot().curves)
    [sketch] = _sketches(app)
    assert sketch.count("<polyline") == 3
    total = sketch.split('data-curve="total" points="')[1].split('"')[0]
    assert len(total.split()) == min(steps, 300)
    # The page's CSS hides the sketch once Plotly has drawn the chart beside it, which is sent too.
    css = [m.value for m in app.markdown if ".st-key-loss_sketch { display: none; }" in m.value]
    assert css == [
        "<style>.st-key-loss_area:has(.st-key-loss_chart .js-plotly-plot .main-svg) "
        ".st-key-loss_sketch { display: none; }</style>"
    ]
    assert any(any(t.get("name") == "KL" for t in spec["data"]) for spec in plotly_specs(app))
    # Seconds later the browser has long drawn the chart: the sketch is no longer sent.
    app.session_state["_loss_sketch_until"] = time.monotonic() - 1
    app.run()
    assert _sketches(app) == [] and any(any(t.get("name") == "KL" for t in spec["data"]) for spec in plotly_specs(app))


def test_a_tab_that_has_had_plotly_for_a_while_gets_no_sketch(app):
    from ui.light_charts import PLOTLY_LOADED_AFTER_S

    # A chart (the empty one, or an earlier run's) sent long enough ago for the browser to have Plotly.
    app.session_state["_loss_chart_sent_at"] = time.monotonic() - PLOTLY_LOADED_AFTER_S - 1
    app.run()
    _start(_set_small_run(app, epochs=1))
    assert _job(app.session_state["run"]).wait(60)
    app.run()
    assert _sketches(app) == [] and any(any(t.get("name") == "KL" for t in spec["data"]) for spec in plotly_specs(app))


def test_a_fresh_server_keeps_plotly_off_the_first_page(app, monkeypatch, tmp_path):
    from ui import session

    monkeypatch.setattr(session, "CHECKPOINT_DIR", tmp_path)  # no run yet: the empty panel
    monkeypatch.setattr(session, "engine_warming_up", lambda: True)  # torch still loading
    app.run()
    assert_no_exception(app)
    assert plotly_specs(app) == [] and "Start training" in [b.label for b in app.button]
    # No promise of curves "within a second", which a server still loading PyTorch cannot keep.
    [note] = [i.value for i in app.info]
    assert "just started and is loading PyTorch" in note and "a few seconds after Start" in note, note
    monkeypatch.setattr(session, "engine_warming_up", lambda: False)
    app.run()
    [empty] = plotly_specs(app)  # the empty loss chart: the browser loads Plotly before any run
    assert {t.get("name") for t in empty["data"]} == {"total", "reconstruction", "KL"}
    [note] = [i.value for i in app.info]
    assert note.endswith("The curves appear here within a second."), note


def test_the_objective_choices_reach_the_run(app):
    app.run()
    _set_small_run(app, epochs=1)
    choices = {group.label: group for group in app.button_group}
    assert choices["Reconstruction loss"].value == "bce" and choices["KL annealing"].value == "none"
    choices["Reconstruction loss"].set_value("mse")
    choices["KL annealing"].set_value("linear")
    _start(app)
    assert_no_exception(app)
    config = _job(app.session_state["run"]).config
    assert (config.recon, config.kl_anneal) == ("mse", "linear")
