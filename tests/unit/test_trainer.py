"""The synchronous loop: learning, determinism, exact resume through a checkpoint, divergence."""

import numpy as np
import pytest
import torch

from vae_core.checkpoint import load_checkpoint, save_trainer_checkpoint
from vae_core.config import TrainConfig
from vae_core.trainer import Divergence, Trainer, run_to_end

SMALL = dict(hidden=(64, 32), latent_dim=4, batch_size=256, device="cpu")


def test_one_epoch_on_mnist_sample_lowers_the_loss(mnist_sample):
    trainer = Trainer(TrainConfig(epochs=1, **{**SMALL, "batch_size": 64}), mnist_sample)
    before = trainer.history
    run_to_end(trainer)
    curves = trainer.history.curves()
    assert len(curves) == trainer.steps_per_epoch == 63  # 4,000 train images / 64
    print(curves.total[:5].mean(), curves.total[-5:].mean())
    assert curves.total[-5:].mean() < 0.6 * curves.total[:5].mean()
    epoch = trainer.history.epochs[0]
    assert epoch["test_neg_elbo"] == pytest.approx(epoch["test_recon"] + epoch["test_kl"])
    assert len(epoch["kl_per_dim"]) == 4
    assert before is trainer.history


def test_same_seed_gives_the_same_numbers(digits):
    runs = []
    for _ in range(2):
        trainer = Trainer(TrainConfig(data="digits", epochs=2, **SMALL), digits)
        run_to_end(trainer)
        runs.append((trainer.history.curves().total, trainer.model.state_dict()))
    assert np.array_equal(runs[0][0], runs[1][0])
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


@pytest.mark.parametrize("stop_after_steps", [None, 3])
def test_resume_through_a_checkpoint_is_exact(digits, tmp_path, stop_after_steps):
    config = TrainConfig(data="digits", epochs=2, **SMALL)
    straight = Trainer(config, digits)
    run_to_end(straight)

    first = Trainer(config.replace(epochs=1), digits)
    if stop_after_steps is None:
        run_to_end(first)
    else:  # stop in the middle of the first epoch
        for _ in range(stop_after_steps):
            first.train_step()
    path = save_trainer_checkpoint(first, "run", "stopped", tmp_path / "one.safetensors")
    loaded = load_checkpoint(path)
    resumed = Trainer(loaded.config.replace(epochs=2), digits, state=loaded.state)
    run_to_end(resumed)

    assert resumed.step == straight.step
    assert np.array_equal(resumed.history.curves().total, straight.history.curves().total)
    assert np.array_equal(resumed.history.curves().step, np.arange(1, straight.step + 1))
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    assert [e["test_neg_elbo"] for e in resumed.history.epochs] == [e["test_neg_elbo"] for e in straight.history.epochs]


def test_divergence_names_the_step_and_keeps_the_last_good_weights(digits):
    trainer = Trainer(TrainConfig(data="digits", lr=50.0, recon="mse", epochs=3, **SMALL), digits)
    with pytest.raises(Divergence, match=r"diverged at step \d+: the loss became (nan|inf)"):
        run_to_end(trainer, flush_every=1)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert np.isfinite(trainer.history.curves().total).all()


def test_lr_and_beta_changes_apply_to_the_next_step(digits):
    trainer = Trainer(TrainConfig(data="digits", epochs=1, **SMALL), digits)
    trainer.train_step()
    trainer.set_lr(0.01)
    trainer.beta = 3.0
    trainer.train_step()
    trainer.flush()
    curves = trainer.history.curves()
    assert curves.lr.tolist() == pytest.approx([1e-3, 0.01])
    assert curves.beta.tolist() == [1.0, 3.0]
    assert trainer.optimizer.param_groups[0]["lr"] == 0.01
