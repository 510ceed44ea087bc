"""The loss curves' SVG sketch (ui/light_charts.py): what it draws, where, and what it leaves out."""

import math
import xml.etree.ElementTree as ET

import numpy as np

from ui.light_charts import (
    COLOURS,
    HEIGHT,
    MARGIN_BOTTOM,
    MARGIN_LEFT,
    MARGIN_TOP,
    SKETCH_POINTS,
    downsample,
    hide_once_drawn,
    loss_sketch_svg,
)
from vae_core.history import StepCurves

SVG = "{http://www.w3.org/2000/svg}"


def _curves(total, recon=None, kl=None, first_step=1):
    total = np.asarray(total, dtype=np.float64)
    steps = np.arange(first_step, first_step + len(total), dtype=np.float64)
    recon = total * 0.9 if recon is None else np.asarray(recon, dtype=np.float64)
    kl = total * 0.1 if kl is None else np.asarray(kl, dtype=np.float64)
    return StepCurves(step=steps, total=total, recon=recon, kl=kl, beta=np.ones_like(total), lr=np.ones_like(total))


def _parse(svg: str):
    root = ET.fromstring(svg)
    lines = {
        line.get("data-curve"): [tuple(map(float, point.split(","))) for point in line.get("points").split()]
        for line in root.iter(f"{SVG}polyline")
    }
    texts = [text.text for text in root.iter(f"{SVG}text")]
    return root, lines, texts


def test_a_vae_sketch_has_total_and_reconstruction_left_and_kl_right_with_one_point_per_step():
    root, lines, texts = _parse(loss_sketch_svg(_curves([500.0, 400.0, 300.0])))
    assert (root.get("width"), root.get("height")) == ("800", "380")  # the loss chart's height
    assert sorted(lines) == ["kl", "recon", "total"]
    assert all(len(points) == 3 for points in lines.values())
    assert "Total and reconstruction (nats)" in texts and "KL (nats)" in texts
    assert {"total", "reconstruction", "KL"} <= set(texts)  # the legend
    # The KL panel lies right of the other; steps grow to the right, a falling loss goes down the panel.
    assert min(x for x, _ in lines["kl"]) > max(x for x, _ in lines["total"])
    xs, ys = zip(*lines["total"])
    assert xs[0] == MARGIN_LEFT and xs == tuple(sorted(xs)) and ys == tuple(sorted(ys))
    # Its range runs from the panel's top (the highest value) to its bottom (the lowest).
    assert ys[0] == MARGIN_TOP and math.isclose(max(y for _, y in lines["recon"]), HEIGHT - MARGIN_BOTTOM)
    colours = {line.get("data-curve"): line.get("stroke") for line in root.iter(f"{SVG}polyline")}
    assert colours == {key: COLOURS[key] for key in ("total", "recon", "kl")}


def test_a_single_step_already_shows_as_a_dot():
    root, lines, _ = _parse(loss_sketch_svg(_curves([540.0])))
    assert all(len(points) == 1 for points in lines.values())
    dots = [(float(c.get("cx")), float(c.get("cy"))) for c in root.iter(f"{SVG}circle")]
    assert len(dots) == 3 and all(math.isfinite(x) and math.isfinite(y) for x, y in dots)


def test_an_autoencoder_sketch_shows_its_reconstruction_alone():
    _, lines, texts = _parse(loss_sketch_svg(_curves([80.0, 60.0]), variational=False))
    assert list(lines) == ["recon"]
    assert "Reconstruction error (no KL: an autoencoder)" in texts and "KL (nats)" not in texts


def test_a_long_run_is_drawn_with_at_most_sketch_points_a_curve():
    _, lines, _ = _parse(loss_sketch_svg(_curves(np.linspace(500, 100, 50_000))))
    assert all(len(points) == SKETCH_POINTS for points in lines.values())


def test_a_diverging_run_leaves_out_what_cannot_be_drawn():
    total = [500.0, math.inf, math.nan, 300.0]
    svg = loss_sketch_svg(_curves(total, recon=total, kl=[1.0, 2.0, 0.0, 1.0]), log_y=True)
    assert "nan" not in svg and "inf" not in svg
    _, lines, texts = _parse(svg)
    assert len(lines["total"]) == len(lines["recon"]) == 2  # the finite points
    assert len(lines["kl"]) == 3  # on a log axis, 0 has no place
    assert "500" in texts and "300" in texts  # the y range is the data's own


def test_y_labels_stay_short_however_large_the_loss():
    _, _, texts = _parse(loss_sketch_svg(_curves([1e38, 5.0])))
    assert "1e+38" in texts and max(len(t) for t in texts if t[0].isdigit()) <= 9


def test_no_steps_yet_draws_empty_panels():
    empty = np.zeros(0)
    root, lines, texts = _parse(
        loss_sketch_svg(StepCurves(step=empty, total=empty, recon=empty, kl=empty, beta=empty, lr=empty))
    )
    assert lines == {} and "KL (nats)" in texts


def test_the_css_hides_the_sketch_once_the_chart_beside_it_has_drawn():
    assert hide_once_drawn("area", "sketch", "chart") == (
        "<style>.st-key-area:has(.st-key-chart .js-plotly-plot .main-svg) .st-key-sketch { display: none; }</style>"
    )


def test_downsample_keeps_short_curves_and_averages_long_ones_in_buckets():
    steps, values = np.arange(10.0), np.arange(10.0) * 2
    kept_steps, kept_values = downsample(steps, values, 10)
    assert np.array_equal(kept_steps, steps) and np.array_equal(kept_values, values)
    bucket_steps, bucket_values = downsample(steps, values, 5)
    assert bucket_steps.tolist() == [0.5, 2.5, 4.5, 6.5, 8.5] and bucket_values.tolist() == [1, 5, 9, 13, 17]
