"""The trainer and the one loop: learning, determinism, exact resume through a checkpoint, divergence, hooks."""

import numpy as np
import pytest
import torch

from vae_core.checkpoint import load_checkpoint, save_trainer_checkpoint
from vae_core.config import TrainConfig
from vae_core.loop import Hooks, batch_indices, run_to_end, train, train_step
from vae_core.trainer import Divergence, Trainer

SMALL = dict(hidden=(64, 32), latent_dim=4, batch_size=256, device="cpu")


def test_one_epoch_on_mnist_sample_lowers_the_loss(mnist_sample):
    trainer = Trainer(TrainConfig(epochs=1, **{**SMALL, "batch_size": 64}), mnist_sample)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert run_to_end(trainer) is True
    curves = trainer.history.curves()
    assert len(curves) == trainer.steps_per_epoch == 63  # 4,000 train images / 64
    assert curves.total[-5:].mean() < 0.6 * curves.total[:5].mean()
    epoch = trainer.history.epochs[0]
    assert epoch["test_neg_elbo"] == pytest.approx(epoch["test_recon"] + epoch["test_kl"])
    assert len(epoch["kl_per_dim"]) == 4
    # Every weight learned something: a step that skipped a layer (or the optimiser) would show here.
    assert all(not torch.equal(initial[k], v) for k, v in trainer.model.state_dict().items())
    assert [frame.epoch for frame in trainer.history.frames] == [1]


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
            train_step(first)
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
        run_to_end(trainer, Hooks(flush_steps=1))
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert np.isfinite(trainer.history.curves().total).all()


def test_lr_and_beta_changes_apply_to_the_next_step(digits):
    trainer = Trainer(TrainConfig(data="digits", epochs=1, **SMALL), digits)
    train_step(trainer)
    trainer.set_lr(0.01)
    trainer.beta = 3.0
    train_step(trainer)
    trainer.flush()
    curves = trainer.history.curves()
    assert curves.lr.tolist() == pytest.approx([1e-3, 0.01])
    assert curves.beta.tolist() == [1.0, 3.0]
    assert trainer.optimizer.param_groups[0]["lr"] == 0.01


def test_hooks_see_every_flush_and_epoch_and_can_stop_at_a_batch_boundary(digits):
    trainer = Trainer(TrainConfig(data="digits", epochs=3, **SMALL), digits)  # 6 steps an epoch
    flushed, epochs = [], []

    def before_step(trainer):
        return trainer.step < 14  # stop in the middle of the third epoch

    hooks = Hooks(
        before_step=before_step,
        after_flush=lambda t: flushed.append(t.step),
        after_epoch=lambda t, metrics: epochs.append((t.epoch, metrics["epoch"])),
        flush_steps=4,
    )
    assert run_to_end(trainer, hooks) is False
    assert trainer.step == 14 and trainer.epoch == 2 and trainer.step_in_epoch == 2
    assert flushed == [4, 6, 10, 12]  # every 4 steps, and at each epoch end
    assert epochs == [(1, 1), (2, 2)]
    assert len(trainer.history.curves()) == 14  # the stop flushed the steps taken since the last flush


def test_a_time_based_flush_comes_without_a_step_count(digits):
    trainer = Trainer(TrainConfig(data="digits", epochs=1, **SMALL), digits)
    flushed = []
    run_to_end(trainer, Hooks(after_flush=lambda t: flushed.append(t.step), flush_steps=10**6, flush_seconds=0.0))
    assert flushed[:-1] == list(range(1, trainer.steps_per_epoch + 1))  # every step, then the epoch end


def test_shards_of_a_batch_cover_it_once():
    order = torch.randperm(10)
    batch = batch_indices(order, 1, 4)
    assert batch.tolist() == order[4:8].tolist()
    shards = [batch_indices(order, 1, 4, rank, 2) for rank in range(2)]
    assert sorted(torch.cat(shards).tolist()) == sorted(batch.tolist())
    assert batch_indices(order, 2, 4).tolist() == order[8:].tolist()  # the last batch is smaller


def test_train_runs_a_config_from_scratch_to_its_last_epoch(digits):
    trainer = train(TrainConfig(data="digits", epochs=2, **SMALL), digits)
    assert trainer.finished and [e["epoch"] for e in trainer.history.epochs] == [1, 2]


def test_to_uint8_rounds_and_clips_like_torch():
    """Computed by numpy (a job's caller thread must run no parallel torch operation), to the same bytes."""
    from vae_core.trainer import to_uint8

    images = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 1.4 - 0.2
    images[0, 0, 0, :4] = torch.tensor([0.5, 1.5, 2.5, 254.5]) / 255  # ties: to the even byte, as torch rounds
    expected = (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    got = to_uint8(images)
    assert got.dtype == np.uint8 and np.array_equal(got, expected)


@pytest.mark.parametrize(
    "changes, problem",
    [
        (dict(hidden=(4,) * 20_000), "at most 16 hidden layers"),
        (dict(hidden=(4096,) * 16), "parameters, more than the limit of 100,000,000"),
        (dict(batch_size=65536, hidden=(4096, 4096)), "numbers for its backward pass, more than the limit"),
        (dict(epochs=100_000), "at most 1,000 epochs"),
    ],
)
def test_a_run_over_the_limits_is_refused_where_it_is_created_at_once(digits, changes, problem):
    """200 layers of 4096 (6.7 billion parameters) once started; 20,000 layers of 4 took 7.3 s to check."""
    import time

    from vae_core.errors import ConfigError
    from vae_core.trainer import check_trainable

    started = time.monotonic()
    with pytest.raises(ConfigError, match=problem):
        check_trainable(TrainConfig(data="digits", **changes), digits)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("model", ["mlp", "conv", "ae", "cvae", "vqvae"])
def test_a_models_cost_is_its_parameters_and_every_layers_output_at_the_batch_size(model):
    """Counted independently here: the whole batch run through the model on the meta device."""
    from vae_core.models import build_model
    from vae_core.trainer import model_cost

    config = TrainConfig(model=model, batch_size=48, latent_dim=6)
    kept = []
    with torch.device("meta"), torch.no_grad():
        net = build_model(config, (1, 28, 28), 10)
        for module in net.modules():
            if not list(module.children()):
                module.register_forward_hook(lambda m, i, out: kept.append(out.numel()))
        net(torch.empty(48, 1, 28, 28), torch.zeros(48, dtype=torch.long) if net.conditional else None)
    assert model_cost(config, (1, 28, 28), 10) == (sum(p.numel() for p in net.parameters()), sum(kept))


def test_the_operator_raises_a_limit_through_the_environment_and_a_bad_value_is_named(digits, monkeypatch):
    from vae_core.config import limits
    from vae_core.errors import ConfigError
    from vae_core.trainer import check_trainable

    monkeypatch.setenv("VAE_STUDIO_MAX_HIDDEN_LAYERS", "32")
    check_trainable(TrainConfig(data="digits", hidden=(8,) * 20), digits)
    monkeypatch.setenv("VAE_STUDIO_MAX_EPOCHS", "lots")
    with pytest.raises(ConfigError, match="VAE_STUDIO_MAX_EPOCHS must be a whole number"):
        limits()
