"""What the bench scripts share: the row format, the data, running the reference loop's process, timing,
the machine.

Timing on a shared machine: other processes come and go, so a bench never times A then B. It
alternates them round by round (`interleaved`), and compares medians or per-round ratios.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/bench_x.py` puts bench/, not the project, on the path
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from vae_core.data import DEBIAN_FASHION_MNIST_DIR, ImageDataset, load_dataset  # noqa: E402
from vae_core.own_threads import on_a_thread_of_its_own  # noqa: E402

FULL_DATASET = "fashion-mnist"
FALLBACK_DATASET = "mnist-sample"
GiB = 1 << 30
MiB = 1 << 20


# -- rows --------------------------------------------------------------------------------------------
def row(figure: str, target: str, measured: str, ok: bool | None) -> dict:
    """One line of RESULTS.md. ok None: a figure reported for information, with no target."""
    return {"figure": figure, "target": target, "measured": measured, "ok": ok}


def skipped_row(figure: str, why: str) -> dict:
    return row(figure, "-", f"skipped: {why}", None)


def print_rows(rows: list[dict]) -> None:
    """What a bench run alone prints: one JSON object per row."""
    for item in rows:
        print(json.dumps(item))


# -- data --------------------------------------------------------------------------------------------
def ensure_fashion_mnist() -> bool:
    """Make full Fashion-MNIST available: Debian's dataset-fashion-mnist package when it is missing.
    Returns whether it is there now. Never fails the bench: without it the benches use mnist-sample."""
    if Path(DEBIAN_FASHION_MNIST_DIR).is_dir():
        return True
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        return False
    command = [apt_get] if os.geteuid() == 0 else ["sudo", "-n", apt_get]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for arguments in (["update", "-qq"], ["install", "-y", "-qq", "dataset-fashion-mnist"]):
        subprocess.run(
            command + arguments, env=environment, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    return Path(DEBIAN_FASHION_MNIST_DIR).is_dir()


def bench_dataset() -> ImageDataset:
    """Full Fashion-MNIST (60,000 + 10,000) when it can be had, else the bundled mnist-sample."""
    return load_dataset(FULL_DATASET if ensure_fashion_mnist() else FALLBACK_DATASET)


# -- the reference loop ---------------------------------------------------------------------------------
REFERENCE_SCRIPT = ROOT / "bench" / "reference_loop.py"


@contextmanager
def reference_data(dataset: ImageDataset) -> Iterator[Path]:
    """The dataset's images in a temporary .pt file, for the reference loop's own process to load."""
    with tempfile.TemporaryDirectory(prefix="vae-bench-") as folder:
        path = Path(folder) / "data.pt"
        torch.save({"train_x": dataset.train_x.contiguous(), "test_x": dataset.test_x.contiguous()}, path)
        yield path


def reference_epoch(data_path: Path, batch_size: int, threads: int) -> Timing:
    """One epoch + test pass of bench/reference_loop.py, in a process of its own that never imports
    vae_core (so none of our settings reach it), on `threads` threads. Its start-up and data loading
    are outside the timer."""
    result = run_json(
        [
            sys.executable,
            str(REFERENCE_SCRIPT),
            str(data_path),
            "--batch-size",
            str(batch_size),
            "--threads",
            str(threads),
        ]
    )
    if result["vae_core_loaded"] or result["threads"] != threads:
        raise RuntimeError(f"the reference process did not run as asked: {result}")
    return Timing(result["wall"], result["cpu"])


def use_pytorch_default_threads() -> int:
    """A thread per core on the calling thread: what a plain script gets (the CLI and the app's job
    choose their own count: vae_core/threads.py)."""
    torch.set_num_threads(os.cpu_count() or 1)
    return torch.get_num_threads()


def keep_this_thread_serial() -> None:
    """For a bench's own thread, which only loads data and hands work to candidates on threads of
    their own: no parallel operation here, so no idle OpenMP team slows theirs (`in_fresh_thread`)."""
    torch.set_num_threads(1)


# -- timing ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    wall: float  # seconds on the clock: what a user waits, and what load from other processes inflates
    cpu: float  # CPU seconds of this process, all threads: with one busy thread, what the wall time
    #            would be on an idle core, so a steadier comparison on a shared machine


class Stopwatch:
    """`with Stopwatch() as watch: ...; watch.timing`."""

    def __enter__(self) -> Stopwatch:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.timing = Timing(time.perf_counter() - self._wall, time.process_time() - self._cpu)


Measurement = TypeVar("Measurement")


def in_fresh_thread(candidate: Callable[[], Measurement]) -> Measurement:
    """`candidate()` on a new thread that ends with it, as each run of a Streamlit script does.

    Why: a thread that has run a parallel operation keeps an idle OpenMP team until it ends, and on
    2 cores one idle team beside a training thread's makes libgomp throttle its spin-waiting and
    halves that thread's speed (vae_core/own_threads.py). Run on one long-lived thread, whichever
    candidate went first would slow down the others."""
    return on_a_thread_of_its_own(candidate, name="bench-candidate")


def interleaved(
    candidates: dict[Hashable, Callable[[], Measurement]],
    rounds: int,
    run: Callable[[Callable[[], Measurement]], Measurement] = in_fresh_thread,
) -> dict[Hashable, list[Measurement]]:
    """Run every candidate once per round, alternating the order between rounds, so a change in the
    machine's load hits all of them alike; each run on a fresh thread (`in_fresh_thread`), or as `run`
    runs it (a browser driven by Playwright's sync API must stay on its own thread). Each candidate
    returns what it measured, e.g. a Timing (setup outside its own stopwatch). Returns name -> the
    measurement of each round."""
    timings: dict[Hashable, list[Measurement]] = {name: [] for name in candidates}
    names = list(candidates)
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            started = time.perf_counter()
            timings[name].append(run(candidates[name]))
            print(
                f"    round {round_index + 1}/{rounds}, {name}: {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
                flush=True,
            )  # a long bench shows that it is moving
    return timings


def rounds_text(count: int) -> str:
    return f"{count} interleaved round{'s' if count != 1 else ''}"


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def paired_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of per-round ratios: a slow round (load from others) divides out."""
    return median([n / d for n, d in zip(numerators, denominators)])


def walls(timings: list[Timing]) -> list[float]:
    return [timing.wall for timing in timings]


def cpus(timings: list[Timing]) -> list[float]:
    return [timing.cpu for timing in timings]


# -- machine and memory -------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


VECTOR_FLAG_PREFIXES = ("avx", "fma", "amx")  # the x86 SIMD extensions PyTorch's CPU kernels dispatch on


def vector_extensions() -> str:
    """The CPU's AVX/AVX2/AVX-512/AMX flags from /proc/cpuinfo (e.g. "avx avx2 fma avx512f ..."), or
    what the platform cannot tell."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = [flag for flag in line.split(":", 1)[1].split() if flag.startswith(VECTOR_FLAG_PREFIXES)]
                has_avx512 = any(flag.startswith("avx512") for flag in flags)
                return " ".join(flags) + ("" if has_avx512 else " (no AVX-512)") if flags else "none"
    except OSError:
        pass
    return "unknown (no /proc/cpuinfo)"


def git_commit() -> str:
    """The commit measured, and whether the working tree differs from it (and where: our code or not)."""

    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "--short=12", "HEAD").strip()
        changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    ours = [path for path in changed if path.startswith(("vae_core/", "bench/"))]
    if not changed:
        return f"{commit} (clean tree)"
    return (
        f"{commit} (dirty tree: {len(changed)} changed file(s)"
        + (f", of them in vae_core/ or bench/: {', '.join(ours)}" if ours else ", none in vae_core/ or bench/")
        + ")"
    )


def machine_description() -> dict:
    return {
        "commit": git_commit(),
        "cpu": cpu_model(),
        "vector extensions": vector_extensions(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "load average (1, 5, 15 min)": load_average(),
    }


def peak_rss_bytes() -> int:
    """This process's peak resident set size: VmHWM on Linux, else getrusage (KiB on Linux, bytes on macOS)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def run_module_json(module: str, *arguments: str, timeout: float = 3600) -> dict:
    """Run `python -m <module> <arguments>` from the project root in a fresh process and return the
    JSON object it prints last (how a bench gets a number that must be a process's own)."""
    return run_json([sys.executable, "-m", module, *arguments], timeout)


def run_json(command: list[str], timeout: float = 3600) -> dict:
    """Run `command` from the project root and return the JSON object it prints last."""
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{shlex.join(command[1:])} failed ({completed.returncode}): {' | '.join(tail)}")
    return json.loads(lines[-1])
