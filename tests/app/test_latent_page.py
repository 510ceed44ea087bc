"""Latent page: a projection of as many test images as asked, coloured by label, clickable."""

import time

import numpy as np

from apphelpers import assert_no_exception, plotly_specs, trace_values


def _open_until_projected(app, run="vae-beta1", timeout=60.0):
    """AppTest does not run fragment timers: rerun the page until the background projection is done."""
    app.switch_page("app_pages/latent.py")
    app.query_params["run"] = run
    deadline = time.monotonic() + timeout
    while True:
        app.run()
        assert_no_exception(app)
        if app.get("plotly_chart") and not any("running" in p.proto.text for p in app.get("progress")):
            return app
        assert time.monotonic() < deadline, "projection did not finish"
        time.sleep(0.2)


def _points(spec) -> int:
    return sum(len(trace_values(t["x"])) for t in spec["data"])


def test_pca_scatter_has_as_many_points_as_asked_one_trace_per_class(app, saved_runs):
    _open_until_projected(app)
    points = app.select_slider(key="projection_points").value
    spec = plotly_specs(app)[0]
    assert _points(spec) == points == 359  # all of digits' 359 test images (the default asks for up to 2,000)
    assert [t["type"] for t in spec["data"]] == ["scattergl"] * 10
    assert [t["name"] for t in spec["data"]] == [str(d) for d in range(10)]
    indices = sorted(i for t in spec["data"] for i in trace_values(t["customdata"]))
    assert indices == list(range(points))  # each point carries its image index for clicks
    assert spec["layout"]["xaxis"]["title"]["text"] == "z₀"  # latent size 2: the axes are the latent
    assert spec["layout"]["title"]["text"] == "Latent means of 359 test images · epoch 2"
    assert not app.get("segmented_control")  # nothing to choose: no projection is needed


def test_fewer_points_and_tsne(app, saved_runs):
    _open_until_projected(app, run="vae-z4")
    app.select_slider(key="projection_points").set_value(200)
    app.get("segmented_control")[0].set_value("tsne")
    _open_until_projected(app, run="vae-z4")
    spec = plotly_specs(app)[0]
    assert _points(spec) == 200
    assert "t-SNE of 200 test images" in spec["layout"]["title"]["text"]


def test_without_a_click_the_page_says_how_to_pick_a_point(app, saved_runs):
    _open_until_projected(app)
    assert any("Click a point" in i.value for i in app.info)
    assert np.isfinite(app.select_slider(key="projection_points").value)
