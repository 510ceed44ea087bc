"""2-D projections of latent vectors for the Latent page: PCA, t-SNE and UMAP.

`project` is the plain function; `ProjectionJob` runs it in a daemon thread and publishes
immutable snapshots (progress, a partial embedding to preview, the result or an error) that
any thread may read (latent_track.py follows a training run with them). `displayed` is what a
scatter shows of a projection: PCA scores as they are, in the latent's own units; t-SNE and UMAP
layouts, whose scale means nothing, at unit spread; either turned (never scaled) by `align` to
line up with the previous epoch's. `neighbour_preservation` scores a projection.

The heavy libraries (openTSNE, umap-learn and through it numba) are imported inside the
functions that need them, so importing this module stays cheap.

Speed choices, measured on the 2-core target machine (shared, load average 3-6) with
`bench/bench_projection.py` (10,000 Fashion-MNIST images reduced to 10 dimensions), where
t-SNE takes ~21 s against scikit-learn's ~112 s at neighbour preservation 0.525 against 0.533:
- Exact k-nearest neighbours (scikit-learn, 2 jobs) for both t-SNE and UMAP. Up to ~10^4
  points they beat the approximate indexes: 0.9-2.8 s against 6.6-10 s for Annoy in openTSNE,
  for 10 to 128 dimensions. It also spares UMAP pynndescent's search (more numba kernels to
  compile) and spares t-SNE the import of pynndescent (see `_tsne_affinities`).
- t-SNE: FFT-accelerated gradients from 10,000 points (Barnes-Hut below, where it is faster);
  125 early-exaggeration + 200 normal iterations instead of openTSNE's 250 + 500. The
  neighbour preservation (k=10) falls from 0.532 to 0.525 and the run takes less than half
  the time: the late iterations are the dear ones, as the FFT grid grows with the embedding.
  The first preview is the PCA layout t-SNE starts from, out in milliseconds.
- UMAP: PCA initialisation instead of the spectral one (whose ARPACK solve took 7-8 s of a
  15 s fit) and 200 epochs instead of the 500 UMAP picks for <= 10,000 points, at the same
  kNN label accuracy and nearly the same neighbour preservation (0.359 against 0.365).
- UMAP runs seeded (`random_state=seed`), which makes umap-learn single-threaded. On 2 cores
  the parallel variant (no seed, n_jobs=2) was no faster: 3.9-4.2 s either way for the fit of
  10,000 points. It is not reproducible, needs a second JIT compilation, and would take the
  core that the app and a running training need.
- numba compiles UMAP's kernels on first use and umap-learn caches almost none of them, so
  every new process paid ~15 s before its first UMAP, on top of ~20 s for pynndescent's eager
  compilation at import when its own cache is cold. We point numba's cache at a persistent
  directory and switch on on-disk caching for every umap/pynndescent kernel: the first UMAP of
  10,000 points in a fresh process takes ~10 s, umap's import included (37-56 s with the
  cache cold, once per machine). `warm_up_projections` lets the app pay that in the background.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import DataError
from .user_cache import user_cache_dir

METHODS = ("pca", "tsne", "umap")

Progress = Callable[[float, "np.ndarray | None"], None]
ShouldStop = Callable[[], bool]

N_JOBS = 2  # the target machine has 2 cores
# Below this many points a second thread costs more in start-up and OpenMP spin-waiting than it
# saves: a 300-point t-SNE took 0.7 s on one thread and 2.3 s on two on a busy 2-core machine.
PARALLEL_MIN_POINTS = 1_000

TSNE_PERPLEXITY = 30.0
TSNE_EARLY_EXAGGERATION_ITERS = 125
TSNE_ITERS = 200
TSNE_CHECK_EVERY = 10  # iterations between progress reports and stop checks
TSNE_PREVIEW_EVERY = 50  # iterations between partial embeddings handed to `progress`
TSNE_AFFINITY_SHARE = 0.15  # share of the progress bar for neighbours + affinities
# The FFT gradient's interpolation grid costs the same whatever the number of points, so below
# openTSNE's own cut-over Barnes-Hut is faster (measured: 300 points 0.5 s against 5 s; 2,000
# and 5,000 points about 2x); the app's usual 10,000 points get the FFT.
TSNE_FFT_MIN_POINTS = 10_000

UMAP_N_NEIGHBORS = 15
UMAP_MIN_DIST = 0.1
UMAP_EPOCHS = 200
UMAP_KNN_SHARE = 0.1  # share of the progress bar for the neighbour search
UMAP_WARM_UP_POINTS = 64

EXACT_KNN_MAX_POINTS = 20_000  # beyond this openTSNE's approximate index pays off

log = logging.getLogger(__name__)


class ProjectionInputError(DataError, ValueError):
    """The latents cannot be projected. A ValueError for callers of `project`, and a DataError
    so the app shows the message instead of a traceback."""


class ProjectionCancelled(Exception):
    """`should_stop` said stop before the projection finished."""


def _ignore_progress(fraction: float, embedding: np.ndarray | None) -> None:
    pass


def _never_stop() -> bool:
    return False


# ---------------------------------------------------------------------------------------------
# project


def project(
    latents: np.ndarray,
    method: str,
    *,
    seed: int = 0,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> np.ndarray:
    """Project (N, D) latents to (N, 2) float32 points with `method`, one of METHODS.

    D == 2 returns the latents themselves: their axes already are the latent axes. `progress`
    gets (fraction in 0..1, current embedding or None); t-SNE hands a partial embedding every
    TSNE_PREVIEW_EVERY iterations. When `should_stop()` turns true, ProjectionCancelled is
    raised. Bad input raises ProjectionInputError, a ValueError.
    """
    points = _validated_latents(latents, method)
    report = progress or _ignore_progress
    stop = should_stop or _never_stop
    _raise_if_stopped(stop)
    report(0.0, None)
    if points.shape[1] == 2:
        embedding = points.astype(np.float32)
    else:
        embedding = _PROJECTORS[method](points, seed, report, stop)
    report(1.0, embedding)
    return embedding


def _validated_latents(latents: np.ndarray, method: str) -> np.ndarray:
    if method not in METHODS:
        raise ProjectionInputError(f"unknown projection method {method!r}: choose one of {', '.join(METHODS)}")
    try:
        points = np.asarray(latents)
    except (TypeError, ValueError) as error:
        raise ProjectionInputError(f"latents must be an array of numbers: {error}") from None
    if points.ndim != 2:
        raise ProjectionInputError(
            f"latents must be a 2-D array (points x latent dimensions), got shape {points.shape}"
        )
    if not (np.issubdtype(points.dtype, np.integer) or np.issubdtype(points.dtype, np.floating)):
        raise ProjectionInputError(f"latents must be real numbers, got dtype {points.dtype}")
    n_points, n_dims = points.shape
    if n_points < 3:
        raise ProjectionInputError(f"need at least 3 points to project, got {n_points}")
    if n_dims < 2:
        raise ProjectionInputError(f"need at least 2 latent dimensions to project to 2-D, got {n_dims}")
    finite = np.isfinite(points)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise ProjectionInputError(
            f"latents contain NaN or infinite values in {bad_rows.size} of {n_points} points "
            f"(first at row {bad_rows[0]}); the model has probably diverged"
        )
    return points.astype(np.float64)


def _raise_if_stopped(should_stop: ShouldStop) -> None:
    if should_stop():
        raise ProjectionCancelled()


def _threads_for(n_points: int) -> int:
    return N_JOBS if n_points >= PARALLEL_MIN_POINTS else 1


def _pca(points: np.ndarray, seed: int, report: Progress, stop: ShouldStop) -> np.ndarray:
    return pca_layout(points)


def pca_layout(points: np.ndarray) -> np.ndarray:
    """The first two principal-component scores of (N, D) points (scikit-learn's exact PCA), float32,
    with the sign of each axis fixed so that its largest-magnitude score is positive: a point set and
    its mirror image then get the same layout, and the scatter never flips between calls."""
    from sklearn.decomposition import PCA

    scores = PCA(n_components=2, svd_solver="full").fit_transform(points)
    largest = scores[np.argmax(np.abs(scores), axis=0), [0, 1]]
    return (scores * np.where(largest < 0, -1.0, 1.0)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# t-SNE (openTSNE, FFT-accelerated)


class _TsneMonitor:
    """openTSNE callback: reports progress, hands out partial embeddings, asks to stop.

    openTSNE counts iterations afresh in each optimisation phase; `iterations_before` is set to
    the length of the finished phases so the fraction keeps rising across them.
    """

    def __init__(self, report: Progress, stop: ShouldStop, total_iterations: int):
        self.report = report
        self.stop = stop
        self.total_iterations = total_iterations
        self.iterations_before = 0
        self.last_preview_at = 0

    def __call__(self, iteration: int, error: float, embedding: np.ndarray) -> bool:
        if self.stop():
            return True  # openTSNE then raises OptimizationInterrupt
        done = self.iterations_before + iteration
        preview = None
        if done - self.last_preview_at >= TSNE_PREVIEW_EVERY:
            preview = np.array(embedding, dtype=np.float32)  # openTSNE keeps updating its own
            self.last_preview_at = done
        self.report(_tsne_fraction(done, self.total_iterations), preview)
        return False


def _tsne_fraction(iterations_done: int, total_iterations: int) -> float:
    return TSNE_AFFINITY_SHARE + (1.0 - TSNE_AFFINITY_SHARE) * iterations_done / total_iterations


def _tsne_affinities(points: np.ndarray, seed: int):
    """openTSNE's perplexity-based affinities over neighbours we choose ourselves: left to pick
    them, openTSNE imports pynndescent just to see if it is there, and that import alone costs
    numba ~3 s (warm cache) to ~50 s (cold) in every new process."""
    from openTSNE import affinity, nearest_neighbors

    n_points = len(points)
    # openTSNE wants 3 * perplexity neighbours; small sets get the largest perplexity that fits.
    perplexity = min(TSNE_PERPLEXITY, (n_points - 1) / 3)
    n_neighbors = min(n_points - 1, int(3 * perplexity))
    search = nearest_neighbors.Sklearn if n_points <= EXACT_KNN_MAX_POINTS else nearest_neighbors.Annoy
    knn_index = search(points, n_neighbors, n_jobs=_threads_for(n_points), random_state=seed)
    return affinity.PerplexityBasedNN(perplexity=perplexity, knn_index=knn_index, n_jobs=_threads_for(n_points))


def _tsne(points: np.ndarray, seed: int, report: Progress, stop: ShouldStop) -> np.ndarray:
    # t-SNE starts from the PCA layout (global structure kept, deterministic, and oriented like
    # the PCA view). It takes a fraction of a second, so it is the first preview, handed out
    # before the import and the affinities that make the user wait.
    start_layout = pca_layout(points)
    report(0.0, start_layout)

    from openTSNE import TSNE, initialization
    from openTSNE.tsne import OptimizationInterrupt

    n_points = len(points)
    monitor = _TsneMonitor(report, stop, TSNE_EARLY_EXAGGERATION_ITERS + TSNE_ITERS)
    tsne = TSNE(
        n_components=2,
        negative_gradient_method="fft" if n_points >= TSNE_FFT_MIN_POINTS else "bh",
        n_jobs=_threads_for(n_points),
        random_state=seed,
        callbacks=monitor,
        callbacks_every_iters=TSNE_CHECK_EVERY,
    )
    affinities = _tsne_affinities(points, seed)
    _raise_if_stopped(stop)
    # What openTSNE's own "pca" initialisation does: shrink to a tiny spread, add a little jitter.
    start = initialization.jitter(initialization.rescale(start_layout.astype(np.float64)), random_state=seed)
    embedding = tsne.prepare_initial(affinities=affinities, initialization=start)
    report(TSNE_AFFINITY_SHARE, None)
    try:
        # The same two phases as TSNE.fit, run here so the monitor knows where it is.
        embedding.optimize(
            n_iter=TSNE_EARLY_EXAGGERATION_ITERS,
            exaggeration=tsne.early_exaggeration,
            momentum=tsne.initial_momentum,
            inplace=True,
            propagate_exception=True,
        )
        monitor.iterations_before = TSNE_EARLY_EXAGGERATION_ITERS
        embedding.optimize(
            n_iter=TSNE_ITERS,
            exaggeration=tsne.exaggeration,
            momentum=tsne.final_momentum,
            inplace=True,
            propagate_exception=True,
        )
    except OptimizationInterrupt:
        raise ProjectionCancelled() from None
    return np.array(embedding, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# UMAP (umap-learn) and its numba cache

_umap_lock = threading.Lock()
_umap_module = None


def numba_cache_dir() -> Path:
    """Where compiled numba kernels persist across processes (NUMBA_CACHE_DIR wins if set)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    return user_cache_dir() / "numba"


def _use_persistent_numba_cache() -> None:
    """Point numba's on-disk cache at numba_cache_dir(). Must run before umap (and with it
    pynndescent, whose kernels register their caches at import) is imported."""
    cache_dir = numba_cache_dir()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        log.warning("numba cache %s unusable (%s): UMAP will recompile in every process", cache_dir, error)
        return
    os.environ["NUMBA_CACHE_DIR"] = str(cache_dir)
    if "numba" in sys.modules:  # someone imported numba first: make it re-read the environment
        from numba.core import config

        config.reload_config()


def _cache_every_umap_kernel() -> int:
    """Switch on numba's on-disk cache for every jitted function of umap and pynndescent, before any
    is compiled: umap asks it for almost none of its own. Measured on 2 busy cores (load 7), the
    first UMAP of 2,000 10-D points in a fresh process, umap's import included and numba's cache
    warm, took 6.1-8.2 s with it and 18.6-22.7 s without (3 interleaved runs each). Public numba API
    only, a Dispatcher's enable_caching(): one that already caches just gets an equal cache, and one numba
    cannot cache (no source file) is left as it is. Returns how many were switched on."""
    from numba.core.dispatcher import Dispatcher

    enabled = 0
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in ("umap", "pynndescent"):
            continue
        for kernel in list(vars(module).values()):
            if isinstance(kernel, Dispatcher):
                try:
                    kernel.enable_caching()
                except RuntimeError:  # "cannot cache function ...: no locator available"
                    continue
                enabled += 1
    return enabled


def _import_umap():
    """umap, imported once with the persistent numba cache in place."""
    global _umap_module
    with _umap_lock:
        if _umap_module is None:
            _use_persistent_numba_cache()
            with warnings.catch_warnings():  # umap's notes about optional extras at import
                warnings.simplefilter("ignore")
                import umap
            log.debug("numba disk cache enabled for %d umap kernels", _cache_every_umap_kernel())
            _umap_module = umap
        return _umap_module


def warm_up_projections() -> None:
    """Import scikit-learn's PCA (about 0.5 s of a fresh process, most of a first PCA's time) and
    umap, and compile (or load from the disk cache) every kernel a UMAP projection uses, on tiny
    arrays. The app calls this in a background thread so the user's first projection waits for
    neither. UMAP's kernels depend on types, not sizes, and `_umap` feeds the same float32/int32
    arrays and settings whatever the size, so 64 points cover 10,000."""
    points = np.random.default_rng(0).normal(size=(UMAP_WARM_UP_POINTS, 4))
    project(points, "pca")
    project(points, "umap")


class _UmapEpochCounter:
    """A file for umap's tqdm progress bar: reads the epoch count out of each redraw, reports it
    and cancels by raising out of the optimisation loop. umap-learn has no callback; its epoch
    loop is a tqdm over range(n_epochs) and tqdm redraws through `file.write`."""

    BAR_FORMAT = "{n}/{total}"
    _COUNT = re.compile(r"(\d+)/(\d+)")

    def __init__(self, report: Progress, stop: ShouldStop):
        self.report = report
        self.stop = stop
        self.cancelled = False

    def write(self, text: str) -> int:
        if self.cancelled:
            return len(text)  # tqdm may draw once more while it is torn down
        if self.stop():
            self.cancelled = True
            raise ProjectionCancelled()
        counts = self._COUNT.findall(text)
        if counts:
            epoch, epochs = map(int, counts[-1])
            self.report(UMAP_KNN_SHARE + (1.0 - UMAP_KNN_SHARE) * epoch / max(epochs, 1), None)
        return len(text)

    def flush(self) -> None:
        pass

    def tqdm_kwds(self) -> dict:
        return {"disable": False, "file": self, "bar_format": self.BAR_FORMAT, "mininterval": 0.2, "ascii": True}


def _exact_knn(points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each point's k nearest neighbours, itself first, in the dtypes umap's own search returns."""
    from sklearn.neighbors import NearestNeighbors

    search = NearestNeighbors(n_neighbors=k, n_jobs=_threads_for(len(points)))
    distances, indices = search.fit(points).kneighbors(points)
    return indices.astype(np.int32), distances.astype(np.float32)


def _umap(points: np.ndarray, seed: int, report: Progress, stop: ShouldStop) -> np.ndarray:
    umap = _import_umap()
    # We hand UMAP our own neighbours, so it has no search index to keep: expected, not news.
    # Set on every call (a no-op when present) because test runners reset warning filters.
    warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
    _raise_if_stopped(stop)
    features = points.astype(np.float32)
    n_neighbors = min(UMAP_N_NEIGHBORS, len(features) - 1)
    knn_indices, knn_distances = _exact_knn(features, n_neighbors)
    _raise_if_stopped(stop)
    report(UMAP_KNN_SHARE, None)
    epoch_counter = _UmapEpochCounter(report, stop)
    reducer = umap.UMAP(
        n_neighbors=n_neighbors,
        min_dist=UMAP_MIN_DIST,
        init="pca",
        n_epochs=UMAP_EPOCHS,
        random_state=seed,  # reproducible; this makes umap single-threaded (see module doc)
        n_jobs=1,
        precomputed_knn=(knn_indices, knn_distances, None),
        tqdm_kwds=epoch_counter.tqdm_kwds(),
    )
    return np.asarray(reducer.fit_transform(features), dtype=np.float32)


_PROJECTORS = {"pca": _pca, "tsne": _tsne, "umap": _umap}


# ---------------------------------------------------------------------------------------------
# comparing projections


def align(reference: np.ndarray, embedding: np.ndarray) -> np.ndarray:
    """`embedding` rotated or reflected about its centre and moved onto `reference`'s centre, to best
    fit it (orthogonal Procrustes, least squares); both hold the same points in the same order.

    Never scaled: the distances between points stay what the projection made them. A scale fitted
    onto the previous epoch's scatter compounds when each epoch is aligned onto the last: a run
    followed for 30 epochs showed its PCA spread at 0.001 where it was 1.34.
    """
    target = np.asarray(reference, dtype=np.float64)
    source = np.asarray(embedding, dtype=np.float64)
    if target.shape != source.shape or target.ndim != 2:
        raise ValueError(f"align needs two (N, d) arrays of the same shape, got {target.shape} and {source.shape}")
    from scipy.linalg import orthogonal_procrustes

    target_mean, source_mean = target.mean(axis=0), source.mean(axis=0)
    rotation, _ = orthogonal_procrustes(source - source_mean, target - target_mean)
    return ((source - source_mean) @ rotation + target_mean).astype(np.float32)


def spread(points: np.ndarray) -> float:
    """Root mean square distance of the points from their centre."""
    points = np.asarray(points, dtype=np.float64)
    return float(np.sqrt(np.mean(np.sum((points - points.mean(axis=0)) ** 2, axis=1))))


# t-SNE and UMAP place points by neighbourhoods; the size of their layout depends on the number of
# points and on how far the optimiser got, not on the codes, so it is shown at a fixed spread.
UNIT_SPREAD_METHODS = ("tsne", "umap")


def displayed(method: str, embedding: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """What a scatter shows of `method`'s `embedding`, float32: PCA scores as they are (centred, in
    latent units); a t-SNE or UMAP layout centred at the origin with a spread of 1; then, given the
    `reference` shown for the same points before, rotated or reflected onto it (`align`)."""
    shown = np.asarray(embedding, dtype=np.float64)
    if method in UNIT_SPREAD_METHODS:
        size = spread(shown)
        shown = (shown - shown.mean(axis=0)) / (size if size > 0 else 1.0)
    if reference is not None and np.shape(reference) == shown.shape:
        return align(reference, shown)
    return shown.astype(np.float32)


def neighbour_preservation(high: np.ndarray, low: np.ndarray, k: int = 10) -> float:
    """Mean share of each point's k nearest neighbours in `high` that are also among its k
    nearest in `low` (the point itself excluded). 1.0: every neighbourhood kept."""
    from sklearn.neighbors import NearestNeighbors

    high, low = np.asarray(high), np.asarray(low)
    if len(high) != len(low) or len(high) < 2:
        raise ValueError(f"need the same points (at least 2) in both arrays, got {len(high)} and {len(low)}")
    k = min(k, len(high) - 1)
    high_neighbours = NearestNeighbors(n_neighbors=k).fit(high).kneighbors(return_distance=False)
    low_neighbours = NearestNeighbors(n_neighbors=k).fit(low).kneighbors(return_distance=False)
    # Each row holds k distinct indices per side, so equal neighbours in the sorted union are shared.
    both = np.sort(np.concatenate([high_neighbours, low_neighbours], axis=1), axis=1)
    shared = np.count_nonzero(both[:, 1:] == both[:, :-1], axis=1)
    return float(shared.mean() / k)


# ---------------------------------------------------------------------------------------------
# background jobs


@dataclass(frozen=True)
class ProjectionSnapshot:
    """What a reader may know about a job at one moment. Never mutated after it is published."""

    progress: float = 0.0
    preview: np.ndarray | None = None  # latest partial embedding, aligned to the reference if any
    result: np.ndarray | None = None
    error: str | None = None
    done: bool = False
    cancelled: bool = False
    finished_at: float | None = None  # time.perf_counter() when done


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)  # snapshots are shared between threads
    return array


class ProjectionJob:
    """`project` in a daemon thread. Never touches any UI: readers poll the properties.

    The preview and the result are what a scatter shows (`displayed`): with a `reference` (the
    previous epoch's, for the same points) they are turned to line up with it. Latents of
    dimension 2 are shown as they are: their axes are the latent axes.
    """

    def __init__(self, latents: np.ndarray, method: str, *, seed: int = 0, reference: np.ndarray | None = None):
        self.method = method
        self.seed = seed
        self._latents = latents
        self._reference = None if reference is None else np.asarray(reference, dtype=np.float32)
        self._keeps_latent_axes = np.ndim(latents) == 2 and np.shape(latents)[1] == 2
        self._stop_requested = threading.Event()
        self._lock = threading.Lock()
        self._snapshot = ProjectionSnapshot()
        self._thread: threading.Thread | None = None
        self._started_at: float | None = None

    def start(self) -> ProjectionJob:
        with self._lock:
            if self._thread is None:
                self._started_at = time.perf_counter()
                self._thread = threading.Thread(target=self._run, name=f"projection-{self.method}", daemon=True)
                self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the projection to stop; it ends with `done` and `cancelled` true, no result."""
        self._stop_requested.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until done or `timeout` seconds; returns `done`."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.done

    @property
    def snapshot(self) -> ProjectionSnapshot:
        return self._snapshot

    @property
    def progress(self) -> float:
        return self._snapshot.progress

    @property
    def preview(self) -> np.ndarray | None:
        return self._snapshot.preview

    @property
    def result(self) -> np.ndarray | None:
        return self._snapshot.result

    @property
    def error(self) -> str | None:
        return self._snapshot.error

    @property
    def done(self) -> bool:
        return self._snapshot.done

    @property
    def cancelled(self) -> bool:
        return self._snapshot.cancelled

    @property
    def elapsed_s(self) -> float:
        """Seconds since start, frozen once done."""
        if self._started_at is None:
            return 0.0
        end = self._snapshot.finished_at or time.perf_counter()
        return end - self._started_at

    def _run(self) -> None:
        try:
            embedding = project(
                self._latents,
                self.method,
                seed=self.seed,
                progress=self._on_progress,
                should_stop=self._stop_requested.is_set,
            )
        except ProjectionCancelled:
            self._finish(cancelled=True)
        except Exception as error:
            self._finish(error=_describe(error))
        else:
            self._finish(result=self._aligned(embedding))
        finally:
            self._latents = None  # the caller's array may be large; the job no longer needs it

    def _on_progress(self, fraction: float, embedding: np.ndarray | None) -> None:
        with self._lock:
            current = self._snapshot
            preview = current.preview if embedding is None else self._aligned(embedding)
            self._snapshot = replace(current, progress=max(current.progress, min(fraction, 1.0)), preview=preview)

    def _finish(self, *, result: np.ndarray | None = None, error: str | None = None, cancelled: bool = False) -> None:
        with self._lock:
            current = self._snapshot
            self._snapshot = ProjectionSnapshot(
                progress=1.0 if result is not None else current.progress,
                preview=result if result is not None else current.preview,
                result=result,
                error=error,
                done=True,
                cancelled=cancelled,
                finished_at=time.perf_counter(),
            )

    def _aligned(self, embedding: np.ndarray) -> np.ndarray:
        if self._keeps_latent_axes:
            return _read_only(np.array(embedding, dtype=np.float32))
        return _read_only(displayed(self.method, embedding, self._reference))


def _describe(error: Exception) -> str:
    if isinstance(error, ProjectionInputError):
        return str(error)
    log.exception("projection failed")
    return f"{type(error).__name__}: {error}"
