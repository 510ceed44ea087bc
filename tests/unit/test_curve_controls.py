"""Curve controls as pure functions: TensorBoard's smoothing, a figure mapped to epochs or seconds,
log axes, the CSV of curves (spreadsheet-safe names) and PNG bytes of a picture grid."""

import io

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from ui.charts import ComparedRun, compare_figure, loss_figure
from ui.curve_controls import CurveOptions, apply_curve_options, curves_csv, smooth
from ui.picture_download import png_bytes
from vae_core.history import RunClock, StepCurves


def curves(n=10, clock=None):
    steps = np.arange(1, n + 1)
    values = np.linspace(100, 10, n).astype(np.float32)
    return StepCurves(
        step=steps,
        total=values,
        recon=values - 1,
        kl=np.ones(n, np.float32),
        beta=np.ones(n, np.float32),
        lr=np.full(n, 1e-3, np.float32),
        clock=clock,
    )


def test_smoothing_is_debiased_and_off_at_zero():
    values = np.array([10.0, 0.0, 10.0, 0.0])
    assert smooth(values, 0.0).tolist() == values.tolist()
    smoothed = smooth(values, 0.6)
    assert smoothed[0] == 10.0  # debiased: the first point is not pulled towards 0
    expected, last, weight = [], 0.0, 0.0
    for value in values:
        last, weight = 0.6 * last + 0.4 * value, 0.6 * weight + 0.4
        expected.append(last / weight)
    assert smoothed == pytest.approx(expected)


def test_a_loss_figure_mapped_to_epochs_smoothed_and_logarithmic():
    events = [{"step": 6, "name": "beta", "value": 2.0}]
    metrics = [{"step": 5, "test_neg_elbo": 50.0, "test_kl": 1.0}, {"step": 10, "test_neg_elbo": 40.0, "test_kl": 1.0}]
    figure = apply_curve_options(
        loss_figure(curves(), metrics, events), CurveOptions(0.5, True, "epoch"), steps_per_epoch=5
    )
    total = next(t for t in figure.data if t.name == "total")
    test = next(t for t in figure.data if t.name == "test −ELBO")
    assert list(total.x) == pytest.approx(np.arange(1, 11) / 5)
    assert list(total.y) == pytest.approx(smooth(np.linspace(100, 10, 10), 0.5), rel=1e-5)
    assert list(test.x) == [1.0, 2.0] and list(test.y) == [50.0, 40.0]  # markers keep their values
    assert figure.layout.shapes[0].x0 == pytest.approx(6 / 5)  # where beta changed, in epochs
    assert figure.layout.xaxis.title.text == "epoch" and figure.layout.yaxis.type == "log"


def test_wall_time_comes_from_the_clock_and_is_unknown_outside_it():
    clock = RunClock.from_points([10, 20, None, 30], [1.0, 3.0, 4.0, 5.0])
    assert clock.at(np.array([10.0, 15.0, 30.0])).tolist() == [1.0, 2.0, 5.0]
    assert np.isnan(clock.at(np.array([5.0]))[0])  # a resumed run's earlier steps: timed elsewhere
    assert RunClock.from_points([1], [None]) is None
    figure = apply_curve_options(go.Figure(go.Scatter(x=[10, 30], y=[1, 2])), CurveOptions(x_axis="wall"), clock=clock)
    assert list(figure.data[0].x) == [1.0, 5.0] and figure.layout.xaxis.title.text == "wall time (s)"


def test_compared_runs_are_each_mapped_by_their_own_clock():
    fast, slow = RunClock.from_points([0, 10], [0.0, 1.0]), RunClock.from_points([0, 10], [0.0, 4.0])
    metrics = [{"step": 10, "test_neg_elbo": 40.0}]
    figure = compare_figure(
        [
            ComparedRun("fast", curves(clock=fast), metrics),
            ComparedRun("slow", curves(clock=slow), metrics),
            ComparedRun("untimed", curves(), metrics),
        ],
        "total",
    )
    figure = apply_curve_options(figure, CurveOptions(x_axis="wall"), clock=[fast, slow, None])
    x = {trace.name: list(trace.x) for trace in figure.data}
    assert x["fast"][-1] == pytest.approx(1.0) and x["slow"][-1] == pytest.approx(4.0)
    assert x["fast test −ELBO"] == [1.0] and x["slow test −ELBO"] == [4.0]  # each run's markers on its clock
    assert np.isnan(x["untimed"]).all()  # no clock: not drawn, rather than drawn at made-up times


def test_a_compared_runs_live_changes_are_marked_on_its_own_curve_with_what_changed():
    events = [
        {"step": 3, "name": "beta", "value": 4.0},
        {"step": 3, "name": "lr", "value": 0.005},
        {"step": 7, "name": "beta", "value": 2.0},
        {"step": 5, "name": "resume", "value": 5},
    ]
    run = curves()  # total 100 at step 1 down to 10 at step 10, by 10 a step
    figure = compare_figure([ComparedRun("plain", curves(), ()), ComparedRun("retuned", run, (), 10, events)], "total")
    [marks] = [trace for trace in figure.data if trace.name == "retuned: changed while training"]
    assert list(marks.x) == [3, 7] and list(marks.y) == [80.0, 40.0]  # on the curve, at the step of the change
    assert list(marks.text) == ["β→4, lr→0.005", "β→2"] and marks.meta == {"run": 1}
    assert not any("plain:" in (trace.name or "") for trace in figure.data)  # no change, no marks
    recon = compare_figure([ComparedRun("retuned", run, (), 10, events)], "recon")
    assert [list(t.y) for t in recon.data if t.name.endswith("changed while training")] == [[79.0, 39.0]]


def test_csv_has_one_row_per_step_and_quotes_formula_names():
    timed = curves(3, clock=RunClock.from_points([0, 3], [0.0, 1.5]))
    text = curves_csv([('=HYPERLINK("x")', timed, 3), ("plain", curves(2), None)]).decode()
    lines = text.strip().splitlines()
    assert lines[0] == "run,step,epoch,wall_s,total,recon,kl,beta,lr" and len(lines) == 6
    assert lines[1].startswith('"\'=HYPERLINK(""x"")",1,0.333333,0.5,100,99,1,1,0.001')
    assert lines[3].startswith('"\'=HYPERLINK(""x"")",3,1,1.5,')  # wall_s from the run's clock
    assert lines[-1].startswith("plain,2,,,")  # no clock: blank


def test_png_bytes_decode_to_the_same_picture():
    picture = (np.arange(12 * 8) % 256).astype(np.uint8).reshape(12, 8)
    image = Image.open(io.BytesIO(png_bytes(picture)))
    assert image.format == "PNG" and np.array_equal(np.asarray(image), picture)
