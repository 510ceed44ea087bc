"""The checkpoint file layer: what is written comes back exactly, and a failed write harms nothing."""

from __future__ import annotations

import json
import math
import os
import stat

import pytest
import torch
from safetensors import safe_open

from vae_core import atomic_files, safetensors_io
from vae_core.errors import CheckpointError
from vae_core.optimizer_state import flatten_optimizer_state, unflatten_optimizer_state
from vae_core.safetensors_io import (
    FORMAT_NAME,
    FORMAT_VERSION,
    StoredTensor,
    checkpoint_to_bytes,
    read_checkpoint,
    write_checkpoint,
)

METADATA = {"config": {"model": "mlp", "hidden": [256, 128]}, "epoch": 3, "note": "ünïcode", "best": None}


def sample_tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "encoder.weight": torch.randn(4, 3, generator=generator),
        "counts": torch.arange(-5, 5, dtype=torch.int64),
        "image": torch.randint(0, 256, (2, 3, 3), dtype=torch.uint8, generator=generator),
    }


def assert_same_tensors(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for name, tensor in expected.items():
        assert actual[name].dtype == tensor.dtype, name
        assert actual[name].device.type == "cpu", name
        assert torch.equal(actual[name], tensor), name


def test_file_round_trip_keeps_tensors_and_metadata(tmp_path):
    path = tmp_path / "model.safetensors"
    write_checkpoint(path, sample_tensors(), METADATA)

    tensors, metadata = read_checkpoint(path)

    assert_same_tensors(tensors, sample_tensors())
    assert metadata == METADATA


@pytest.mark.parametrize(
    "dtype",
    [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.uint8, torch.bool],
)
def test_every_supported_dtype_round_trips(tmp_path, dtype):
    original = {"values": (torch.arange(12).reshape(3, 4) % 3).to(dtype), "empty": torch.zeros(0, 5, dtype=dtype)}
    write_checkpoint(tmp_path / "model.safetensors", original, {})

    tensors, _ = read_checkpoint(tmp_path / "model.safetensors")

    assert_same_tensors(tensors, original)


def test_bytes_round_trip(tmp_path):
    data = checkpoint_to_bytes(sample_tensors(), METADATA)

    tensors, metadata = read_checkpoint(data)

    assert_same_tensors(tensors, sample_tensors())
    assert metadata == METADATA


def test_bytes_are_a_checkpoint_file(tmp_path):
    # Not compared byte for byte: safetensors orders the header metadata differently from run to run.
    path = tmp_path / "download.safetensors"
    path.write_bytes(checkpoint_to_bytes(sample_tensors(), METADATA))

    tensors, metadata = read_checkpoint(path)

    assert_same_tensors(tensors, sample_tensors())
    assert metadata == METADATA


def test_plain_safetensors_library_reads_the_file_and_its_metadata(tmp_path):
    path = tmp_path / "model.safetensors"
    write_checkpoint(path, sample_tensors(), METADATA)

    with safe_open(path, framework="pt") as opened:
        header_metadata = opened.metadata()
        tensors = {name: opened.get_tensor(name) for name in opened.keys()}  # noqa: SIM118 (safe_open is not iterable)

    assert header_metadata["format"] == FORMAT_NAME
    assert header_metadata["format_version"] == str(FORMAT_VERSION)
    assert json.loads(header_metadata["vae_studio"]) == METADATA
    assert_same_tensors(tensors, sample_tensors())


def test_non_finite_metadata_floats_round_trip(tmp_path):
    write_checkpoint(tmp_path / "model.safetensors", {}, {"loss": math.nan, "best": math.inf, "worst": -math.inf})

    _, metadata = read_checkpoint(tmp_path / "model.safetensors")

    assert math.isnan(metadata["loss"])
    assert metadata["best"] == math.inf and metadata["worst"] == -math.inf


def test_views_and_parameters_are_stored_as_plain_contiguous_tensors(tmp_path):
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    parameter = torch.nn.Parameter(torch.ones(2, 2))
    original = {"transposed": base.t(), "column": base[:, 1], "parameter": parameter}
    write_checkpoint(tmp_path / "model.safetensors", original, {})

    tensors, _ = read_checkpoint(tmp_path / "model.safetensors")

    assert_same_tensors(tensors, {name: tensor.detach() for name, tensor in original.items()})
    assert not tensors["parameter"].requires_grad


def test_writing_replaces_an_older_file_and_keeps_its_permissions(tmp_path):
    path = tmp_path / "model.safetensors"
    write_checkpoint(path, {"old": torch.zeros(2)}, {"generation": 1})
    os.chmod(path, 0o640)

    write_checkpoint(path, sample_tensors(), {"generation": 2})

    assert read_checkpoint(path)[1] == {"generation": 2}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]


