"""The pure view helpers: the loss chart after a divergence and with lr/β changes, loss numbers in a
metric tile, and text from files escaped for Markdown."""

import numpy as np

from ui.charts import COLOURS, loss_figure
from ui.widgets import nats, plain
from vae_core.history import StepCurves


def _curves(total: np.ndarray) -> StepCurves:
    steps = np.arange(1, len(total) + 1)
    return StepCurves(
        step=steps,
        total=total,
        recon=total * 0.9,
        kl=total * 0.1,
        beta=np.ones(len(total)),
        lr=np.full(len(total), 1e-3),
    )


def test_a_divergence_spike_does_not_flatten_the_loss_axis():
    total = np.full(400, 150.0) + np.linspace(0, 10, 400)
    total[300] = 816_851.0  # lr 10: one step explodes
    figure = loss_figure(_curves(total), (), ())
    low, high = figure.layout.yaxis.range
    assert low <= 150 and 160 <= high < 1_000  # the curve's bulk fills the axis; the spike runs off it
    calm = loss_figure(_curves(np.full(400, 150.0) + np.linspace(0, 10, 400)), (), ())
    assert calm.layout.yaxis.range is None and calm.layout.yaxis.autorange  # nothing to clip


def test_log_scale_is_offered_for_spikes():
    total = np.full(100, 150.0)
    assert loss_figure(_curves(total), (), (), log_y=True).layout.yaxis.type == "log"


def test_lr_and_beta_labels_never_overlap_and_test_kl_has_its_own_colour():
    events = [
        {"step": 200, "name": "lr", "value": 0.005},
        {"step": 200, "name": "beta", "value": 4.0},
        {"step": 205, "name": "beta", "value": 2.0},
        {"step": 390, "name": "lr", "value": 0.001},
    ]
    epochs = [{"step": 100 * i, "test_neg_elbo": 150.0, "test_kl": 20.0, "test_recon": 130.0} for i in (1, 2, 3)]
    figure = loss_figure(_curves(np.full(400, 150.0)), epochs, events)
    labels = {a.text: a for a in figure.layout.annotations if a.xref == "x"}
    assert set(labels) == {"lr=0.005, beta=4", "beta=2", "lr=0.001"}  # one label per step, both names in it
    assert labels["lr=0.005, beta=4"].yshift != labels["beta=2"].yshift  # 5 steps apart: stacked, not on top
    assert labels["lr=0.001"].yshift == 0  # far from the others: the first row
    colours = [t.marker.color if t.mode == "markers" else t.line.color for t in figure.data]
    assert len(set(colours)) == len(colours), colours
    test_kl = next(t for t in figure.data if t.name == "test KL")
    assert test_kl.marker.color == COLOURS["test_kl"] != COLOURS["kl"]


def test_loss_numbers_stay_short_enough_for_a_metric_tile():
    assert nats(153.824) == "153.82" and nats(9_999.99) == "9,999.99"
    assert nats(816_851.2) == "816.9k" and nats(12_345_678.0) == "12.3M" and nats(4.1e12) == "4.1e+12"
    assert nats(float("nan")) == nats(None) == "–"


def test_text_from_files_is_escaped_for_markdown():
    crafted = "![x](https://evil.example/x.png) [Log in](https://evil.example) :red[alert] www.evil.example"
    escaped = plain(crafted)
    for syntax in ("](", "![", ":red[", "www.evil"):
        assert syntax not in escaped, syntax
    import re

    assert re.sub(r"\\(.)", r"\1", escaped) == crafted  # read back, it is the same text
