"""Checkpoints that are valid safetensors files but do not fit their own config, or our data, and
hostile files handed to the CLI: each gets one clear line and nothing runs."""

import pickle
from pathlib import Path

import pytest
import torch

from vae_core.checkpoint import check_resumable, load_checkpoint, save_trainer_checkpoint
from vae_core.cli import main
from vae_core.config import TrainConfig
from vae_core.errors import CheckpointError
from vae_core.safetensors_io import read_checkpoint, write_checkpoint
from vae_core.trainer import Trainer



@pytest.fixture(scope="module")
def good(tmp_path_factory, digits):
    trainer = Trainer(TrainConfig(data="digits", hidden=(16,), latent_dim=2, epochs=1, device="cpu"), digits)
    trainer.train_step()
    return save_trainer_checkpoint(trainer, "good", "stopped", tmp_path_factory.mktemp("runs") / "good.safetensors")


def _rewrite(good: Path, target: Path, tensors_change=None, metadata_change=None) -> Path:
    tensors, metadata = read_checkpoint(good)
    if tensors_change:
        tensors_change(tensors)
    if metadata_change:
        metadata_change(metadata)
    write_checkpoint(target, tensors, metadata)
    return target


CASES = {
    "wrong shape": (lambda t: t.__setitem__("model.fc_mu.weight", torch.zeros(3, 16)), None,
                    "weight fc_mu.weight has shape [3, 16], the config needs [2, 16]"),
    "wrong dtype": (lambda t: t.__setitem__("model.fc_mu.weight", t["model.fc_mu.weight"].double()), None,
                    "fc_mu.weight is torch.float64"),
    "another architecture": (None, lambda m: m["config"].update(model="ae"),
                             "do not fit a ae model"),
    "another data shape": (None, lambda m: m["dataset"].update(image_shape=[1, 28, 28]),
                           "weight encoder.0.0.weight has shape [16, 64], the config needs [16, 784]"),
    "config not an object": (None, lambda m: m.update(config="mlp"), "config"),
    "unknown config field": (None, lambda m: m["config"].update(evil="os.system"), "unknown config field"),
    "missing fields": (None, lambda m: m.pop("history"), "metadata lacks history"),
    "NaN weights": (lambda t: t["model.fc_mu.weight"].fill_(float("nan")), None, "NaN or infinite"),
    "negative counters": (None, lambda m: m.update(step=-4), "must not be negative"),
    "optimizer of another shape": (lambda t: t.__setitem__("optim.state.0.exp_avg", torch.zeros(1)), None,
                                   "optimizer state"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_checkpoints_that_do_not_fit_their_config_are_refused_by_name(good, tmp_path, case):
    tensors_change, metadata_change, message = CASES[case]
    path = _rewrite(good, tmp_path / "bad.safetensors", tensors_change, metadata_change)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert str(error.value).startswith("bad.safetensors")
    assert message in str(error.value)


def test_resuming_on_other_data_is_refused(good, mnist_sample):
    with pytest.raises(CheckpointError, match=r"trained on digits \(\[1, 8, 8\]"):
        check_resumable(load_checkpoint(good), mnist_sample)


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