def test_a_new_file_is_readable_by_others_unlike_a_private_temp_file(tmp_path):
    write_checkpoint(tmp_path / "model.safetensors", sample_tensors(), {})

    assert stat.S_IMODE(os.stat(tmp_path / "model.safetensors").st_mode) == 0o644


def fail(*args, **kwargs):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("failing_step", ["replace", "fsync", "chmod"])
def test_a_failed_write_leaves_the_old_file_intact_and_no_temp_file(tmp_path, monkeypatch, failing_step):
    path = tmp_path / "model.safetensors"
    write_checkpoint(path, {"old": torch.zeros(2)}, {"generation": 1})
    old_bytes = path.read_bytes()
    monkeypatch.setattr(atomic_files.os, failing_step, fail)

    with pytest.raises(CheckpointError, match=r"^could not write model\.safetensors: No space left on device$"):
        write_checkpoint(path, sample_tensors(), {"generation": 2})

    assert path.read_bytes() == old_bytes
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]


def test_an_interrupted_write_removes_its_temp_file_and_re_raises(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    write_checkpoint(path, {"old": torch.zeros(2)}, {"generation": 1})
    old_bytes = path.read_bytes()

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic_files.os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(path, sample_tensors(), {"generation": 2})

    assert path.read_bytes() == old_bytes
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]


def test_arguments_no_file_can_hold_fail_before_the_disk_is_touched(tmp_path):
    path = tmp_path / "model.safetensors"
    write_checkpoint(path, {"old": torch.zeros(2)}, {})
    old_bytes = path.read_bytes()

    with pytest.raises(TypeError):
        write_checkpoint(path, sample_tensors(), {"model": torch.nn.Linear(2, 2)})
    with pytest.raises(ValueError, match="complex64"):
        write_checkpoint(path, {"z": torch.zeros(2, dtype=torch.complex64)}, {})
    with pytest.raises(ValueError, match="__metadata__"):
        write_checkpoint(path, {"__metadata__": torch.zeros(2)}, {})

    assert path.read_bytes() == old_bytes
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]


def test_writing_into_a_missing_folder_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"^could not write model\.safetensors: No such file or directory$"):
        write_checkpoint(tmp_path / "missing" / "model.safetensors", sample_tensors(), {})


def test_a_checkpoint_too_big_to_read_back_is_refused_when_written(tmp_path, monkeypatch):
    monkeypatch.setattr(safetensors_io, "MAX_CHECKPOINT_BYTES", 1000)

    with pytest.raises(CheckpointError, match=r"the checkpoint would be .* more than the 1000 bytes limit"):
        write_checkpoint(tmp_path / "model.safetensors", {"big": torch.zeros(1000)}, {})

    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# Optimizer state


def make_model_and_optimizer(optimizer_class):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    return model, optimizer_class(model.parameters(), lr=1e-2)


def train_steps(model, optimizer, first_step: int, count: int) -> None:
    for step in range(first_step, first_step + count):
        generator = torch.Generator().manual_seed(step)
        inputs, targets = torch.randn(8, 5, generator=generator), torch.randn(8, 3, generator=generator)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(inputs), targets).backward()
        optimizer.step()


@pytest.mark.parametrize("optimizer_class", [torch.optim.Adam, torch.optim.AdamW])
def test_restored_optimizer_continues_bit_identically(tmp_path, optimizer_class):
    straight_model, straight_optimizer = make_model_and_optimizer(optimizer_class)
    train_steps(straight_model, straight_optimizer, first_step=0, count=6)

    model, optimizer = make_model_and_optimizer(optimizer_class)
    train_steps(model, optimizer, first_step=0, count=3)
    optimizer_tensors, layout = flatten_optimizer_state(optimizer.state_dict())
    write_checkpoint(tmp_path / "run.safetensors", {**model.state_dict(), **optimizer_tensors}, {"optimizer": layout})

    tensors, metadata = read_checkpoint(tmp_path / "run.safetensors")
    resumed_model, resumed_optimizer = make_model_and_optimizer(optimizer_class)
    resumed_model.load_state_dict({name: tensor for name, tensor in tensors.items() if not name.startswith("optim.")})
    resumed_optimizer.load_state_dict(unflatten_optimizer_state(tensors, metadata["optimizer"]))
    assert resumed_optimizer.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]
    train_steps(resumed_model, resumed_optimizer, first_step=3, count=3)

    for name, weight in straight_model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[name], weight), name


