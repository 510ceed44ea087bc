"""Wall time on every chart of an app run's curves (AppTest): the Train page's loss chart, and the
comparisons of the Runs and Checkpoints pages, each run on its own clock, in seconds that increase."""

import time

import numpy as np
import pytest
from apphelpers import CHECKPOINTS, assert_no_exception, plotly_specs, trace_values, train_checkpoint
from test_runs_page import select_rows

from vae_core import runs as store
from vae_core.checkpoint import load_checkpoint
from vae_core.config import TrainConfig

WALL = "wall time (s)"
SLOWER, FASTER = "20261130-140000-c10c00", "20261130-140100-c10c01"


@pytest.fixture
def two_timed_runs():
    """Two finished runs, the second with twice the steps per epoch; removed afterwards (the folder is shared)."""
    made = [
        train_checkpoint(SLOWER, display_name="batch 128"),
        train_checkpoint(FASTER, display_name="batch 64", batch_size=64),
    ]
    yield made
    for path in made:
        path.unlink(missing_ok=True)


def seconds_on_chart(spec: dict, trace_name: str) -> np.ndarray:
    """The x values of the trace named `trace_name`; on the Checkpoints page, where a run's name is
    followed by " · <run id>", of that run's first trace, its line."""
    trace = next(
        t for t in spec["data"] if t.get("name") == trace_name or t.get("name", "").startswith(f"{trace_name} · ")
    )
    return np.array(trace_values(trace["x"]), dtype=float)


def assert_increasing_seconds(seconds: np.ndarray, at_most: float) -> None:
    assert len(seconds) > 2 and np.isfinite(seconds).all()
    assert np.all(np.diff(seconds) >= 0) and seconds[-1] > seconds[0] >= 0 and seconds[-1] <= at_most


def test_the_train_pages_loss_chart_offers_wall_time_in_seconds(app):
    from ui.session import registry, run_data

    config = TrainConfig(data="digits", hidden=(32,), latent_dim=2, batch_size=64, epochs=2, device="cpu")
    began = time.perf_counter()
    job = registry().start(config, run_data(config))
    try:
        assert job.wait(60)
        took = time.perf_counter() - began
        app.switch_page("app_pages/train.py")
        app.query_params["run"] = job.run_id
        app.run()
        assert_no_exception(app)
        x_axis = app.segmented_control(key="loss_x_axis")
        assert x_axis.options == ["step", "epoch", WALL]
        x_axis.set_value("wall").run()
        assert_no_exception(app)
        (loss,) = [spec for spec in plotly_specs(app) if any(t.get("name") == "KL" for t in spec["data"])]
        assert loss["layout"]["xaxis"]["title"]["text"] == loss["layout"]["xaxis2"]["title"]["text"] == WALL
        total = seconds_on_chart(loss, "total")
        assert len(total) == job.snapshot().step  # one point per step, each at its second
        assert_increasing_seconds(total, at_most=took)
        test_points = seconds_on_chart(loss, "test −ELBO")  # the epochs' ends, on the same clock
        assert np.isfinite(test_points).all() and test_points[-1] == pytest.approx(total[-1])
    finally:
        registry().stop_all()
        store.checkpoint_path(CHECKPOINTS, job.run_id).unlink(missing_ok=True)


def test_the_runs_page_compares_runs_each_on_its_own_clock(app, two_timed_runs):
    app.switch_page("app_pages/runs.py")
    app.run()
    select_rows(app, SLOWER, FASTER)
    assert_no_exception(app)
    x_axis = app.segmented_control(key="compare_x_axis")
    assert WALL in x_axis.options
    x_axis.set_value("wall").run()
    assert_no_exception(app)
    (figure,) = [spec for spec in plotly_specs(app) if spec["data"]]
    assert figure["layout"]["xaxis"]["title"]["text"] == WALL
    for run_id, name in ((SLOWER, "batch 128"), (FASTER, "batch 64")):
        seconds = seconds_on_chart(figure, name)
        saved = load_checkpoint(CHECKPOINTS / f"{run_id}.safetensors").state.history
        assert_increasing_seconds(seconds, at_most=saved.seconds_trained)
        assert seconds[-1] == pytest.approx(saved.seconds_trained)  # its own last second, not the other's


def test_the_checkpoints_pages_comparison_offers_wall_time(app, two_timed_runs):
    app.switch_page("app_pages/checkpoints.py")
    app.run()
    app.multiselect(key="compare_runs").set_value([str(path) for path in two_timed_runs]).run()
    app.segmented_control(key="checkpoints_compare_x_axis").set_value("wall").run()
    assert_no_exception(app)
    (figure,) = [
        spec for spec in plotly_specs(app) if spec["data"] and spec["layout"]["xaxis"]["title"]["text"] == WALL
    ]
    saved = load_checkpoint(two_timed_runs[1]).state.history
    assert_increasing_seconds(seconds_on_chart(figure, "batch 64"), at_most=saved.seconds_trained)
