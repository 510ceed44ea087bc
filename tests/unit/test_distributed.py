"""Distributed training (issue 16): torchrun with 2 Gloo processes on this machine's CPU computes what
a single process computes with the same global batch and seed (losses, weights, Adam's moments,
test metrics, pictures), and its checkpoints resume in a single process and the reverse; rank 0
alone writes and answers. Also: the launch read from torchrun's variables, batches that would
leave a process without an image, --precision bf16 and --compile on the CPU, and the CUDA paths
where a GPU exists.

The batch of 105 images splits 53/52 between the two processes at every step (and the last batch,
73 of digits' 1438 training images, 37/36), so the weighting of uneven shards is what is tested."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vae_core.checkpoint import RunCheckpoint, load_checkpoint
from vae_core.cli import main
from vae_core.config import TrainConfig, default_run_name
from vae_core.distributed import Launch, check_shards, torchrun_launch
from vae_core.errors import CheckpointError, ConfigError
from vae_core.loop import train_step
from vae_core.runs import progress_path
from vae_core.safetensors_io import read_checkpoint, write_checkpoint
from vae_core.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--data", "digits", "--hidden", "32", "--latent-dim", "4", "--batch-size", "105", "--quiet"]
FREE_BITS = [*SMALL, "--free-bits", "0.3"]  # the KL floor is judged on the whole batch's KL per dimension
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}  # the processes add their shares in another order than one process


def _torchrun() -> list[str]:
    """The `torchrun` of this interpreter's environment (or its module, which is the same program)."""
    script = Path(sys.executable).with_name("torchrun")
    return [str(script)] if script.exists() else [sys.executable, "-m", "torch.distributed.run"]


