"""Every experiment runs end to end; findings come from the numbers; the robust effects hold."""

import dataclasses
import json
import math
from pathlib import Path

import pytest

from vae_core import experiments
from vae_core.checkpoint import load_checkpoint
from vae_core.config import TrainConfig
from vae_core.errors import ConfigError
from vae_core.experiments import EXPERIMENTS, METRICS, RunResult, base_config, finding_for, run_experiment


@pytest.fixture(scope="module")
def small_sample(mnist_sample):
    """A quarter of mnist-sample's training images and half its test images: one epoch is 32 steps."""
    return dataclasses.replace(
        mnist_sample,
        name="mnist-sample-quarter",
        fingerprint=mnist_sample.fingerprint + "-quarter",
        train_x=mnist_sample.train_x[:1024],
        train_y=mnist_sample.train_y[:1024],
        test_x=mnist_sample.test_x[:500],
        test_y=mnist_sample.test_y[:500],
    )


def _mentioned(result):
    """Numbers the finding must quote, formatted as the finding formats them."""
    runs = {run.label: run.metrics for run in result.runs}
    ordered = [run.metrics for run in result.runs]
    nats = experiments._nats
    name = result.experiment.name
    if name == "ae-vs-vae":
        return [
            nats(runs["AE"]["aggregate_kl"]),
            nats(runs["VAE"]["aggregate_kl"]),
            f"{runs['VAE']['prior_recognised']:.0%}",
            f"{runs['VAE']['real_recognised']:.0%} of real test images",
        ]
    if name == "beta":
        return [nats(ordered[0]["test_recon"]), nats(ordered[-1]["test_kl"])]
    if name == "collapse":
        return [f"{m['active_units']}" for m in ordered] + [nats(ordered[2]["test_kl"])]
    if name == "scale-trap":
        return [f"{runs[label]['prior_sample_spread']:.3f}" for label in ("pixels averaged", "pixels summed")]
    if name == "vqvae-vs-vae":
        return [f"uses {runs['VQ-VAE']['codes_used']} of its 64 codes", f"{runs['VAE']['recon_pixel_error']:.4f}"]
    return [f"{runs[label]['recon_pixel_error']:.4f}" for label in ("BCE", "MSE")]


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_experiment_runs_end_to_end(name, small_sample, tmp_path):
    base = base_config(epochs=1, seed=3)
    announced = []
    result = run_experiment(
        name, base, small_sample, tmp_path, on_run=lambda index, count, run: announced.append((index, count, run.label))
    )
    planned = EXPERIMENTS[name].runs(base)
    assert [run.label for run in result.runs] == [run.label for run in planned]
    assert announced == [(i, len(planned), run.label) for i, run in enumerate(planned)]
    for run, plan in zip(result.runs, planned):
        assert run.config == plan.config and run.config.epochs == 1 and run.config.seed == 3
        assert set(run.metrics) == set(METRICS)
        codebook = {"codes_used", "codebook_perplexity"}
        assert all(math.isfinite(value) for key, value in run.metrics.items() if key not in codebook)
        assert all((run.metrics[key] is None) == (run.config.model != "vqvae") for key in codebook)
        saved = load_checkpoint(run.checkpoint)
        assert saved.config == run.config and saved.state.epoch == 1
        assert saved.name == f"{name}: {run.label}"
    for quoted in _mentioned(result):
        assert quoted in result.finding
    document = json.loads(json.dumps(result.as_dict()))
    assert document["experiment"] == name and len(document["runs"]) == len(planned)
    assert document["runs"][0]["model"] == planned[0].config.model
    assert document["runs"][0]["settings"]["epochs"] == 1


def test_the_experiments_vary_what_their_claims_name():
    base = base_config(data="digits", epochs=2, seed=1)
    configs = {name: [run.config for run in experiment.runs(base)] for name, experiment in EXPERIMENTS.items()}
    assert [c.model for c in configs["ae-vs-vae"]] == ["ae", "mlp"]
    assert [c.beta for c in configs["beta"]] == [0.5, 1.0, 4.0]
    plain, annealed, free_bits = configs["collapse"]
    assert plain.kl_anneal == "none" and annealed.kl_anneal == "linear" and free_bits.free_bits > 0
    assert [c.recon_reduction for c in configs["scale-trap"]] == ["sum", "mean"]
    assert [c.recon for c in configs["mse-vs-bce"]] == ["bce", "mse"]
    for config in (c for runs in configs.values() for c in runs):
        assert (config.data, config.epochs, config.seed) == ("digits", 2, 1)


