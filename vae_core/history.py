"""What a run remembers: per-step losses, per-epoch test metrics, hyperparameter changes and the
pictures of each epoch. Grows by appends from the training thread; `freeze()` gives readers
immutable NumPy copies."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STEP_FIELDS = ("total", "recon", "kl", "beta", "lr")
MAX_FRAMES = 120  # epochs of pictures kept; beyond it every other one is dropped (first and last stay)
# The latent means of the first test images are kept with each frame, so the scatter can be played
# over the epochs. Float16 and a bound on the values per frame keep 120 frames under 8 MB.
TRACKED_IMAGES = 1000
TRACKED_VALUES = 32_768  # per frame: all 1,000 images up to a 32-dimensional latent, fewer beyond
TRACKED_DTYPE = np.float16


def tracked_count(latent_dim: int) -> int:
    """At most how many test images' means a frame keeps for a latent of `latent_dim` dimensions."""
    return max(1, min(TRACKED_IMAGES, TRACKED_VALUES // max(1, latent_dim)))


@dataclass(frozen=True)
class StepCurves:
    """Per-step training curves, all the same length."""

    step: np.ndarray  # int64, global step (1-based: the step that produced the value)
    total: np.ndarray
    recon: np.ndarray
    kl: np.ndarray
    beta: np.ndarray  # the KL weight in force (after annealing)
    lr: np.ndarray

    def __len__(self) -> int:
        return int(self.step.shape[0])


@dataclass(frozen=True)
class Frame:
    """What one epoch leaves to look at: reconstructions of the fixed test images, decodings of fixed
    z, and the latent means of the first test images (for the scatter played over the epochs)."""

    epoch: int
    reconstructions: np.ndarray  # uint8, N x C x H x W
    samples: np.ndarray  # uint8, M x C x H x W
    # float16, K x latent_dim: the means of the first K test images (the same K every epoch of a
    # run); None in frames saved before they were kept
    latent_means: np.ndarray | None = None


@dataclass
class History:
    """Mutable record owned by the training thread."""

    steps: list[np.ndarray] = field(default_factory=list)  # chunks of shape (n, 1 + len(STEP_FIELDS))
    epochs: list[dict] = field(default_factory=list)  # per-epoch test metrics
    events: list[dict] = field(default_factory=list)  # {"step", "name", "value"}: lr/beta changes, resumes
    frames: list[Frame] = field(default_factory=list)

    def add_steps(self, rows: np.ndarray) -> None:
        if rows.size:
            self.steps.append(np.asarray(rows, dtype=np.float64))

    def add_frame(self, frame: Frame) -> None:
        self.frames.append(frame)
        if len(self.frames) > MAX_FRAMES:
            # Thin the middle so memory stays bounded and the timeline still spans the whole run.
            middle = self.frames[1:-1:2]
            self.frames = [self.frames[0], *middle, self.frames[-1]]

    def step_matrix(self) -> np.ndarray:
        if not self.steps:
            return np.zeros((0, 1 + len(STEP_FIELDS)))
        if len(self.steps) > 1:
            self.steps = [np.concatenate(self.steps)]  # compact, so later freezes stay cheap
        return self.steps[0]

    def curves(self) -> StepCurves:
        matrix = self.step_matrix()
        columns = {name: matrix[:, i + 1].astype(np.float32) for i, name in enumerate(STEP_FIELDS)}
        return StepCurves(step=matrix[:, 0].astype(np.int64), **columns)

    def truncate(self, step: int) -> None:
        """Forget what came after `step` (a resume from an earlier checkpoint)."""
        matrix = self.step_matrix()
        self.steps = [matrix[matrix[:, 0] <= step]]
        self.epochs = [e for e in self.epochs if e["step"] <= step]
        self.events = [e for e in self.events if e["step"] <= step]
