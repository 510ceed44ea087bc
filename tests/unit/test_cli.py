"""The CLI: train, resume, eval, inspect, datasets, app; a checkpoint at every epoch end that a
killed run resumes from exactly; the `vae-studio` command; bad input exits non-zero with one line,
no traceback."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vae_core import checkpoint, cli
from vae_core.checkpoint import load_checkpoint
from vae_core.cli import main
from vae_core.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--data", "digits", "--hidden", "32", "--latent-dim", "2", "--batch-size", "128", "--quiet"]


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_resume_eval_inspect(tmp_path, capsys):
    one = tmp_path / "one.safetensors"
    assert main(["train", *SMALL, "--epochs", "1", "--out", str(one), "--name", "first run"]) == 0
    first = _last_json(capsys)
    assert first["epochs"] == 1 and first["steps"] == 12 and first["checkpoint"] == str(one)
    assert {"train_loss", "recon", "kl", "test_neg_elbo", "samples_per_s"} <= set(first)
    assert first["name"] == "first run" and load_checkpoint(one).name == "first run"

    two = tmp_path / "two.safetensors"
    assert main(["train", "--resume", str(one), "--epochs", "2", "--out", str(two), "--quiet"]) == 0
    resumed = _last_json(capsys)
    assert resumed["epochs"] == 2 and resumed["steps"] == 24 and resumed["name"] == "first run"
    assert load_checkpoint(two).status == "finished"

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
    assert info["name"] == "first run"


def test_a_run_keeps_its_thread_count_and_a_resume_uses_it(tmp_path, capsys, monkeypatch):
    from vae_core.threads import THREADS_ENV

    before = torch.get_num_threads()
    one, two, three = (tmp_path / f"{name}.safetensors" for name in ("one", "two", "three"))
    try:
        monkeypatch.delenv(THREADS_ENV, raising=False)
        assert main(["train", *SMALL, "--epochs", "1", "--threads", "1", "--out", str(one)]) == 0
        assert load_checkpoint(one).config.threads == 1
        monkeypatch.setenv(THREADS_ENV, "2")
        assert main(["train", "--resume", str(one), "--epochs", "2", "--out", str(two), "--quiet"]) == 0
        assert load_checkpoint(two).config.threads == 1 and torch.get_num_threads() == 1  # its own count
        assert main(["train", *SMALL, "--epochs", "1", "--out", str(three)]) == 0
        assert load_checkpoint(three).config.threads == 2  # a new run: the variable's count, then kept
    finally:
        torch.set_num_threads(before)


def test_without_a_name_a_run_is_named_by_what_sets_it_apart(tmp_path, capsys):
    out = tmp_path / "run.safetensors"
    assert main(["train", *SMALL, "--beta", "4", "--epochs", "1", "--out", str(out)]) == 0
    assert _last_json(capsys)["name"] == load_checkpoint(out).name == "mlp z2 β4 digits h32"


def test_the_checkpoint_is_saved_at_every_epoch_end(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run.safetensors"
    seen = []
    original = checkpoint.save_trainer_checkpoint  # cmd_train imports it when it runs: patch its home

    def spy(trainer, run_id, status, path, **kwargs):
        seen.append((trainer.epoch, trainer.step_in_epoch, status))
        return original(trainer, run_id, status, path, **kwargs)

    monkeypatch.setattr(checkpoint, "save_trainer_checkpoint", spy)
    assert main(["train", *SMALL, "--epochs", "3", "--out", str(out)]) == 0
    assert seen == [(1, 0, "running"), (2, 0, "running"), (3, 0, "finished")]  # once per epoch, none after


def _train_process(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vae_core", "train", *args, "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_a_run_killed_with_sigkill_loses_at_most_its_epoch_and_resumes_exactly(tmp_path):
    flags = ["--data", "mnist-sample", "--hidden", "64", "--latent-dim", "4", "--batch-size", "100"]
    victim_path = tmp_path / "victim.safetensors"
    victim = _train_process(tmp_path, *flags, "--epochs", "1000", "--out", str(victim_path))
    try:
        deadline = time.monotonic() + 240
        saved_epoch = 0
        while saved_epoch < 2 and victim.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                saved_epoch = load_checkpoint(victim_path).state.epoch
            except CheckpointError:
                pass  # not written yet (the file appears whole: writes are atomic)
        assert victim.poll() is None, victim.stderr.read()
        os.kill(victim.pid, signal.SIGKILL)  # mid-epoch: as out of memory or a lost node would
    finally:
        victim.kill()
        victim.wait()
    left = load_checkpoint(victim_path)
    assert left.status == "running" and left.state.step_in_epoch == 0 and left.state.epoch >= 2
    assert left.state.step == left.state.epoch * 40  # 4,000 images / 100: every step of every saved epoch
    epochs = str(left.state.epoch + 1)

    resumed = _train_process(
        tmp_path, "--resume", str(victim_path), "--epochs", epochs, "--out", str(tmp_path / "resumed.safetensors")
    )
    straight = _train_process(tmp_path, *flags, "--epochs", epochs, "--out", str(tmp_path / "straight.safetensors"))
    resumed_result, straight_result = _finish(resumed), _finish(straight)
    assert resumed_result["steps"] == straight_result["steps"]
    assert resumed_result["test_neg_elbo"] == straight_result["test_neg_elbo"]
    one, other = (load_checkpoint(tmp_path / f"{name}.safetensors").state for name in ("resumed", "straight"))
    assert all(torch.equal(one.model_state[key], value) for key, value in other.model_state.items())
    assert (one.history.step_matrix() == other.history.step_matrix()).all()


def _vae_studio() -> Path:
    command = Path(sys.executable).parent / "vae-studio"
    assert command.exists(), "the vae-studio command is missing: `make setup` installs the package"
    return command


@pytest.mark.parametrize("command", ["train", "eval", "inspect", "datasets", "app"])
def test_the_vae_studio_command_has_help_on_each_subcommand(tmp_path, command):
    result = subprocess.run(
        [str(_vae_studio()), command, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: vae-studio {command}")


def test_python_m_vae_core_works_from_any_folder(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vae_core", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "datasets" in result.stdout and "app" in result.stdout


def test_app_runs_streamlit_on_this_checkouts_app_and_passes_options_on(monkeypatch):
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda command: calls.append(command) or 0)
    assert main(["app", "--server.port", "8502"]) == 0
    assert calls == [[sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", "8502"]]


def test_datasets_lists_the_registry(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "mnist-sample   yes" in out and "digits" in out and "kmnist" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--data", "no-such-data", "--quiet"], "no-such-data"),
        (["train", "--data", "digits", "--latent-dim", "1", "--quiet"], "latent_dim must be between 2 and 128"),
        (["eval", "missing.safetensors"], "missing.safetensors"),
        (["inspect", "README.md"], "README.md"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line_and_no_traceback(args, message):
    result = subprocess.run(
        [sys.executable, "-m", "vae_core", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_only_app_passes_unknown_options_on():
    result = subprocess.run(
        [sys.executable, "-m", "vae_core", "train", "--server.port", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "unrecognized arguments: --server.port 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_resume_goes_on_under_the_files_own_name_never_the_id_written_inside_it(tmp_path, capsys):
    """`train --resume gift.safetensors` whose metadata names an existing run's id: that run's file is
    left as it was, and the resumed run gets an id of its own."""
    import hashlib
    import shutil

    folder = tmp_path / "runs"
    assert (
        main(
            [
                "train",
                "--data",
                "digits",
                "--hidden",
                "16",
                "--latent-dim",
                "2",
                "--epochs",
                "1",
                "--out-dir",
                str(folder),
                "--quiet",
            ]
        )
        == 0
    )
    victim_id = _last_json(capsys)["run_id"]
    victim = folder / f"{victim_id}.safetensors"
    before = hashlib.sha256(victim.read_bytes()).hexdigest()
    gift = tmp_path / f"{victim_id}.safetensors"  # the same name elsewhere: a clash in the folder
    shutil.copy(victim, gift)
    assert main(["train", "--resume", str(gift), "--epochs", "2", "--out-dir", str(folder), "--quiet"]) == 0
    resumed = _last_json(capsys)
    assert resumed["run_id"] != victim_id and Path(resumed["checkpoint"]).parent == folder
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == before
    assert main(["train", "--resume", str(victim), "--epochs", "2", "--out-dir", str(folder), "--quiet"]) == 0
    assert _last_json(capsys)["run_id"] == victim_id  # a run of the folder goes on in place


def test_inspect_counts_active_units_from_the_kl_per_dimension_as_eval_does(tmp_path, capsys, monkeypatch):
    """A file written before metrics.ACTIVE_KL_NATS stored a count by the variance of the means; inspect
    gives the count of dimensions whose KL is at least the threshold, the same as eval's."""
    save = checkpoint.save_trainer_checkpoint

    def save_as_before(trainer, *args, **kwargs):
        trainer.history.epochs[-1].update(kl_per_dim=[0.955, 0.04], active_units=2)
        return save(trainer, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_trainer_checkpoint", save_as_before)
    path = tmp_path / "old.safetensors"
    assert main(["train", *SMALL, "--epochs", "1", "--out", str(path)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(path)]) == 0
    info = _last_json(capsys)
    assert info["active_units"] == 1 and info["epoch_metrics"][-1]["active_units"] == 1


@pytest.mark.parametrize("command", [["train", "--quiet"], ["sweep", "--beta", "1"], ["experiment", "ae-vs-vae"]])
def test_an_out_dir_that_is_a_file_is_one_line_and_exit_2(tmp_path, capsys, command):
    """Not a FileExistsError traceback with exit 1: the file stays as it was."""
    taken = tmp_path / "a-file"
    taken.write_bytes(b"mine")
    code = main([*command, "--data", "digits", "--epochs", "1", "--out-dir", str(taken)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(taken) in err and err.startswith("error: ")
    assert taken.read_bytes() == b"mine"


def test_an_error_quoting_a_huge_header_is_one_bounded_line(tmp_path, capsys):
    from vae_core.cli import MAX_ERROR_CHARS

    huge = tmp_path / "huge.npz"
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + "1, " * 3_000_000 + "), }\n"
    import zipfile

    with zipfile.ZipFile(huge, "w") as archive:
        archive.writestr(
            "x.npy", b"\x93NUMPY\x01\x00" + len(header[:65535]).to_bytes(2, "little") + header[:65535].encode()
        )
    code = main(["train", "--data", str(huge), "--epochs", "1", "--out-dir", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and len(err) <= len("error: ") + MAX_ERROR_CHARS, err[:300]
    assert err.startswith("error: huge.npz: ")  # numpy's own message spans several lines
