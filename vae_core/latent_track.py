"""The latent scatter of a run, followed epoch after epoch while it trains (the Latent page's).

A `LatentTrack` holds, for one run, method and number of points, the projection on show and at
most one projection under way. A projection under way always finishes on the epoch it started
from: a newer epoch waits for it, and is projected next (the newest one then, not every one
missed). Restarting on each epoch end kept a t-SNE of 2,000 points from ever finishing while a
run trained, and ran several at once on a 2-core machine. Each new projection is turned onto the
one on show (projection.displayed), never scaled, so the spread shown is the projection's own.

`LatentTracks` keeps the recent tracks of the whole server, so every tab shows the same thing, within
a budget in bytes (config.Limits.projection_cache_bytes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np

from .byte_cache import ByteCache, nbytes_of
from .config import limits
from .projection import ProjectionJob


@dataclass(frozen=True)
class Shown:
    """A finished projection: the epoch and weights it is of, its points and the latents behind them."""

    epoch: int
    weights: Hashable
    points: np.ndarray
    latents: np.ndarray
    elapsed_s: float


@dataclass(frozen=True)
class Pending:
    """The projection under way: the epoch and weights it started from, and its job."""

    epoch: int
    weights: Hashable
    job: ProjectionJob
    latents: np.ndarray


@dataclass(frozen=True)
class TrackState:
    """What a page may draw at one moment. `error` is the last failed projection's, with its epoch."""

    shown: Shown | None
    pending: Pending | None
    error: tuple[int, str] | None
    version: int  # counts the projections that have ended: a page redraws when it changes


class LatentTrack:
    """One run's latent scatter for one projection method and number of points."""

    def __init__(self, method: str, seed: int = 0):
        self.method = method
        self.seed = seed
        self._lock = threading.Lock()
        self._shown: Shown | None = None
        self._pending: Pending | None = None
        self._error: tuple[int, str] | None = None
        self._failed_weights: Hashable = None
        self._version = 0

    def follow(self, epoch: int, weights: Hashable, latents: Callable[[], np.ndarray]) -> TrackState:
        """Offer the run's newest weights (`weights` identifies them; `latents()` gives their latent
        means). Projected now unless a projection is under way, or these weights are on show, under
        way or failed already. Returns the state after the offer."""
        with self._lock:
            self._settle()
            if self._pending is None and weights not in self._known_weights():
                points = np.asarray(latents())
                reference = None if self._shown is None else self._shown.points
                job = ProjectionJob(points, self.method, seed=self.seed, reference=reference).start()
                self._pending = Pending(epoch, weights, job, points)
            return self._state()

    @property
    def state(self) -> TrackState:
        with self._lock:
            self._settle()
            return self._state()

    @property
    def nbytes(self) -> int:
        """What the track holds: the points on show and their latents, and the latents being projected."""
        with self._lock:
            held = [self._shown.points, self._shown.latents] if self._shown is not None else []
            if self._pending is not None:
                held.append(self._pending.latents)
        return nbytes_of(held)

    def cancel(self) -> None:
        """Stop the projection under way, if any (the track is dropped: nobody will show it)."""
        with self._lock:
            if self._pending is not None:
                self._pending.job.cancel()

    def _known_weights(self) -> tuple:
        return (*tuple(part.weights for part in (self._shown, self._pending) if part is not None), self._failed_weights)

    def _settle(self) -> None:
        """Take in the projection under way once it has ended."""
        pending = self._pending
        if pending is None or not pending.job.done:
            return
        job = pending.job
        if job.result is not None:
            self._shown = Shown(pending.epoch, pending.weights, job.result, pending.latents, job.elapsed_s)
            self._error = None
        elif job.error is not None:
            self._error = (pending.epoch, job.error)
            self._failed_weights = pending.weights
        self._pending = None  # a cancelled one is simply started again on the next offer
        self._version += 1

    def _state(self) -> TrackState:
        return TrackState(self._shown, self._pending, self._error, self._version)


class LatentTracks:
    """The most recently used tracks, keyed by any hashable key (the app uses (run id, method, number
    of points)), weighing together at most `budget` bytes (default: config.Limits.projection_cache_bytes).
    A track is weighed by what it holds each time one is asked for (its projection may have finished
    since). A track dropped while projecting is cancelled: nobody can find it any more, and it would
    take a core from the tracks that can."""

    def __init__(self, budget: int | Callable[[], int] | None = None):
        self._tracks: ByteCache[LatentTrack] = ByteCache(
            budget if budget is not None else (lambda: limits().projection_cache_bytes),
            weigh=lambda track: track.nbytes,
            on_evict=LatentTrack.cancel,
            reweigh=True,
        )
        self._lock = threading.Lock()  # one track per key when two sessions ask for a new one at once

    def track(self, key: Hashable, method: str, seed: int = 0) -> LatentTrack:
        """The track for `key`, made now if there is none."""
        with self._lock:
            track = self._tracks.get(key)
            return self._tracks.put(key, LatentTrack(method, seed) if track is None else track)

    @property
    def nbytes(self) -> int:
        """What the tracks weighed when one was last asked for."""
        return self._tracks.nbytes

    def __contains__(self, key: Hashable) -> bool:
        return key in self._tracks

    def __len__(self) -> int:
        return len(self._tracks)