def ddp_train(*args: str, device: str = "cpu") -> list[dict]:
    """`torchrun --standalone --nproc_per_node 2 -m vae_core train ...` (Gloo on the CPU, NCCL on
    GPUs); the JSON lines it printed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*_torchrun(), "--standalone", "--nproc_per_node", "2", "-m", "vae_core", "train", "--device", device, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def single_train(*args: str, device: str = "cpu") -> None:
    assert main(["train", "--device", device, *args]) == 0


def assert_same_run(got: RunCheckpoint, want: RunCheckpoint) -> None:
    """The same training, up to the order in which the processes' shares were added."""
    assert (got.state.epoch, got.state.step, got.state.step_in_epoch) == (want.state.epoch, want.state.step, 0)
    np.testing.assert_allclose(got.state.history.step_matrix(), want.state.history.step_matrix(), **TOLERANCE)
    for key, weight in want.state.model_state.items():
        torch.testing.assert_close(got.state.model_state[key], weight, **TOLERANCE)
    for index, moments in want.state.optimizer_state["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(got.state.optimizer_state["state"][index][name], moments[name], **TOLERANCE)
    assert torch.equal(got.state.noise_state, want.state.noise_state)  # every process drew the batch's noise
    for mine, theirs in zip(got.state.history.epochs, want.state.history.epochs, strict=True):
        for key in ("train_loss", "test_neg_elbo", "test_recon", "test_kl"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5), key
        assert mine["active_units"] == theirs["active_units"]
    for mine, theirs in zip(got.state.history.frames, want.state.history.frames, strict=True):
        # Pictures are bytes: a weight 1e-7 away may round one pixel value to its neighbour.
        assert np.abs(mine.samples.astype(int) - theirs.samples).max() <= 1
        assert np.abs(mine.reconstructions.astype(int) - theirs.reconstructions).max() <= 1


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Single-process runs and torchrun runs of the same trainings, and resumes across the two: the
    checkpoint of each by name, and "ddp_1_lines", the JSON lines the first torchrun run printed."""
    folder = tmp_path_factory.mktemp("ddp")
    paths = {
        name: folder / f"{name}.safetensors"
        for name in ("single_1", "single_2", "ddp_1", "ddp_then_single_2", "plain_1", "plain_2", "single_then_ddp_2")
    }
    single_train(*FREE_BITS, "--epochs", "1", "--out", str(paths["single_1"]))
    single_train("--resume", str(paths["single_1"]), "--epochs", "2", "--out", str(paths["single_2"]), "--quiet")
    lines = ddp_train(*FREE_BITS, "--epochs", "1", "--out", str(paths["ddp_1"]), "--name", "two processes")
    paths["ddp_1_lines"] = lines
    single_train("--resume", str(paths["ddp_1"]), "--epochs", "2", "--out", str(paths["ddp_then_single_2"]), "--quiet")
    single_train(*SMALL, "--epochs", "1", "--out", str(paths["plain_1"]))
    single_train("--resume", str(paths["plain_1"]), "--epochs", "2", "--out", str(paths["plain_2"]), "--quiet")
    ddp_train("--resume", str(paths["plain_1"]), "--epochs", "2", "--out", str(paths["single_then_ddp_2"]), "--quiet")
    return paths


def test_two_gloo_processes_train_as_one_process_with_the_same_global_batch(runs):
    ddp, single = load_checkpoint(runs["ddp_1"]), load_checkpoint(runs["single_1"])
    assert_same_run(ddp, single)
    assert ddp.state.step == 14  # ceil(1438 / 105): --batch-size is the global batch
    assert ddp.world_size == 2 and single.world_size == 1 and ddp.summary()["world_size"] == 2


def test_rank_0_alone_prints_the_result_and_writes_the_files(runs, capsys):
    lines = runs["ddp_1_lines"]
    assert len(lines) == 1, "one JSON line, from rank 0"
    result = lines[0]
    assert result["world_size"] == 2 and result["steps"] == 14 and result["name"] == "two processes"
    assert result["checkpoint"] == str(runs["ddp_1"])
    assert result["test_neg_elbo"] == pytest.approx(
        load_checkpoint(runs["single_1"]).state.history.epochs[-1]["test_neg_elbo"], rel=1e-5
    )
    record = json.loads(progress_path(runs["ddp_1"]).read_text())  # what the app follows
    assert record["status"] == "finished" and record["step"] == 14 and record["run_id"] == result["run_id"]
    capsys.readouterr()
    assert main(["runs", str(runs["ddp_1"].parent)]) == 0  # the app's listing of the folder
    listed = {run["name"]: run for run in json.loads(capsys.readouterr().out.strip().splitlines()[-1])}
    assert listed["two processes"]["status"] == "finished" and listed["two processes"]["epoch"] == 1


def test_a_torchrun_checkpoint_resumes_in_a_single_process(runs):
    resumed = load_checkpoint(runs["ddp_then_single_2"])
    assert_same_run(resumed, load_checkpoint(runs["single_2"]))
    assert resumed.world_size == 1


def test_a_single_process_checkpoint_resumes_under_torchrun(runs):
    resumed = load_checkpoint(runs["single_then_ddp_2"])
    assert_same_run(resumed, load_checkpoint(runs["plain_2"]))
    assert resumed.world_size == 2 and resumed.status == "finished"


def test_a_vqvae_trains_under_torchrun_as_in_one_process(tmp_path):
    """Its codebook terms are scaled like the loss, and its code usage (a buffer the forward pass
    updates) is learnt from the whole batch, not from rank 0's shard."""
    single, ddp = tmp_path / "single.safetensors", tmp_path / "ddp.safetensors"
    vqvae = [*SMALL, "--model", "vqvae", "--epochs", "1"]
    single_train(*vqvae, "--out", str(single))
    ddp_train(*vqvae, "--out", str(ddp))
    got, want = load_checkpoint(ddp), load_checkpoint(single)
    assert "code_counts" in want.state.model_state
    assert_same_run(got, want)


@pytest.mark.parametrize("value", ["2", -1, 2.5, True])
def test_a_world_size_that_is_no_count_of_processes_is_refused(runs, tmp_path, value):
    tensors, metadata = read_checkpoint(runs["ddp_1"])
    forged = tmp_path / "forged.safetensors"
    write_checkpoint(forged, tensors, {**metadata, "world_size": value})
    with pytest.raises(CheckpointError, match="forged.safetensors: world_size must be a whole number"):
        load_checkpoint(forged)
    write_checkpoint(forged, tensors, {key: item for key, item in metadata.items() if key != "world_size"})
    assert load_checkpoint(forged).world_size == 1  # a file from before torchrun


# -- the launch, from torchrun's variables -----------------------------------------------------------
TORCHRUN_ENV = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "MASTER_ADDR": "node0", "MASTER_PORT": "29500"}


def test_the_launch_is_read_from_torchruns_variables():
    assert torchrun_launch({}) is None  # started on its own
    assert torchrun_launch(TORCHRUN_ENV) == Launch(rank=1, local_rank=1, world_size=4)
    assert not torchrun_launch(TORCHRUN_ENV).writes and Launch(0, 0, 4).writes
    assert torchrun_launch({**TORCHRUN_ENV, "RANK": "0", "WORLD_SIZE": "1"}) is None  # one process: as alone


@pytest.mark.parametrize(
    "change, message",
    [
        ({"RANK": "one"}, "RANK must be a whole number"),
        ({"LOCAL_RANK": ""}, "LOCAL_RANK must be a whole number"),
        ({"RANK": "4"}, "RANK 4 does not fit WORLD_SIZE 4"),
        ({"MASTER_ADDR": ""}, "MASTER_ADDR not set: start distributed training with torchrun"),
    ],
)
def test_a_broken_launch_is_refused_with_the_variable_named(change, message):
    with pytest.raises(ConfigError, match=message):
        torchrun_launch({**TORCHRUN_ENV, **change})


