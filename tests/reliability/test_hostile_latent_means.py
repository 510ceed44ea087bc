"""A checkpoint's per-epoch latent means (frames.N.latent_means) are judged like its pictures: by
the header's dtype and shape against the config, before anything is loaded, and refused by name."""

import pytest
import torch

from vae_core.checkpoint import load_checkpoint
from vae_core.errors import CheckpointError
from vae_core.history import tracked_count


def set_tensor(name, value):
    return lambda tensors: tensors.__setitem__(name, value)


CASES = {  # the good checkpoint: latent_dim 2, one frame
    "another latent size": (
        set_tensor("frames.0.latent_means", torch.zeros(10, 3, dtype=torch.float16)),
        "frames.0.latent_means has shape [10, 3]; latent means must be float16 of shape [images, 2]",
    ),
    "too many images": (
        set_tensor("frames.0.latent_means", torch.zeros(tracked_count(2) + 1, 2, dtype=torch.float16)),
        f"at most {tracked_count(2)} images",
    ),
    "not float16": (set_tensor("frames.0.latent_means", torch.zeros(10, 2)), "must be float16"),
    "not a matrix": (
        set_tensor("frames.0.latent_means", torch.zeros(10, 2, 1, dtype=torch.float16)),
        "has shape [10, 2, 1]",
    ),
    "no images": (set_tensor("frames.0.latent_means", torch.zeros(0, 2, dtype=torch.float16)), "has shape [0, 2]"),
    "of no epoch": (
        set_tensor("frames.3.latent_means", torch.zeros(10, 2, dtype=torch.float16)),
        "frames.3.latent_means belongs to no epoch",
    ),
    "infinite": (lambda t: t["frames.0.latent_means"].fill_(float("inf")), "latent means of epoch 1 hold NaN"),
    "NaN": (lambda t: t["frames.0.latent_means"].fill_(float("nan")), "latent means of epoch 1 hold NaN"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_latent_means_that_do_not_fit_the_config_are_refused_by_name(craft, case):
    change, message = CASES[case]
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(craft("bad", change))
    assert str(error.value).startswith("bad.safetensors: ") and message in str(error.value)


def test_epochs_whose_means_are_of_different_images_are_refused(craft):
    def two_frames(tensors):
        tensors["frames.0.latent_means"] = torch.zeros(10, 2, dtype=torch.float16)
        tensors["frames.1.reconstructions"] = tensors["frames.0.reconstructions"].clone()
        tensors["frames.1.samples"] = tensors["frames.0.samples"].clone()
        tensors["frames.1.latent_means"] = torch.zeros(11, 2, dtype=torch.float16)

    path = craft("mixed", two_frames, lambda m: m["history"].update(frame_epochs=[1, 2]))
    with pytest.raises(CheckpointError, match="their counts differ"):
        load_checkpoint(path)


def test_the_good_checkpoint_has_its_means(good_checkpoint):
    means = load_checkpoint(good_checkpoint).state.history.frames[0].latent_means
    assert means.shape[1] == 2 and str(means.dtype) == "float16"
