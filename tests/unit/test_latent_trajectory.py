"""The latent trajectory: one fixed plane for every epoch, in which N(0, I) is the unit circle."""

import numpy as np

from vae_core.history import Frame
from vae_core.latent_trajectory import common_epochs, principal_plane, trajectory

PICTURES = np.zeros((1, 1, 2, 2), np.uint8)


def frame(epoch, means):
    return Frame(epoch, PICTURES, PICTURES, None if means is None else means.astype(np.float16))


def test_a_2d_latent_is_shown_as_it_is_and_frames_without_means_are_skipped():
    rng = np.random.default_rng(0)
    means = [rng.standard_normal((50, 2)) for _ in range(2)]
    track = trajectory([frame(1, None), frame(2, means[0]), frame(3, means[1])])
    assert track.epochs == (2, 3) and track.axis_names == ("z₀", "z₁")
    assert np.array_equal(track.at(3), means[1].astype(np.float16).astype(np.float32))
    assert trajectory([frame(1, None)]) is None


def test_the_plane_is_fitted_on_the_last_epoch_and_keeps_the_prior_a_unit_circle():
    rng = np.random.default_rng(1)
    last = rng.standard_normal((400, 6)) * np.array([5, 3, 0.1, 0.1, 0.1, 0.1]) + 4.0  # off-centre on purpose
    early = rng.standard_normal((400, 6))
    track = trajectory([frame(1, early), frame(2, last)])
    basis = principal_plane(last.astype(np.float16).astype(np.float32))
    assert np.allclose(basis.T @ basis, np.eye(2), atol=1e-5)  # orthonormal: N(0, I) projects to N(0, I₂)
    assert np.allclose(np.abs(basis[:2]), np.eye(2), atol=0.05)  # the two wide dimensions
    # projected through the origin, not around the centre: the offset of the codes stays visible
    assert np.allclose(track.at(2).mean(axis=0), 4.0 * basis.sum(axis=0), atol=0.6)
    assert track.points.shape == (2, 400, 2) and track.points.dtype == np.float32


def test_a_mirrored_cloud_gets_the_same_layout():
    rng = np.random.default_rng(2)
    cloud = rng.standard_normal((200, 4)) * np.array([4, 2, 1, 0.5])
    assert np.allclose(principal_plane(-cloud), -principal_plane(cloud), atol=1e-5)


def test_side_by_side_runs_step_through_the_epochs_they_share():
    rng = np.random.default_rng(3)
    a = trajectory([frame(e, rng.standard_normal((5, 2))) for e in (1, 2, 3)])
    b = trajectory([frame(e, rng.standard_normal((5, 2))) for e in (1, 3)])
    assert common_epochs([a, b]) == [1, 3]
