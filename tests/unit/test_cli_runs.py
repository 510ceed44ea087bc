"""`vae-studio runs` and `vae-studio sweep` as a user runs them: subprocesses, JSON on the last line,
a CLI run followed through its progress record, and killed without ending."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vae_core.checkpoint import load_checkpoint
from vae_core.runs import PROGRESS_SUFFIX, read_progress
from vae_core.sweep import list_sweeps

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--data", "digits", "--hidden", "16", "--latent-dim", "2", "--batch-size", "128", "--quiet"]
RUN_KEYS = {"run_id", "name", "status", "epoch", "test_neg_elbo", "checkpoint"}


def cli(*args, env=None, timeout=300):
    environment = {k: v for k, v in os.environ.items() if k != "VAE_STUDIO_CHECKPOINTS"}  # only what a test sets
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "vae_core", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_json(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_sweep_trains_every_combination_then_runs_lists_them(tmp_path):
    result = cli("sweep", *TINY, "--beta", "0.5", "1", "--epochs", "1", "--out-dir", str(tmp_path))
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    finished = last_json(result)
    assert lines[:-1] == finished and len(finished) == 2  # one line per run, then the list of them all
    assert [run["sweep"] for run in finished] == [{"beta": "0.5"}, {"beta": "1"}]
    for run, beta in zip(finished, (0.5, 1.0)):
        assert run["status"] == "finished" and run["epochs"] == 1
        checkpoint = load_checkpoint(run["checkpoint"])
        assert Path(run["checkpoint"]).parent == tmp_path and checkpoint.run_id == run["run_id"]
        assert checkpoint.config.beta == beta and checkpoint.config.latent_dim == 2 and checkpoint.name == run["name"]
    assert finished[0]["name"] != finished[1]["name"]  # named by what sets them apart: β0.5, β1
    # Recorded as a sweep of the folder, as the app's form records one, for the Runs page's summary.
    [sweep] = list_sweeps(tmp_path)
    assert sweep.fields == ("beta",)
    assert [(run.run_id, run.values) for run in sweep.runs] == [
        (run["run_id"], {"beta": beta}) for run, beta in zip(finished, (0.5, 1.0))
    ]

    listed = last_json(cli("runs", str(tmp_path)))
    assert [run["run_id"] for run in listed] == [run["run_id"] for run in finished]
    for row, run in zip(listed, finished):
        assert set(row) >= RUN_KEYS and row["status"] == "finished" and row["epoch"] == 1
        assert row["test_neg_elbo"] == pytest.approx(run["test_neg_elbo"]) and row["checkpoint"] == run["checkpoint"]
    # Without DIR: the app's folder, from the variable the app reads.
    assert last_json(cli("runs", env={"VAE_STUDIO_CHECKPOINTS": str(tmp_path)})) == listed


def test_sweep_checks_every_combination_before_training_any(tmp_path):
    bad = cli("sweep", *TINY, "--beta", "0.5", "2000", "--out-dir", str(tmp_path))
    assert bad.returncode == 2 and "beta must be between 0 and 1000, not 2000" in bad.stderr
    assert "Traceback" not in bad.stderr and not list(tmp_path.iterdir())
    wrong = cli("sweep", *TINY, "--model", "mlp", "gpt", "--out-dir", str(tmp_path))
    assert wrong.returncode == 2 and "invalid choice: 'gpt'" in wrong.stderr and not list(tmp_path.iterdir())
    huge = cli(
        "sweep",
        *TINY,
        "--seed",
        *map(str, range(17)),
        "--lr",
        "1e-3",
        "2e-3",
        "--beta",
        *map(str, range(8)),
        "--out-dir",
        str(tmp_path),
    )
    assert huge.returncode == 2 and "272 combinations, more than the limit of 64 a request" in huge.stderr


def test_runs_refuses_a_missing_folder(tmp_path):
    result = cli("runs", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "is not a folder" in result.stderr and "Traceback" not in result.stderr


def test_a_cli_run_is_followed_live_and_seen_killed(tmp_path):
    """A long CLI run writes its progress record as it trains; SIGKILLed, `runs` says killed and keeps
    the epochs it saved."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vae_core",
            "train",
            *TINY,
            "--batch-size",
            "16",
            "--epochs",
            "200",
            "--out-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        record, steps = None, []
        while time.monotonic() < deadline and not (record and record.epoch >= 1 and len(set(steps)) >= 3):
            found = list(tmp_path.glob(f"*{PROGRESS_SUFFIX}"))
            if found:
                try:
                    record = read_progress(found[0])
                    steps.append(record.step)
                except Exception:
                    pass  # not written yet
            time.sleep(0.2)
        assert record is not None and record.epoch >= 1, process.stderr.read1().decode() if process.poll() else ""
        assert steps == sorted(steps) and len(set(steps)) >= 3  # rewritten as the run goes
        live = last_json(cli("runs", str(tmp_path)))
        assert len(live) == 1 and live[0]["status"] == "running" and live[0]["live"]
        assert live[0]["run_id"] == found[0].name.removesuffix(PROGRESS_SUFFIX)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    (killed,) = last_json(cli("runs", str(tmp_path)))
    assert killed["status"] == "killed" and not killed["live"] and killed["epoch"] >= 1
    assert killed["checkpoint"] and load_checkpoint(killed["checkpoint"]).state.epoch >= 1


def test_a_settled_folder_is_listed_again_from_the_remembered_output_and_a_change_is_seen(tmp_path):
    """`runs` remembers what it printed for a folder where every run had ended and nothing changed for
    a while; the next call prints the same, and a run added since is listed."""
    import os
    import shutil

    folder = tmp_path / "runs"
    assert cli("train", *TINY, "--out-dir", str(folder)).returncode == 0
    quiet = os.stat(folder).st_mtime - 5
    os.utime(folder, (quiet, quiet))  # as if the folder had been quiet a while
    cache = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = cli("runs", str(folder), env=cache)
    (remembered,) = (tmp_path / "cache").rglob("*.runs-printed")
    remembered.write_bytes(remembered.read_bytes().replace(b"epoch   1/1", b"epoch   1/1 "))  # marks a copy
    again = cli("runs", str(folder), env=cache)
    assert first.returncode == again.returncode == 0
    assert again.stdout == first.stdout.replace("epoch   1/1", "epoch   1/1 ")  # copied from the cache, as written
    assert first.stdout.endswith("]\n") and again.stdout.endswith("]\n")
    (only,) = json.loads(first.stdout.strip().splitlines()[-1])
    copy = folder / "20991231-000000-copied.safetensors"
    shutil.copy(only["checkpoint"], copy)  # a new file: the folder changed
    listed = json.loads(cli("runs", str(folder), env=cache).stdout.strip().splitlines()[-1])
    assert {run["run_id"] for run in listed} == {only["run_id"], "20991231-000000-copied"}
