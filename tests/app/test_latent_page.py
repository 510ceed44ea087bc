"""Latent page: a projection of as many test images as asked, coloured by label, clickable."""

import time

import numpy as np
from apphelpers import assert_no_exception, plotly_specs, rerun_until, trace_values


def _projected(app) -> bool:
    specs = plotly_specs(app)
    return (
        bool(specs)
        and not specs[0]["layout"]["title"]["text"].endswith("(preview)")
        and not any("running" in p.proto.text for p in app.get("progress"))
    )


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


def _shown_points(spec) -> np.ndarray:
    return np.array([(x, y) for t in spec["data"] for x, y in zip(trace_values(t["x"]), trace_values(t["y"]))])


def _means_of_epoch(job, count) -> tuple[int, np.ndarray]:
    """The epoch whose weights the job keeps and those weights' latent means, computed apart from the page."""
    import torch

    from vae_core.metrics import latent_means
    from vae_core.models import build_model

    epoch, weights = job.latest_weights()
    model = build_model(job.config, job.dataset.image_shape, job.dataset.num_classes)
    model.load_state_dict(weights)
    with torch.no_grad():
        return epoch, latent_means(model, job.dataset.test_x[:count]).numpy().astype(np.float64)


def _rms_spread(points) -> float:
    centred = points - points.mean(axis=0)
    return float(np.sqrt((centred**2).sum(axis=1).mean()))


def test_the_followed_scatter_shows_each_epochs_true_pca_spread(app):
    from sklearn.decomposition import PCA

    from ui.session import registry, run_data
    from vae_core.config import TrainConfig

    config = TrainConfig(data="digits", hidden=(32,), latent_dim=6, epochs=200, batch_size=32, device="cpu")
    job = registry().start(config, run_data(config))
    spreads = []
    for _ in range(4):  # four epochs followed, the run paused on each so the page and the test see the same
        _wait(lambda: job.snapshot().epoch >= len(spreads) + 1)
        job.pause()
        _wait(lambda: job.snapshot().status == "paused")
        epoch, means = _means_of_epoch(job, 359)
        _open_until_projected(app, run=job.run_id)
        spec = plotly_specs(app)[0]
        assert spec["layout"]["title"]["text"].endswith(f"epoch {epoch}")
        fresh = _rms_spread(PCA(n_components=2).fit_transform(means))
        spreads.append((_rms_spread(_shown_points(spec)), fresh))
        job.resume()
    job.stop()
    shown, fresh = np.array(spreads).T
    np.testing.assert_allclose(shown, fresh, rtol=1e-3)


def test_a_tsne_asked_for_while_the_run_trains_finishes_on_its_epoch_and_says_so(app):
    import re

    from ui.session import registry, run_data
    from vae_core.config import TrainConfig

    config = TrainConfig(data="digits", hidden=(32,), latent_dim=4, epochs=1_000, batch_size=256, device="cpu")
    job = registry().start(config, run_data(config))
    _wait(lambda: job.snapshot().epoch >= 1)
    app.switch_page("app_pages/latent.py")
    app.query_params["run"] = job.run_id
    app.run()
    app.select_slider(key="projection_points").set_value(200)
    app.get("segmented_control")[0].set_value("tsne")
    app.run()
    running = " ".join(p.proto.text for p in app.get("progress"))
    started = int(re.search(r"t-SNE of epoch (\d+) running", running).group(1))
    finished = lambda app: [s for s in plotly_specs(app) if not s["layout"]["title"]["text"].endswith("(preview)")]
    rerun_until(app, "app_pages/latent.py", job.run_id, finished, "the finished t-SNE", timeout=30)
    assert job.snapshot().epoch > started  # the run trained on while the t-SNE ran
    assert finished(app)[0]["layout"]["title"]["text"] == f"t-SNE of 200 test images · epoch {started}"
    assert f"Epoch {started}, computed in" in " ".join(c.value for c in app.caption)
    # then the newest epoch is projected, and the page says which one it shows meanwhile
    running = " ".join(p.proto.text for p in app.get("progress"))
    assert f"the scatter shows epoch {started} meanwhile" in running or not job.snapshot().active
    job.stop()
    assert job.wait(10)