def test_a_sweep_under_torchrun_is_refused(monkeypatch, capsys):
    for name, value in TORCHRUN_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RANK", "0")
    assert main(["sweep", *SMALL, "--beta", "0.5", "1"]) == 2
    assert "under torchrun, start one `train` per run instead" in capsys.readouterr().err


def test_batches_that_leave_a_process_without_an_image_are_refused():
    check_shards(1438, 105, 2)
    check_shards(1400, 100, 4)  # no last partial batch
    with pytest.raises(ConfigError, match="leaves 1 in the last batch of each epoch"):
        check_shards(1401, 100, 2)
    with pytest.raises(ConfigError, match="every batch needs at least 8 images"):
        check_shards(1438, 4, 8)


# -- precision and compile ---------------------------------------------------------------------------
def test_bf16_trains_on_the_cpu_and_is_kept_with_the_run(tmp_path, capsys):
    fp32, bf16 = tmp_path / "fp32.safetensors", tmp_path / "bf16.safetensors"
    single_train(*SMALL, "--epochs", "1", "--out", str(fp32))
    single_train(*SMALL, "--epochs", "1", "--precision", "bf16", "--out", str(bf16))
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["precision"] == "bf16" and "bf16" in result["name"]
    run = load_checkpoint(bf16)
    assert run.config.precision == "bf16" and default_run_name(run.config).endswith("bf16")
    assert all(value.dtype == torch.float32 for value in run.state.model_state.values())  # master weights
    exact, rounded = load_checkpoint(fp32).state.history, run.state.history
    assert not np.array_equal(rounded.step_matrix()[:, 1], exact.step_matrix()[:, 1])  # bf16 did round
    # ...and trains as well: the test bound within 2% of float32's after one epoch.
    assert rounded.epochs[-1]["test_neg_elbo"] == pytest.approx(exact.epochs[-1]["test_neg_elbo"], rel=0.02)


def test_precision_is_checked_with_the_rest_of_the_config():
    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16, not 'fp16'"):
        TrainConfig(precision="fp16")
    assert TrainConfig.from_dict({"latent_dim": 2}).precision == "fp32"  # files from before the option


def test_compile_trains_a_tiny_epoch_on_the_cpu(tmp_path, capsys):
    eager, compiled = tmp_path / "eager.safetensors", tmp_path / "compiled.safetensors"
    single_train(*SMALL, "--epochs", "1", "--out", str(eager))
    single_train(*SMALL, "--epochs", "1", "--compile", "--out", str(compiled))
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["compiled"] is True and result["steps"] == 14
    # Compiled kernels fuse operations, so the sums may round differently; the training is the same.
    np.testing.assert_allclose(
        load_checkpoint(compiled).state.history.step_matrix(),
        load_checkpoint(eager).state.history.step_matrix(),
        rtol=1e-4,
        atol=1e-4,
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_and_compile_train_on_a_gpu(tmp_path, capsys):
    out = tmp_path / "gpu.safetensors"
    single_train(*SMALL, "--precision", "bf16", "--compile", "--epochs", "1", "--out", str(out), device="cuda")
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["device"].startswith("cuda") and result["precision"] == "bf16" and result["compiled"] is True
    assert np.isfinite(load_checkpoint(out).state.history.step_matrix()).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_gpu_step_never_waits_for_the_device(digits, precision):
    """Data on the device, losses kept there until a flush: PyTorch's sync debug mode raises at the
    first operation of a step that would make the host wait (an .item(), a copy to the host...)."""
    config = TrainConfig(data="digits", hidden=(32,), latent_dim=4, batch_size=105, device="cuda", precision=precision)
    trainer = Trainer(config, digits)
    train_step(trainer)  # the first step makes the epoch's shuffle and the optimiser's state
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            train_step(trainer)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.flush() == 6


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_two_nccl_processes_train_as_one_process(tmp_path):
    single, ddp = tmp_path / "single.safetensors", tmp_path / "ddp.safetensors"
    single_train(*SMALL, "--epochs", "1", "--out", str(single), device="cuda")
    ddp_train(*SMALL, "--epochs", "1", "--out", str(ddp), device="cuda")
    got, want = load_checkpoint(ddp), load_checkpoint(single)
    assert got.world_size == 2
    np.testing.assert_allclose(
        got.state.history.step_matrix(), want.state.history.step_matrix(), rtol=1e-4, atol=1e-4
    )  # GPU kernels choose their own summation orders


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the bench measures it")
def test_the_gpu_bench_says_no_gpu_without_one(capsys):
    from bench import bench_gpu

    assert bench_gpu.main([]) == 0
    printed = capsys.readouterr()
    assert "no GPU" in printed.err
    assert [json.loads(line)["measured"] for line in printed.out.splitlines()] == [
        "no GPU: torch.cuda.is_available() is False here, nothing measured"
    ]