def test_flattened_optimizer_tensors_are_named_by_parameter_and_copied():
    model, optimizer = make_model_and_optimizer(torch.optim.Adam)
    train_steps(model, optimizer, first_step=0, count=1)

    tensors, layout = flatten_optimizer_state(optimizer.state_dict())

    assert sorted(tensors) == sorted(
        f"optim.state.{index}.{key}" for index in range(4) for key in ("step", "exp_avg", "exp_avg_sq")
    )
    assert layout["tuple_keys"] == [["betas"]]
    live_exp_avg = optimizer.state_dict()["state"][0]["exp_avg"]
    assert tensors["optim.state.0.exp_avg"].data_ptr() != live_exp_avg.data_ptr()
    assert unflatten_optimizer_state(tensors, layout)["param_groups"] == optimizer.state_dict()["param_groups"]


def test_flattening_state_json_cannot_hold_is_a_type_error():
    state_dict = {"state": {0: {"helper": object()}}, "param_groups": [{"lr": 0.1, "params": [0]}]}

    with pytest.raises(TypeError, match="optimizer state holds a value"):
        flatten_optimizer_state(state_dict)


def adam_state():
    model, optimizer = make_model_and_optimizer(torch.optim.Adam)
    train_steps(model, optimizer, first_step=0, count=1)
    return flatten_optimizer_state(optimizer.state_dict())


def drop_tensor(tensors, layout):
    del tensors["optim.state.1.exp_avg"]


def add_stray_tensor(tensors, layout):
    tensors["optim.state.9.exp_avg"] = torch.zeros(1)


def swap_tensor_for_a_number(tensors, layout):
    tensors["optim.state.1.exp_avg"] = 0.5


def break_param_groups(tensors, layout):
    layout["param_groups"] = {"lr": 0.1}


def name_an_unknown_parameter(tensors, layout):
    layout["state"]["7"] = layout["state"].pop("1")


def drop_tuple_keys(tensors, layout):
    del layout["tuple_keys"]


def make_params_text(tensors, layout):
    layout["param_groups"][0]["params"] = "0,1,2,3"


@pytest.mark.parametrize(
    "corrupt, problem",
    [
        (drop_tensor, "tensor 'optim.state.1.exp_avg' is missing"),
        (swap_tensor_for_a_number, "'optim.state.1.exp_avg' is not a tensor"),
        (add_stray_tensor, "tensor 'optim.state.9.exp_avg' is not in the layout"),
        (break_param_groups, "param_groups must be a list of objects"),
        (name_an_unknown_parameter, "state names '7', which is no parameter of any group"),
        (drop_tuple_keys, "the layout needs param_groups, tuple_keys and state"),
        (make_params_text, "every parameter group needs params, a list of indices"),
    ],
)
def test_unflatten_reports_inconsistent_state_as_checkpoint_error(corrupt, problem):
    tensors, layout = adam_state()
    layout = json.loads(json.dumps(layout))  # as it comes back from a file
    corrupt(tensors, layout)

    with pytest.raises(CheckpointError) as caught:
        unflatten_optimizer_state(tensors, layout)

    assert str(caught.value) == f"the optimizer state in the checkpoint is invalid: {problem}"


def test_unflatten_ignores_the_models_own_tensors():
    tensors, layout = adam_state()

    state_dict = unflatten_optimizer_state({**tensors, "encoder.weight": torch.zeros(2)}, layout)

    assert sorted(state_dict["state"]) == [0, 1, 2, 3]


def test_the_header_describes_every_tensor_before_any_is_loaded(tmp_path):
    write_checkpoint(tmp_path / "model.safetensors", sample_tensors(), METADATA)

    with safetensors_io.open_checkpoint(tmp_path / "model.safetensors") as opened:
        described = opened.tensors
        metadata = opened.metadata
        tensors = opened.load()

    assert described == {
        name: StoredTensor(tensor.dtype, tuple(tensor.shape)) for name, tensor in sample_tensors().items()
    }
    assert metadata == METADATA
    assert_same_tensors(tensors, sample_tensors())


def test_an_upload_is_read_through_a_temporary_file_that_does_not_outlive_it(tmp_path, monkeypatch):
    monkeypatch.setattr(safetensors_io.tempfile, "tempdir", str(tmp_path))

    with safetensors_io.open_checkpoint(checkpoint_to_bytes(sample_tensors(), METADATA)) as opened:
        assert len(list(tmp_path.iterdir())) == 1
        assert opened.name == "uploaded file"

    assert list(tmp_path.iterdir()) == []


def test_metadata_too_big_to_read_back_is_refused_when_written(tmp_path, monkeypatch):
    monkeypatch.setattr(safetensors_io, "MAX_METADATA_CHARS", 100)

    with pytest.raises(CheckpointError, match=r"the checkpoint metadata would be .* more than the 100 bytes limit"):
        write_checkpoint(tmp_path / "model.safetensors", {}, {"notes": "x" * 200})

    assert os.listdir(tmp_path) == []
