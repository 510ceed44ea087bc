"""vae_core.projection: exact checks where the maths allows, small data everywhere.

The UMAP tests share the `warm_umap` fixture: in a process whose on-disk numba cache is cold,
that fixture pays numba's one-off compilation (tens of seconds on 2 cores); with the cache warm
it is umap's import (a few seconds). Deselect them with `-k "not umap"`.
"""

import threading
import time

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from vae_core.projection import (
    METHODS,
    ProjectionCancelled,
    ProjectionJob,
    align,
    displayed,
    neighbour_preservation,
    project,
    spread,
    warm_up_projections,
)


def gaussian_clusters(n_per_cluster=100, n_dims=10, seed=0):
    """Three well separated Gaussian clusters and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, n_dims)) * 10
    labels = np.repeat(np.arange(3), n_per_cluster)
    return centres[labels] + rng.normal(size=(len(labels), n_dims)), labels


def knn_label_accuracy(points_2d, labels, k=5):
    """Share of points whose k nearest other points mostly carry their own label."""
    neighbours = NearestNeighbors(n_neighbors=k).fit(points_2d).kneighbors(return_distance=False)
    votes = (labels[neighbours] == labels[:, None]).sum(axis=1)
    return float(np.mean(votes > k / 2))


def random_rotation(n_dims, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n_dims, n_dims)))
    return q


class ProgressLog:
    def __init__(self):
        self.fractions = []
        self.embeddings = []

    def __call__(self, fraction, embedding):
        self.fractions.append(fraction)
        if embedding is not None:
            self.embeddings.append(embedding.copy())


@pytest.fixture
def thread_failures(monkeypatch):
    """Exceptions that escaped any thread during the test."""
    failures = []
    monkeypatch.setattr(threading, "excepthook", lambda args: failures.append(args.exc_value))
    return failures


@pytest.fixture(scope="module")
def warm_umap():
    warm_up_projections()


# --- PCA and pass-through -------------------------------------------------------------------


def points_on_a_plane(n_points=200, n_dims=12, seed=0):
    """(plane coordinates, the same points lying on a 2-D plane inside n_dims dimensions)."""
    rng = np.random.default_rng(seed)
    plane = rng.normal(size=(n_points, 2)) * [3.0, 1.0]  # distinct variances: a unique PCA basis
    basis = random_rotation(n_dims, seed)[:2]
    return plane, plane @ basis + rng.normal(size=n_dims)


def pairwise_distances(points):
    return np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)


def test_pca_recovers_points_on_a_plane():
    plane, latents = points_on_a_plane()
    embedding = project(latents, "pca")
    assert embedding.shape == (200, 2) and embedding.dtype == np.float32
    assert neighbour_preservation(plane, embedding) == 1.0
    np.testing.assert_allclose(pairwise_distances(embedding), pairwise_distances(plane), atol=1e-4)


def test_pca_is_deterministic_and_sign_stable():
    _, latents = points_on_a_plane()
    first = project(latents, "pca")
    np.testing.assert_array_equal(first, project(latents, "pca"))
    # The SVD may hand back either sign per axis; the convention must make these equal.
    np.testing.assert_allclose(project(-latents, "pca"), first, atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_two_dimensional_latents_are_returned_as_they_are(method):
    latents = np.random.default_rng(0).normal(size=(50, 2))
    embedding = project(latents, method)
    assert embedding.dtype == np.float32
    np.testing.assert_array_equal(embedding, latents.astype(np.float32))


@pytest.mark.parametrize(
    "latents, method, message",
    [
        (np.zeros((2, 5)), "pca", "at least 3 points"),
        (np.zeros(10), "pca", "2-D array"),
        (np.zeros((4, 3, 2)), "pca", "2-D array"),
        (np.zeros((10, 1)), "pca", "at least 2 latent dimensions"),
        (np.array([[0.0, 1.0, np.nan]] * 5), "tsne", "NaN"),
        (np.array([[0.0, np.inf, 1.0]] * 5), "umap", "NaN or infinite"),
        (np.array([["a", "b"]] * 5), "pca", "real numbers"),
        (np.zeros((10, 5)), "isomap", "pca, tsne, umap"),
    ],
)
def test_bad_input_raises_a_clear_value_error(latents, method, message):
    with pytest.raises(ValueError, match=message):
        project(latents, method)


# --- align and neighbour_preservation ---------------------------------------------------------


def turned(points, angle, reflect=False):
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return points @ (rotation @ np.diag([1.0, -1.0]) if reflect else rotation)


@pytest.mark.parametrize("reflect", [False, True])
def test_align_undoes_a_rotation_and_shift(reflect):
    reference = np.random.default_rng(1).normal(size=(100, 2))
    moved = turned(reference, 0.7, reflect) + np.array([10.0, -4.0])
    np.testing.assert_allclose(align(reference, moved), reference, atol=1e-5)


def test_align_never_scales_so_aligning_epoch_after_epoch_keeps_each_spread():
    rng = np.random.default_rng(4)
    shown = rng.normal(size=(200, 2))
    for epoch in range(30):  # each new layout is bigger than the one it is turned onto
        new = turned(rng.normal(size=(200, 2)) * 2.0, epoch) + epoch
        shown = align(shown, new)
        np.testing.assert_allclose(pairwise_distances(shown), pairwise_distances(new), atol=1e-4)
        assert spread(shown) == pytest.approx(spread(new), rel=1e-5)


def test_displayed_keeps_pca_units_and_gives_tsne_and_umap_unit_spread():
    layout = np.random.default_rng(5).normal(size=(100, 2)) * [30.0, 10.0] + 7.0
    np.testing.assert_array_equal(displayed("pca", layout), layout.astype(np.float32))
    for method in ("tsne", "umap"):
        unit = displayed(method, layout)
        assert spread(unit) == pytest.approx(1.0, rel=1e-5)
        np.testing.assert_allclose(unit.mean(axis=0), 0.0, atol=1e-5)
        reference = turned(unit, 2.0)
        np.testing.assert_allclose(displayed(method, layout * 0.01, reference), reference, atol=1e-5)


def test_align_rejects_different_point_sets():
    with pytest.raises(ValueError, match="same shape"):
        align(np.zeros((10, 2)), np.zeros((9, 2)))


def test_neighbour_preservation_of_identical_and_shuffled_points():
    points = np.random.default_rng(2).normal(size=(500, 5))
    assert neighbour_preservation(points, points) == 1.0
    shuffled = points[np.random.default_rng(3).permutation(len(points))]
    assert neighbour_preservation(points, shuffled) < 0.1


# --- t-SNE ------------------------------------------------------------------------------------


def test_tsne_separates_clusters_and_reports_partial_embeddings():
    latents, labels = gaussian_clusters()
    progress = ProgressLog()
    embedding = project(latents, "tsne", progress=progress)
    assert embedding.shape == (300, 2) and embedding.dtype == np.float32
    assert knn_label_accuracy(embedding, labels) > 0.95
    assert progress.fractions[0] == 0.0 and progress.fractions[-1] == 1.0
    assert progress.fractions == sorted(progress.fractions)
    assert len(set(progress.fractions)) > 10
    assert len(progress.embeddings) >= 4  # starting layout, every 50 iterations, the result
    np.testing.assert_array_equal(progress.embeddings[0], project(latents, "pca"))
    assert all(partial.shape == (300, 2) for partial in progress.embeddings)
    np.testing.assert_array_equal(progress.embeddings[-1], embedding)


def test_should_stop_aborts_tsne():
    latents, _ = gaussian_clusters()
    progress = ProgressLog()
    with pytest.raises(ProjectionCancelled):
        # The first partial embedding is the starting layout; the second comes from the optimiser.
        project(latents, "tsne", progress=progress, should_stop=lambda: len(progress.embeddings) > 1)
    assert len(progress.embeddings) == 2 and max(progress.fractions) < 0.5


# --- UMAP -------------------------------------------------------------------------------------


def test_umap_separates_clusters_reproducibly(warm_umap):
    latents, labels = gaussian_clusters(n_per_cluster=67)
    progress = ProgressLog()
    embedding = project(latents, "umap", seed=3, progress=progress)
    assert embedding.shape == (201, 2) and embedding.dtype == np.float32
    assert knn_label_accuracy(embedding, labels) > 0.95
    assert progress.fractions[0] == 0.0 and progress.fractions[-1] == 1.0
    np.testing.assert_array_equal(project(latents, "umap", seed=3), embedding)


def test_should_stop_aborts_umap_inside_its_epoch_loop(warm_umap):
    latents, _ = gaussian_clusters()
    progress = ProgressLog()
    epoch_loop_started = lambda: len(progress.fractions) >= 3  # 0, neighbours found, epoch 0
    with pytest.raises(ProjectionCancelled):
        project(latents, "umap", progress=progress, should_stop=epoch_loop_started)
    assert len(progress.fractions) == 3 and max(progress.fractions) < 1.0


# --- ProjectionJob ----------------------------------------------------------------------------


def test_job_runs_to_a_result(thread_failures):
    _, latents = points_on_a_plane()
    job = ProjectionJob(latents, "pca").start()
    assert job.wait(timeout=30)
    assert job.error is None and not job.cancelled and job.progress == 1.0
    np.testing.assert_array_equal(job.result, project(latents, "pca"))
    np.testing.assert_array_equal(job.preview, job.result)
    assert not job.result.flags.writeable  # a shared snapshot
    elapsed = job.elapsed_s
    assert elapsed > 0 and job.elapsed_s == elapsed  # frozen once done
    assert thread_failures == []


def test_job_turns_its_result_onto_the_reference_without_scaling_it():
    _, latents = points_on_a_plane()
    previous = 2.0 * project(latents, "pca") @ random_rotation(2, seed=5)
    job = ProjectionJob(latents, "pca", reference=previous).start()
    job.wait(timeout=30)
    np.testing.assert_allclose(job.result, previous / 2.0, atol=1e-3)  # the PCA scores' own size


def test_job_never_rotates_two_dimensional_latents():
    latents = np.random.default_rng(0).normal(size=(50, 2))
    job = ProjectionJob(latents, "tsne", reference=latents @ random_rotation(2)).start()
    job.wait(timeout=30)
    np.testing.assert_array_equal(job.result, latents.astype(np.float32))


def test_job_can_be_cancelled_while_running(thread_failures):
    latents, _ = gaussian_clusters(n_per_cluster=300)
    job = ProjectionJob(latents, "tsne").start()
    deadline = time.monotonic() + 30
    while job.preview is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.preview is not None and not job.done
    job.cancel()
    assert job.wait(timeout=30)
    assert job.cancelled and job.result is None and job.error is None and job.progress < 1.0
    assert thread_failures == []


def test_job_error_lands_in_error_not_in_the_thread(thread_failures):
    latents = np.ones((20, 4))
    latents[3, 1] = np.nan
    job = ProjectionJob(latents, "tsne").start()
    assert job.wait(timeout=30)
    assert "NaN" in job.error and job.result is None and not job.cancelled
    assert thread_failures == []
