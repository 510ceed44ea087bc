"""The followed latent scatter tells the truth: on every epoch of a run, what the Latent page's track
shows has the spread of a fresh PCA of that epoch's means (computed here with scikit-learn, not
with the app's code); and a t-SNE asked for while a run trains finishes, on the epoch it started from."""

import time

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from vae_core.config import TrainConfig
from vae_core.latent_track import LatentTrack, LatentTracks
from vae_core.loop import Hooks, run_to_end
from vae_core.metrics import latent_means
from vae_core.trainer import Trainer

POINTS = 300


def rms_spread(points):
    """Root mean square distance from the centre, written here apart from the app's own."""
    centred = np.asarray(points, np.float64) - np.mean(points, axis=0)
    return float(np.sqrt((centred**2).sum(axis=1).mean()))


def means_of(trainer, digits):
    with torch.no_grad():
        return latent_means(trainer.model, digits.test_x[:POINTS]).numpy().astype(np.float32)


def test_the_followed_pca_scatter_has_each_epochs_true_spread(digits):
    config = TrainConfig(data="digits", hidden=(32,), latent_dim=6, epochs=8, batch_size=32, device="cpu")
    track = LatentTrack("pca")
    shown, fresh = [], []

    def after_epoch(trainer, metrics):
        means = means_of(trainer, digits)
        track.follow(trainer.epoch, ("test", trainer.epoch), lambda: means)
        assert track.state.pending.job.wait(timeout=30)
        state = track.state
        assert state.shown.epoch == trainer.epoch
        shown.append(rms_spread(state.shown.points))
        fresh.append(rms_spread(PCA(n_components=2).fit_transform(means.astype(np.float64))))

    run_to_end(Trainer(config, digits), Hooks(after_epoch=after_epoch))
    assert len(shown) == 8
    assert max(fresh) / min(fresh) > 1.2  # the codes' spread changed over the run: a scale fit would show
    np.testing.assert_allclose(shown, fresh, rtol=1e-4)


def test_an_aligned_pca_scatter_keeps_every_distance_of_a_fresh_one():
    rng = np.random.default_rng(0)
    track = LatentTrack("pca")
    for epoch in range(1, 6):
        means = rng.normal(size=(POINTS, 5)) * rng.uniform(0.2, 3.0, size=5)
        state = track.follow(epoch, epoch, lambda: means)
        state.pending.job.wait(timeout=30)
        points = track.state.shown.points
        scores = PCA(n_components=2).fit_transform(means)
        distances = lambda p: np.linalg.norm(p[:, None] - p[None], axis=-1)
        np.testing.assert_allclose(distances(points), distances(scores), atol=1e-4)


def test_a_projection_under_way_is_not_restarted_by_newer_epochs_and_names_its_own():
    rng = np.random.default_rng(1)
    latents = {epoch: rng.normal(size=(POINTS, 4)) for epoch in range(1, 5)}
    track = LatentTrack("tsne")
    first = track.follow(1, 1, lambda: latents[1]).pending
    for epoch in (2, 3):  # epochs end while the t-SNE of epoch 1 runs
        asked = []
        state = track.follow(epoch, epoch, lambda: asked.append(epoch) or latents[epoch])
        if state.pending is not None:
            assert state.pending is first and not asked  # neither restarted nor its latents computed
    assert first.job.wait(timeout=60)
    state = track.follow(4, 4, lambda: latents[4])
    assert state.shown.epoch == 1 and state.shown.points.shape == (POINTS, 2)
    assert state.pending.epoch == 4  # then the newest epoch, not the ones missed
    assert state.pending.job.wait(timeout=60)
    assert track.state.shown.epoch == 4 and track.state.version == 2


def test_a_failed_projection_is_reported_with_its_epoch_and_not_retried():
    track = LatentTrack("pca")
    bad = np.ones((20, 3))
    bad[0, 0] = np.nan
    track.follow(3, "w3", lambda: bad).pending.job.wait(timeout=30)
    state = track.follow(3, "w3", lambda: pytest.fail("retried the same weights"))
    assert state.error[0] == 3 and "NaN" in state.error[1] and state.pending is None


def test_tracks_drop_the_least_recently_used_and_cancel_its_projection():
    latents = np.random.default_rng(2).normal(size=(600, 10)).astype(np.float32)
    tracks = LatentTracks(budget=latents.nbytes * 3 // 2)  # room for the latents of one track
    slow = tracks.track("a", "tsne")
    job = slow.follow(1, 1, lambda: latents).pending.job
    assert tracks.track("a", "tsne") is slow and tracks.nbytes >= latents.nbytes
    tracks.track("b", "pca").follow(1, 1, lambda: latents.copy())
    assert "a" in tracks  # "b" held nothing yet when it was asked for
    tracks.track("b", "pca")  # the page's next run: "b" holds latents now, "a" is the least recent
    assert "a" not in tracks and len(tracks) == 1
    assert job.wait(timeout=30) and job.cancelled


def test_a_tsne_asked_for_while_a_run_trains_finishes_and_names_its_epoch(digits):
    from vae_core.jobs import TrainingJob

    config = TrainConfig(data="digits", hidden=(32,), latent_dim=4, epochs=1_000, batch_size=256, device="cpu")
    run = TrainingJob(config, digits)
    run.start()
    track = LatentTrack("tsne")
    try:
        deadline = time.monotonic() + 60
        started_at = None
        while track.state.shown is None:
            assert time.monotonic() < deadline, "the t-SNE never finished while the run trained"
            epoch, weights = run.latest_weights()
            if epoch >= 1:
                state = track.follow(epoch, epoch, lambda: _means(config, digits, weights))
                started_at = started_at or state.pending.epoch
            time.sleep(0.05)
        assert run.snapshot().epoch > started_at  # the run moved on while the t-SNE ran
        assert track.state.shown.epoch == started_at
    finally:
        run.stop()
        run.wait(timeout=30)


def _means(config, digits, weights):
    from vae_core.models import build_model

    model = build_model(config, digits.image_shape, digits.num_classes)
    model.load_state_dict(weights)
    with torch.no_grad():
        return latent_means(model, digits.test_x[:POINTS]).numpy().astype(np.float32)
