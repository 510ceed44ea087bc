"""Checkpoints that are valid safetensors files but do not fit their own config, our data or our
limits, and hostile files handed to the CLI: each gets one clear line, quickly, and nothing runs."""

import pickle
import time
import tracemalloc
from pathlib import Path

import pytest
import torch

from vae_core import checkpoint as checkpoint_module
from vae_core.checkpoint import (
    MAX_PARAMETERS,
    check_model_size,
    check_resumable,
    load_checkpoint,
    parameter_count,
    save_trainer_checkpoint,
)
from vae_core.cli import main
from vae_core.config import TrainConfig
from vae_core.errors import CheckpointError, ConfigError
from vae_core.models import build_model
from vae_core.safetensors_io import OpenCheckpoint


def set_tensor(name, value):
    return lambda tensors: tensors.__setitem__(name, value)


def update(key, **values):
    return lambda metadata: metadata[key].update(values)


def set_field(**values):
    return lambda metadata: metadata.update(values)


def set_history(**values):
    return lambda metadata: metadata["history"].update(values)


CASES = {
    "wrong shape": (
        set_tensor("model.fc_mu.weight", torch.zeros(3, 16)),
        None,
        "weight fc_mu.weight has shape [3, 16], the config needs [2, 16]",
    ),
    "wrong dtype": (
        set_tensor("model.fc_mu.weight", torch.zeros(2, 16, dtype=torch.float64)),
        None,
        "fc_mu.weight is torch.float64",
    ),
    "another architecture": (None, update("config", model="ae"), "do not fit a ae model"),
    "another data shape": (
        None,
        update("dataset", image_shape=[1, 28, 28]),
        "weight encoder.0.0.weight has shape [16, 64], the config needs [16, 784]",
    ),
    "config not an object": (None, set_field(config="mlp"), "config is text, not an object"),
    "unknown config field": (None, update("config", evil="os.system"), "unknown config field"),
    "config value of another type": (
        None,
        update("config", latent_dim="2"),
        "config.latent_dim is text, not of the type int",
    ),
    "config data not text": (None, update("config", data=["/etc"]), "config.data is a list"),
    "missing fields": (None, lambda m: m.pop("history"), "metadata lacks history"),
    "NaN weights": (lambda t: t["model.fc_mu.weight"].fill_(float("nan")), None, "NaN or infinite"),
    "negative counters": (None, set_field(step=-4), "step must be a whole number between 0"),
    "counter that is true": (None, set_field(epoch=True), "epoch must be a whole number"),
    "lr out of range": (None, set_field(lr=1e9), "lr must be"),
    "beta as text": (None, set_field(beta="1"), "beta is text, not a number"),
    "optimizer of another shape": (
        set_tensor("optim.state.0.exp_avg", torch.zeros(1)),
        None,
        "optimizer state exp_avg of parameter 0 has the wrong shape",
    ),
    "optimizer of no parameter": (
        set_tensor("optim.state.99.exp_avg", torch.zeros(1)),
        None,
        "optim.state.99.exp_avg refers to no parameter",
    ),
    "unknown tensor": (set_tensor("payload", torch.zeros(1)), None, "a tensor this version does not know"),
    "picture of another shape": (
        set_tensor("frames.0.samples", torch.zeros(1, 1, 1, 20000, dtype=torch.uint8)),
        None,
        "frames.0.samples has shape [1, 1, 1, 20000]; pictures must be",
    ),
    "too many pictures": (
        set_tensor("frames.0.samples", torch.zeros(1000, 1, 8, 8, dtype=torch.uint8)),
        None,
        "at most 256",
    ),
    "picture of no epoch": (
        set_tensor("frames.5.samples", torch.zeros(1, 1, 8, 8, dtype=torch.uint8)),
        None,
        "frames.5.samples belongs to no epoch",
    ),
    "missing pictures": (lambda t: t.pop("frames.0.samples"), None, "the pictures of epoch 1 are missing"),
    "rng state of floats": (set_tensor("rng.noise", torch.zeros(4)), None, "random number generator state"),
    "history.steps of another width": (
        set_tensor("history.steps", torch.zeros(3, 2, dtype=torch.float64)),
        None,
        "history.steps must be a matrix of floats with 6 columns",
    ),
    # issue 13, item 5: every page and `inspect` read these
    "epoch lacking keys": (None, set_history(epochs=[{"step": 1}]), "history.epochs[0] lacks 'epoch'"),
    "epoch as text": (None, set_history(epochs=["x"]), "history.epochs[0] is text, not an object"),
    "epoch metric as text": (
        None,
        lambda m: m["history"]["epochs"][0].update(test_kl="low"),
        "history.epochs[0].test_kl is text, not a number",
    ),
    "kl_per_dim of the wrong length": (
        None,
        lambda m: m["history"]["epochs"][0].update(kl_per_dim=[1.0]),
        "has 1 values, not one per latent dimension (2)",
    ),
    "epochs not a list": (None, set_history(epochs={"0": {}}), "history.epochs is an object, not a list"),
    "event lacking value": (
        None,
        set_history(events=[{"step": 1, "name": "lr"}]),
        "history.events[0] must have exactly the keys step, name and value",
    ),
    "event value as text": (
        None,
        set_history(events=[{"step": 1, "name": "lr", "value": "x"}]),
        "history.events[0].value is text, not a number",
    ),
    "frame epochs as text": (None, set_history(frame_epochs="1"), "history.frame_epochs is text, not a list"),
    "status unknown": (None, set_field(status="pwned"), "status must be one of"),
    "created not text": (None, set_field(created=12), "created is a number, not text"),
    "name too long": (None, set_field(name="n" * 81), "name is 81 characters long, more than the limit of 80"),
    "name with control characters": (None, set_field(name="a\x1b[31mb"), "name holds control characters"),
    "name with a direction override": (None, set_field(name="run\u202egnp.exe"), "name holds control characters"),
    "notes not text": (None, set_field(notes=["x"]), "notes is a list, not text"),
    "versions not text": (None, set_field(versions={"torch": 2}), "versions.torch is a number, not text"),
    "class names of another count": (
        None,
        update("dataset", class_names=["a"]),
        "dataset.class_names has 1 names for 10 classes",
    ),
    "dataset name not text": (None, update("dataset", name={"x": 1}), "dataset.name is an object, not text"),
    "image shape of 4 sides": (None, update("dataset", image_shape=[1, 8, 8, 8]), "dataset.image_shape"),
    "imported_from with a bad run id": (
        None,
        set_field(imported_from={"run_id": "../x"}),
        "imported_from.run_id '../x' is not a valid run id",
    ),
    "run id that escapes": (None, set_field(run_id="../../escaped-run"), "its run id is missing or not valid"),
    "run id missing": (None, lambda m: m.pop("run_id"), "its run id is missing or not valid"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_checkpoints_that_do_not_fit_their_config_are_refused_by_name(craft, case):
    tensors_change, metadata_change, message = CASES[case]
    path = craft("bad", tensors_change, metadata_change)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert str(error.value).startswith("bad.safetensors: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_the_good_checkpoint_loads_with_everything_the_pages_read(good_checkpoint):
    checkpoint = load_checkpoint(good_checkpoint)

    assert checkpoint.run_id == "good" and checkpoint.name == "good" and checkpoint.notes == ""
    assert checkpoint.state.history.epochs[0]["epoch"] == 1
    assert checkpoint.state.history.frames[0].samples.shape[1:] == (1, 8, 8)
    assert checkpoint.summary()["test_neg_elbo"] is not None


def test_a_metric_a_model_does_not_have_may_be_null(craft):
    path = craft("ae-like", metadata_change=lambda m: m["history"]["epochs"][0].update(test_kl=None))

    assert load_checkpoint(path).state.history.epochs[0]["test_kl"] is None


def test_resuming_on_other_data_is_refused(good_checkpoint, mnist_sample):
    with pytest.raises(CheckpointError, match=r"trained on digits \(\[1, 8, 8\]"):
        check_resumable(load_checkpoint(good_checkpoint), mnist_sample)


# ----------------------------------------------------------------------------------------------
# Issue 13, item 3: a small file must not make us allocate gigabytes before judging it


def test_parameter_count_is_computed_without_building_the_model():
    config = TrainConfig(hidden=(300, 100), latent_dim=5)
    built = build_model(config, (1, 28, 28), 0)

    assert parameter_count(config, (1, 28, 28)) == sum(p.numel() for p in built.parameters())


def test_a_model_over_the_parameter_limit_is_refused_from_its_config():
    with pytest.raises(ConfigError, match=f"more than the limit of {MAX_PARAMETERS:,}"):
        check_model_size(TrainConfig(hidden=(4096,) * 8), (1, 28, 28))


def assert_refused_quickly_and_cheaply(path: Path, message: str) -> None:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(path)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seconds < 2.0
    # torch allocations are not traced by tracemalloc, so the model-size checks below matter more
    assert peak < 50 * 1024**2


@pytest.mark.parametrize(
    "hidden, message",
    [
        ([4096] * 40, "config.hidden lists 40 layers, more than the limit of 16"),
        ([4096] * 16, "parameters, more than the limit of 100,000,000"),
    ],
)
def test_a_config_asking_for_a_huge_model_is_refused_before_any_weight_is_allocated(
    craft, monkeypatch, hidden, message
):
    path = craft("huge", metadata_change=update("config", hidden=hidden))
    real_build_model, devices = checkpoint_module.build_model, []

    def recording_build_model(*args, **kwargs):
        devices.append(torch.get_default_device().type)
        return real_build_model(*args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "build_model", recording_build_model)

    assert_refused_quickly_and_cheaply(path, message)
    assert set(devices) <= {"meta"}  # sized on the meta device, which holds no data


def test_a_picture_tensor_of_another_shape_is_refused_before_it_is_loaded(craft, monkeypatch):
    path = craft("wide", tensors_change=set_tensor("frames.0.samples", torch.zeros(1, 1, 1, 20000, dtype=torch.uint8)))
    loaded = []
    monkeypatch.setattr(OpenCheckpoint, "load", lambda self: loaded.append(self))

    assert_refused_quickly_and_cheaply(path, "frames.0.samples has shape")
    assert loaded == []


# ----------------------------------------------------------------------------------------------
# Run ids never choose a path; names are text


@pytest.fixture
def trainer(digits):
    from vae_core.trainer import Trainer

    return Trainer(TrainConfig(data="digits", hidden=(16,), latent_dim=2, epochs=1, device="cpu"), digits)


def test_saving_under_a_run_id_that_could_name_another_path_is_refused(trainer, tmp_path):
    for run_id in ("../../escaped-run", "a/b", ".hidden", "", "x" * 65):
        with pytest.raises(CheckpointError, match="is not valid"):
            save_trainer_checkpoint(trainer, run_id, "stopped", tmp_path / "run.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_a_name_and_notes_are_kept_and_a_long_generated_name_is_cut(trainer, tmp_path):
    path = save_trainer_checkpoint(
        trainer,
        "named",
        "stopped",
        tmp_path / "named.safetensors",
        name="β sweep   " + "x" * 100,
        notes="first try\nsecond line",
    )

    checkpoint = load_checkpoint(path)

    assert checkpoint.name == ("β sweep " + "x" * 100)[:80]
    assert checkpoint.notes == "first try\nsecond line"
    assert checkpoint.labels() == {
        "name": checkpoint.name,
        "notes": checkpoint.notes,
        "imported_from": None,
        "owner": None,
    }


# ----------------------------------------------------------------------------------------------
# The CLI


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("command", [["inspect"], ["eval"], ["train", "--resume"]])
def test_cli_refuses_a_pickle_renamed_safetensors_and_runs_nothing(tmp_path, capsys, command):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.safetensors"
    evil.write_bytes(pickle.dumps({"state": _Payload(str(marker))}))
    torch.save({"state": _Payload(str(marker))}, tmp_path / "zip.safetensors")
    for path in (evil, tmp_path / "zip.safetensors"):
        assert main([*command, str(path)]) == 2
        err = capsys.readouterr().err
        assert path.name in err and "pickle" in err
        assert len(err.strip().splitlines()) == 1
    assert not marker.exists()


@pytest.mark.parametrize("change", [set_history(epochs=["x"]), update("config", hidden=[4096] * 40)])
def test_cli_inspect_of_a_hostile_checkpoint_is_one_line(craft, capsys, change):
    path = craft("hostile", metadata_change=change)

    assert main(["inspect", str(path)]) == 2

    err = capsys.readouterr().err
    assert err.startswith("error: hostile.safetensors: ") and len(err.strip().splitlines()) == 1


def test_a_name_typed_with_control_characters_is_saved_as_readable_text(trainer, tmp_path):
    path = save_trainer_checkpoint(
        trainer,
        "typed",
        "stopped",
        tmp_path / "typed.safetensors",
        name="red\x1b[31m\u202eevil\nname",
        notes="line\tone\r\nline two\x00",
    )

    checkpoint = load_checkpoint(path)

    assert checkpoint.name == "red[31mevil name"
    assert checkpoint.notes == "line one\nline two"
