"""Charts a newcomer can read: whole-number log ticks, a total told apart from the reconstruction and
from the test −ELBO when β ≠ 1, every latent dimension named, KL bars grey by the one definition of
active, and N(0, I)'s circles named off the codes."""

import numpy as np
import plotly.graph_objects as go

from ui.charts import ComparedRun, add_prior_circles, compare_figure, kl_by_epoch_figure, kl_per_dim_figure, loss_figure
from ui.curve_controls import CurveOptions, apply_curve_options
from vae_core.history import StepCurves


def _curves(beta, n=40):
    steps = np.arange(1, n + 1)
    recon = np.linspace(200, 100, n)
    kl = np.full(n, 7.5)
    betas = np.full(n, beta) if np.isscalar(beta) else np.asarray(beta, dtype=np.float64)
    return StepCurves(step=steps, total=recon + betas * kl, recon=recon, kl=kl, beta=betas, lr=np.full(n, 1e-3))


EPOCHS = [{"step": 20, "test_neg_elbo": 160.0, "test_kl": 7.5}, {"step": 40, "test_neg_elbo": 110.0, "test_kl": 7.5}]


def test_log_axes_label_the_ticks_between_powers_of_ten_with_whole_numbers():
    for figure in (
        loss_figure(_curves(1.0), EPOCHS, (), log_y=True),
        apply_curve_options(loss_figure(_curves(1.0), EPOCHS, ()), CurveOptions(log_y=True)),
        apply_curve_options(compare_figure([ComparedRun("a", _curves(1.0), EPOCHS)], "kl"), CurveOptions(log_y=True)),
    ):
        axes = []
        figure.for_each_yaxis(axes.append)
        assert axes and all(axis.type == "log" and axis.minorloglabels == "complete" for axis in axes)


def test_the_band_between_total_and_reconstruction_is_the_weighted_kl():
    figure = loss_figure(_curves(1.0), EPOCHS, ())
    names = [trace.name for trace in figure.data]
    assert names[:3] == ["reconstruction", "KL (total − reconstruction)", "total"]
    band = figure.data[1]
    assert band.fill == "tonexty" and list(band.y) == list(figure.data[2].y)  # filled down to the reconstruction
    assert np.allclose(np.asarray(band.y) - np.asarray(figure.data[0].y), 7.5)  # 1 × the KL of 7.5 nats
    assert figure.layout.legend.title.text == ""  # at β = 1 the total is the training batches' −ELBO


def test_at_beta_8_the_chart_says_why_the_total_sits_above_the_test_elbo():
    figure = loss_figure(_curves(8.0), EPOCHS, ())
    assert figure.layout.legend.title.text == "total = reconstruction + 8 × KL; test −ELBO = reconstruction + KL: "
    band = next(trace for trace in figure.data if trace.fill == "tonexty")
    assert band.name == "8 × KL (total − reconstruction)"
    assert np.allclose(np.asarray(band.y) - np.asarray(figure.data[0].y), 8 * 7.5)  # 60 nats: the gap seen
    total = next(trace for trace in figure.data if trace.name == "total")
    assert total.hovertemplate == "total = reconstruction + 8 × KL: %{y:,.1f}<extra></extra>"
    test = next(trace for trace in figure.data if trace.name == "test −ELBO")
    assert test.hovertemplate == "test −ELBO = reconstruction + KL: %{y:,.1f}<extra></extra>"


def test_a_beta_that_changed_and_free_bits_are_named():
    annealed = loss_figure(_curves(np.linspace(0, 1, 40)), EPOCHS, ())
    assert annealed.layout.legend.title.text.startswith("total = reconstruction + β × KL;")
    floored = loss_figure(_curves(1.0), EPOCHS, (), free_bits=0.5)
    assert floored.data[1].name == "KL (at least 0.5 nats per dimension) (total − reconstruction)"


def test_an_empty_loss_figure_has_no_band():
    empty = np.zeros(0)
    figure = loss_figure(StepCurves(step=empty, total=empty, recon=empty, kl=empty, beta=empty, lr=empty), (), ())
    assert {trace.name for trace in figure.data} == {"total", "reconstruction", "KL"}


def test_the_comparison_of_totals_says_what_each_total_weighs():
    runs = [ComparedRun("β=1", _curves(1.0), EPOCHS), ComparedRun("β=8", _curves(8.0), EPOCHS)]
    figure = compare_figure(runs, "total")
    assert figure.layout.legend.title.text == (
        "total = reconstruction + β × KL (each run's β); test −ELBO = reconstruction + KL: "
    )
    assert [trace.name for trace in figure.data] == ["β=1", "β=1 test −ELBO", "β=8", "β=8 test −ELBO"]
    assert figure.data[2].hovertemplate.startswith("%{fullData.name}: total = reconstruction + 8 × KL")
    assert compare_figure(runs[:1], "total").layout.legend.title.text == ""
    assert compare_figure(runs, "recon").layout.legend.title.text == ""


def test_kl_bars_are_grey_by_the_one_definition_of_active():
    values = [0.955, 0.13, 0.04, 0.05, 0.0, 0.049]  # 0.05 nats is active: the threshold counts as in use
    figure = kl_per_dim_figure(np.array(values))
    grey = [colour == "#bbbbbb" for colour in figure.data[0].marker.color]
    assert grey == [False, False, True, False, True, True]
    assert figure.layout.title.text == "KL per dimension (3 collapsed, grey)"


def test_every_latent_dimension_is_named_in_the_kl_over_training_legend():
    by_epoch = {f"z{d}": [0.5, 0.3, 0.955 if d == 2 else 0.13 if d == 6 else 0.01] for d in range(10)}
    figure = kl_by_epoch_figure(by_epoch)
    names = [trace.name for trace in figure.data]
    assert names == [f"z{d}" if d in (2, 6) else f"z{d} (collapsed)" for d in range(10)]
    assert all(trace.showlegend is not False for trace in figure.data)
    assert figure.layout.legend.orientation == "h"  # wraps into rows: none cut off at the chart's height
    assert list(figure.data[2].x) == [1, 2, 3] and list(figure.data[2].y) == [0.5, 0.3, 0.955]


def test_the_prior_circles_are_named_in_the_legend_not_on_the_codes():
    figure = add_prior_circles(go.Figure(go.Scattergl(x=[0.7, 1.4], y=[0.7, 1.4], mode="markers")))
    assert not figure.layout.annotations
    assert [(shape.x1, shape.line.dash) for shape in figure.layout.shapes] == [(1, "solid"), (2, "dash")]
    keys = [trace for trace in figure.data if trace.legendgroup == "prior"]
    assert [trace.name for trace in keys] == ["1σ of N(0, I) (39%)", "2σ of N(0, I) (86%)"]
    assert all(list(trace.x) == [None] for trace in keys)  # a legend entry only, nothing drawn on the plane
