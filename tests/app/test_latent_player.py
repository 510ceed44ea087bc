"""Latent page: the scatter played over the saved epochs, in one frame, with N(0, I)'s circles."""

from apphelpers import assert_no_exception, plotly_specs, rerun_until, trace_values

TITLE = "Latent means · epoch "


def _played(app):
    return [s for s in plotly_specs(app) if s["layout"].get("title", {}).get("text", "").startswith(TITLE)]


def _open(app, run="vae-beta1"):
    """Rerun until the page has drawn to its end (the projection runs in the background first)."""
    return rerun_until(
        app,
        "app_pages/latent.py",
        run,
        lambda app: _played(app) or any("kept no latent means" in i.value for i in app.info),
        "the played scatter",
    )


def _points(spec):
    codes = [t for t in spec["data"] if t.get("legendgroup") != "prior"]  # the circles' legend entries hold no point
    xs = [x for t in codes for x in trace_values(t["x"])]
    ys = [y for t in codes for y in trace_values(t["y"])]
    return list(zip(xs, ys))


def test_the_played_scatter_shows_the_last_epoch_in_a_frame_holding_the_prior(app, saved_runs):
    _open(app)
    assert app.select_slider(key="latent_epochs_epoch").value == 2
    assert list(app.select_slider(key="latent_epochs_epoch").options) == ["1", "2"]
    spec = _played(app)[0]
    assert spec["layout"]["title"]["text"] == TITLE + "2"
    assert len(_points(spec)) == 359  # every digits test image (fewer than the 1,000 kept)
    circles = [s for s in spec["layout"]["shapes"] if s["type"] == "circle"]
    assert sorted(c["x1"] for c in circles) == [1, 2]  # N(0, I)'s 1σ and 2σ
    x_range, y_range = spec["layout"]["xaxis"]["range"], spec["layout"]["yaxis"]["range"]
    assert x_range[0] <= -2.2 and x_range[1] >= 2.2 and y_range[0] <= -2.2 and y_range[1] >= 2.2


def test_moving_the_slider_shows_that_epoch_in_the_same_frame(app, saved_runs):
    _open(app)
    last = _played(app)[0]
    app.select_slider(key="latent_epochs_epoch").set_value(1).run()
    first = _played(app)[0]
    assert first["layout"]["title"]["text"] == TITLE + "1"
    assert _points(first) != _points(last)  # the codes moved between the epochs
    assert first["layout"]["xaxis"]["range"] == last["layout"]["xaxis"]["range"]  # the frame did not


def test_play_starts_from_the_first_epoch_and_says_pause(app, saved_runs):
    _open(app)
    assert app.button(key="latent_epochs_play").label == "Play"
    app.button(key="latent_epochs_play").click().run()
    assert_no_exception(app)
    assert app.button(key="latent_epochs_play").label == "Pause"
    assert app.button(key="latent_epochs_play").proto.icon == ":material/pause:"  # no ⏸, a blank box in Chromium
    assert app.session_state["latent_epochs_epoch"] == 1
    assert _played(app)[0]["layout"]["title"]["text"] == TITLE + "1"
    app.button(key="latent_epochs_play").click().run()
    assert app.button(key="latent_epochs_play").label == "Play"


def test_an_autoencoder_is_played_too(app, saved_runs):
    _open(app, run="ae-run")
    assert len(_points(_played(app)[0])) == 359
