"""`vae-studio experiment NAME --executor slurm` on a fake SLURM (tests/fake_slurm.py): the experiment's
runs become SLURM jobs through the queue a sweep uses, are followed to their ends, and the finding is
written from their checkpoints, measured exactly as the runs trained here are."""

import json

from tests.fake_slurm import fake_slurm  # noqa: F401  (the fixture)
from vae_core.checkpoint import load_checkpoint
from vae_core.cli import main
from vae_core.data import load_dataset
from vae_core.executor_state import states_in
from vae_core.experiments import RunResult, finding_for, measure


def test_an_experiment_on_slurm_is_one_job_per_run_and_its_finding_comes_from_their_checkpoints(
    tmp_path,
    fake_slurm,  # noqa: F811
    capsys,
):
    folder = tmp_path / "checkpoints"
    argv = ["experiment", "ae-vs-vae", "--data", "digits", "--epochs", "1", "--device", "cpu", "--seed", "2"]
    assert main([*argv, "--out-dir", str(folder), "--executor", "slurm"]) == 0
    document = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert len(fake_slurm.calls("sbatch")) == 2  # one job per run, both submitted
    states = states_in(folder)
    assert sorted(state.state for state in states.values()) == ["finished", "finished"]
    assert all(state.job_id is not None for state in states.values())
    runs = document["runs"]
    assert [run["label"] for run in runs] == ["AE", "VAE"]
    dataset = load_dataset("digits", seed=2)
    measured = []
    for run in runs:
        checkpoint = load_checkpoint(run["checkpoint"])
        assert checkpoint.run_id in states
        assert (checkpoint.name, checkpoint.status, checkpoint.state.epoch) == (
            f"ae-vs-vae: {run['label']}",
            "finished",
            1,
        )
        epochs = tuple(checkpoint.state.history.epochs)
        metrics = measure(checkpoint.build_model(), dataset, epochs)
        assert run["metrics"] == json.loads(json.dumps(metrics))
        measured.append(RunResult(run["label"], checkpoint.config, metrics, epochs, run["checkpoint"]))
    assert document["finding"] == finding_for("ae-vs-vae", measured).finding


def test_the_experiment_executor_comes_from_the_environment_and_a_bad_one_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VAE_STUDIO_EXECUTOR", "cloud")
    code = main(["experiment", "ae-vs-vae", "--data", "digits", "--epochs", "1", "--out-dir", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "error: VAE_STUDIO_EXECUTOR='cloud' is not an executor: use local (the default) or slurm"
    )
