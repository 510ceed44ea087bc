"""Latent page: a projection of as many test images as asked, coloured by label, clickable."""

import time

import numpy as np

from apphelpers import assert_no_exception, plotly_specs, rerun_until, trace_values


def _projected(app) -> bool:
    specs = plotly_specs(app)
    return bool(specs) and not specs[0]["layout"]["title"]["text"].endswith("(preview)") \
        and not any("running" in p.proto.text for p in app.get("progress"))


def _open_until_projected(app, run="vae-beta1"):
    return rerun_until(app, "app_pages/latent.py", run, _projected, "the finished projection")


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


def _wait(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_scatter_follows_a_training_run_epoch_by_epoch_in_a_steady_frame(app):
    from ui.session import registry, run_data
    from vae_core.config import TrainConfig

    config = TrainConfig(data="digits", hidden=(32,), latent_dim=4, epochs=200, batch_size=64, device="cpu")
    job = registry().start(config, run_data(config))
    _wait(lambda: job.snapshot().epoch >= 1)
    job.pause()
    _wait(lambda: job.snapshot().status == "paused")
    first_epoch = job.snapshot().epoch
    _open_until_projected(app, run=job.run_id)
    first = plotly_specs(app)[0]
    assert first["layout"]["title"]["text"].endswith(f"epoch {first_epoch}")
    assert "It follows the run" in " ".join(c.value for c in app.caption)

    job.resume()
    _wait(lambda: job.snapshot().epoch >= first_epoch + 2)
    job.pause()
    _wait(lambda: job.snapshot().status == "paused")
    app.run()  # what the page's timer does once it sees the new epoch
    assert_no_exception(app)
    shown = plotly_specs(app)
    assert shown, "the last epoch's scatter stays up while the new one is projected"
    _open_until_projected(app, run=job.run_id)
    later = plotly_specs(app)[0]
    assert later["layout"]["title"]["text"].endswith(f"epoch {job.snapshot().epoch}")
    for axis in ("xaxis", "yaxis"):  # the frame only ever grows: nothing jumps
        before, after = first["layout"][axis]["range"], later["layout"][axis]["range"]
        assert after[0] <= before[0] and after[1] >= before[1], (axis, before, after)
    job.stop()
    assert job.wait(10)
