"""The sweep's parallel-coordinates view: an axis per swept field (however many), then the test
metrics, a line per run with a finished epoch, coloured by its test −ELBO."""

from ui.runs import sweep_parallel_figure
from vae_core.sweep import SweepRecord, SweptRun, sweep_summary

FIELDS = ("beta", "latent_dim", "recon")


def _sweep() -> SweepRecord:
    runs = []
    for beta in (0.5, 4.0):
        for latent_dim in (2, 10):
            for recon in ("bce", "mse"):
                run_id = f"20261206-000000-{len(runs):06x}"
                runs.append(SweptRun(run_id, {"beta": beta, "latent_dim": latent_dim, "recon": recon}))
    return SweepRecord("20261206-000000-sweep0", FIELDS, tuple(runs), created=0.0)


def test_every_field_has_an_axis_and_each_run_with_metrics_a_line():
    sweep = _sweep()
    store = {}
    for index, run in enumerate(sweep.runs[:-1]):  # the last run has not finished an epoch yet
        metrics = {"test_neg_elbo": 100.0 + index, "test_recon": 90.0 + index, "test_kl": 10.0}
        store[run.run_id] = {"status": "finished", "epoch": 3, "epochs": 3, "metrics": metrics}
    store[sweep.runs[-1].run_id] = {"status": "running", "epoch": 0, "epochs": 3, "metrics": {}}
    figure = sweep_parallel_figure(sweep, sweep_summary(sweep, store))
    (trace,) = figure.data
    axes = {axis.label: axis for axis in trace.dimensions}
    assert list(axes) == [*FIELDS, "test −ELBO (nats)", "reconstruction (nats)", "KL (nats)"]
    # Seven runs drawn, in sweep order; each field's axis reads the run's value by its place in the sweep.
    assert list(axes["beta"].values) == [0, 0, 0, 0, 1, 1, 1]
    assert list(axes["latent_dim"].values) == [0, 0, 1, 1, 0, 0, 1]
    assert list(axes["recon"].values) == [0, 1, 0, 1, 0, 1, 0]
    assert list(axes["beta"].ticktext) == ["0.5", "4"] and list(axes["recon"].ticktext) == ["bce", "mse"]
    assert list(axes["test −ELBO (nats)"].values) == [100.0 + i for i in range(7)]
    assert list(axes["reconstruction (nats)"].values) == [90.0 + i for i in range(7)]
    assert list(trace.line.color) == [100.0 + i for i in range(7)]


def test_a_sweep_with_no_finished_epoch_draws_no_line():
    sweep = _sweep()
    (trace,) = sweep_parallel_figure(sweep, sweep_summary(sweep, {})).data
    assert all(len(axis.values) == 0 for axis in trace.dimensions) and trace.line.showscale is False