def _result(label, config=None, **metrics):
    values = dict.fromkeys(METRICS, 0.0) | {"active_units": 0} | metrics
    return RunResult(label, config or TrainConfig(), values, (), None)


def test_a_finding_follows_the_numbers_not_a_script():
    claim_holds = finding_for(
        "ae-vs-vae",
        [
            _result("AE", aggregate_kl=412.0, prior_recognised=0.03),
            _result("VAE", aggregate_kl=9.8, prior_recognised=0.71, real_recognised=0.8),
        ],
    ).finding
    assert claim_holds.startswith("The AE's aggregate KL is 412 nats against the VAE's 9.8")
    assert "3% of the AE's prior samples" in claim_holds and "71% for the VAE, and 80% of real" in claim_holds
    assert "far more often for the VAE" in claim_holds
    claim_fails = finding_for(
        "ae-vs-vae",
        [
            _result("AE", aggregate_kl=5.0, prior_recognised=0.4),
            _result("VAE", aggregate_kl=9.8, prior_recognised=0.2, real_recognised=0.8),
        ],
    ).finding
    assert "happen to sit" in claim_fails and "the AE's samples are recognised more often" in claim_fails


def test_the_collapse_finding_names_the_remedy_that_kept_more_units():
    runs = [
        _result("β=8", active_units=3, test_kl=1.0),
        _result("β=8 + KL annealing", active_units=4, test_kl=2.0),
        _result("β=8 + free bits 1", active_units=9, test_kl=8.0),
    ]
    assert finding_for("collapse", runs).finding.endswith("Free bits 1 kept 6 more dimension(s) in use.")


def test_an_unknown_experiment_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown experiment 'nope'; choose one of ae-vs-vae"):
        experiments.get("nope")


def test_a_bad_reconstruction_reduction_is_a_config_error():
    with pytest.raises(ConfigError, match="recon_reduction must be one of sum, mean"):
        TrainConfig(recon_reduction="median")


def test_after_five_epochs_the_vae_fills_the_prior_and_generates_where_the_ae_does_not(mnist_sample, tmp_path):
    result = run_experiment("ae-vs-vae", base_config(epochs=5), mnist_sample, tmp_path)
    ae, vae = (run.metrics for run in result.runs)
    assert ae["aggregate_kl"] > vae["aggregate_kl"]
    assert vae["prior_recognised"] > ae["prior_recognised"]
    assert "more often for the VAE" in result.finding
    assert ae["real_recognised"] == vae["real_recognised"] == result.real_recognised  # one judge, one ceiling
    assert f"and {vae['real_recognised']:.0%} of real test images" in result.finding


def _last_json_line(text):
    return json.loads(text.strip().splitlines()[-1])


def test_cli_lists_the_experiments(capsys):
    from vae_core.cli import main

    assert main(["experiment", "--list"]) == 0
    assert _last_json_line(capsys.readouterr().out) == list(EXPERIMENTS)


def test_cli_runs_an_experiment_into_the_out_dir(capsys, tmp_path):
    from vae_core.cli import main

    out_dir = tmp_path / "runs"
    assert (
        main(
            ["experiment", "mse-vs-bce", "--data", "digits", "--epochs", "1", "--seed", "2", "--out-dir", str(out_dir)]
        )
        == 0
    )
    captured = capsys.readouterr()
    document = _last_json_line(captured.out)
    assert "[1/2] mse-vs-bce: BCE" in captured.err and "[2/2] mse-vs-bce: MSE" in captured.err
    assert [run["model"] for run in document["runs"]] == ["mlp", "mlp"]
    assert [run["settings"]["recon"] for run in document["runs"]] == ["bce", "mse"]
    assert all(run["settings"]["data"] == "digits" and run["settings"]["seed"] == 2 for run in document["runs"])
    assert all(set(run["metrics"]) == set(METRICS) for run in document["runs"])
    assert sorted(out_dir.glob("*.safetensors")) == sorted(Path(run["checkpoint"]) for run in document["runs"])
    from vae_core.experiments import latest_findings

    assert latest_findings(out_dir)["mse-vs-bce"].finding == document["finding"]  # kept for the Theory page
    bce = document["runs"][0]["metrics"]["recon_pixel_error"]
    assert f"off by {bce:.4f} (mean squared pixel error) with BCE" in document["finding"]


