"""The latent scatter over the epochs: the same test images' means per saved epoch, in one fixed plane.

So what moves between epochs is the codes, not the axes.

The plane is the two principal directions of the last epoch's means, but the codes are projected
onto it through the origin, not around their centre: the basis is orthonormal, so the prior
N(0, I) lands on N(0, I₂) in every frame, and its 1σ and 2σ circles are drawn where they belong.
A 2-D latent is shown as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .history import Frame


@dataclass(frozen=True)
class Trajectory:
    epochs: tuple[int, ...]
    points: np.ndarray  # float32, len(epochs) x images x 2
    axis_names: tuple[str, str]

    def at(self, epoch: int) -> np.ndarray:
        return self.points[self.epochs.index(epoch)]


def trajectory(frames: Sequence[Frame]) -> Trajectory | None:
    """The saved epochs' latent means in one frame; None when no frame kept any (a run saved before
    they were kept)."""
    kept = [frame for frame in frames if frame.latent_means is not None]
    if not kept:
        return None
    count = min(len(frame.latent_means) for frame in kept)  # the same in one run; a checkpoint is checked for it
    means = np.stack([frame.latent_means[:count].astype(np.float32) for frame in kept])
    if means.shape[2] == 2:
        return Trajectory(tuple(f.epoch for f in kept), means, ("z₀", "z₁"))
    basis = principal_plane(means[-1])
    return Trajectory(
        tuple(f.epoch for f in kept),
        (means @ basis).astype(np.float32),
        ("PC 1 of the last epoch", "PC 2 of the last epoch"),
    )


def principal_plane(points: np.ndarray) -> np.ndarray:
    """An orthonormal D x 2 basis of the two directions along which `points` (N x D) vary most,
    each signed so that its largest-magnitude score is positive (a mirrored cloud gets the same plane)."""
    centred = points - points.mean(axis=0)
    _, _, directions = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    basis = directions[:2].T
    scores = centred @ basis
    largest = scores[np.argmax(np.abs(scores), axis=0), [0, 1]]
    return (basis * np.where(largest < 0, -1.0, 1.0)).astype(np.float32)


def common_epochs(trajectories: Sequence[Trajectory]) -> list[int]:
    """The epochs every trajectory has, for players that step several runs side by side."""
    shared = set(trajectories[0].epochs).intersection(*(t.epochs for t in trajectories[1:]))
    return sorted(shared)
