"""The CLI: train, resume, eval, inspect, datasets; bad input exits non-zero with one line, no traceback."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vae_core.cli import main

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--data", "digits", "--hidden", "32", "--latent-dim", "2", "--batch-size", "128", "--quiet"]


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_resume_eval_inspect(tmp_path, capsys):
    one = tmp_path / "one.safetensors"
    assert main(["train", *SMALL, "--epochs", "1", "--out", str(one)]) == 0
    first = _last_json(capsys)
    assert first["epochs"] == 1 and first["steps"] == 12 and first["checkpoint"] == str(one)
    assert {"train_loss", "recon", "kl", "test_neg_elbo", "samples_per_s"} <= set(first)

    two = tmp_path / "two.safetensors"
    assert main(["train", "--resume", str(one), "--epochs", "2", "--out", str(two), "--quiet"]) == 0
    resumed = _last_json(capsys)
    assert resumed["epochs"] == 2 and resumed["steps"] == 24

    straight = tmp_path / "straight.safetensors"
    assert main(["train", *SMALL, "--epochs", "2", "--out", str(straight)]) == 0
    assert _last_json(capsys)["test_neg_elbo"] == resumed["test_neg_elbo"]  # resume is exact

    assert main(["eval", str(two), "--iwae-k", "20", "--quiet"]) == 0
    evaluation = _last_json(capsys)
    assert evaluation["k"] == 20 and len(evaluation["kl_per_dim"]) == 2
    assert evaluation["iwae_nll"] <= evaluation["test_neg_elbo"] + 1e-6  # IWAE is the tighter bound
    assert 0 <= evaluation["active_units"] <= 2

    assert main(["inspect", str(two)]) == 0
    info = _last_json(capsys)
    assert info["epoch"] == 2 and info["config"]["latent_dim"] == 2 and len(info["epoch_metrics"]) == 2


def test_datasets_lists_the_registry(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "mnist-sample   yes" in out and "digits" in out and "kmnist" in out


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "no-such-data", "--quiet"], "no-such-data"),
    (["train", "--data", "digits", "--latent-dim", "1", "--quiet"], "latent_dim must be between 2 and 128"),
    (["eval", "missing.safetensors"], "missing.safetensors"),
    (["inspect", "README.md"], "README.md"),
])
def test_bad_input_exits_non_zero_with_one_line_and_no_traceback(args, message):
    result = subprocess.run([sys.executable, "-m", "vae_core", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