def test_cli_needs_a_name_or_list(capsys):
    from vae_core.cli import main

    assert main(["experiment"]) == 2
    assert "name an experiment (ae-vs-vae, beta" in capsys.readouterr().err


def test_bench_references_are_read_from_the_results_table_and_odd_rows_skipped():
    text = "\n".join(
        [
            "| figure | target | measured | ok |",
            "| Test -ELBO, nats (mnist-sample, mlp, 20 epochs; 1,000 test images) | <= reference + 1 (= 139.12) "
            "| 137.80 (reference 138.12) | yes |",
            "| IWAE bound, nats (fashion-mnist, conv, 20 epochs; k=5,000 on 300 test images) | <= 234.27 "
            "| 1,233.30 (reference 233.27) | yes |",
            "| Test -ELBO, nats (a row whose layout changed) | - | n/a | - |",
        ]
    )
    first, second = experiments.bench_references(text)
    assert (first.data, first.model, first.value, first.bound) == ("mnist-sample", "mlp", 137.80, "−ELBO")
    assert (second.data, second.model, second.value, second.bound) == ("fashion-mnist", "conv", 1233.30, "IWAE k=5,000")
    assert experiments.bench_references("no table here") == []


def test_bench_references_are_read_from_the_file_by_the_safe_reader(tmp_path):
    import os

    results = tmp_path / "RESULTS.md"
    results.write_text(
        "| Test -ELBO, nats (digits, mlp, 5 epochs; 359 test images) | - | 30.50 (reference 31.00) | yes |\n"
    )
    [reference] = experiments.bench_references_in(results)
    assert (reference.data, reference.value) == ("digits", 30.50)
    assert experiments.bench_references_in(tmp_path / "missing.md") == []
    os.mkfifo(tmp_path / "fifo.md")  # opened by a plain read, it would block the page forever
    assert experiments.bench_references_in(tmp_path / "fifo.md") == []


def test_what_differs_from_the_published_vae_names_this_run():
    notes = experiments.what_differs(TrainConfig(hidden=(64,), latent_dim=4, recon="mse"), 4000, 3)
    assert notes[0].startswith("data: mnist-sample, 4,000 training images")
    assert "not comparable" in notes[1]
    assert "mlp 64, z=4" in notes[2] and "3 epoch(s)" in notes[3]


def test_the_page_helpers_read_the_epoch_metrics():
    epochs = ({"kl_per_dim": [0.1, 2.0, 0.5]}, {"kl_per_dim": [0.0, 3.0, 1.0]})
    run = RunResult(
        "β=1",
        TrainConfig(latent_dim=3),
        dict.fromkeys(METRICS) | {"test_recon": 150.0, "test_kl": 4.0, "active_units": 2},
        epochs,
        None,
    )
    assert experiments.kl_per_dim_by_epoch(run) == {"z0": [0.1, 0.0], "z1": [2.0, 3.0], "z2": [0.5, 1.0]}
    assert experiments.top_dimensions(epochs, 3, 2) == [1, 2]
    assert experiments.top_dimensions(({"kl_per_dim": [0.0, 0.0, 0.0]},), 3, 2) == [0, 1]  # an AE: no KL
    rows = experiments.comparison_rows(finding_for("beta", [run, run]))
    assert rows[0] == {"run": "β=1", "reconstruction (nats)": "150.0", "KL (nats)": "4.00", "active units": "2"}
    assert experiments.format_metric("prior_recognised", None) == "–"


def test_measure_counts_active_units_from_the_kl_per_dimension_not_from_a_stored_count():
    """A run written before metrics.ACTIVE_KL_NATS stored 8 "active" of 10 over 8 bars below 0.05 nats:
    the finding quotes the count the bars show."""
    from types import SimpleNamespace

    import torch

    from vae_core.models import MLPVAE

    images = torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    data = SimpleNamespace(test_x=images, test_y=None, has_labels=False)
    kl = [0.01, 0.02, 0.955, 0.03, 0.04, 0.02, 0.13, 0.01, 0.02, 0.03]
    measured = experiments.measure(MLPVAE((1, 4, 4), 10, (8,)), data, [{"kl_per_dim": kl, "active_units": 8}])
    assert measured["active_units"] == 2
