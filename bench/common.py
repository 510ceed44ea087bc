"""What the bench scripts share: the row format, the data, the reference loop, timing, the machine.

Timing on a shared machine: other processes come and go, so a bench never times A then B. It
alternates them round by round (`interleaved`), and compares medians or per-round ratios.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, TypeVar

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/bench_x.py` puts bench/, not the project, on the path
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from vae_core.config import TrainConfig  # noqa: E402
from vae_core.data import DEBIAN_FASHION_MNIST_DIR, ImageDataset, load_dataset  # noqa: E402
from vae_core.device import resolve_device  # noqa: E402
from vae_core.models import build_model  # noqa: E402

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
        subprocess.run(command + arguments, env=environment, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Path(DEBIAN_FASHION_MNIST_DIR).is_dir()


def bench_dataset() -> ImageDataset:
    """Full Fashion-MNIST (60,000 + 10,000) when it can be had, else the bundled mnist-sample."""
    return load_dataset(FULL_DATASET if ensure_fashion_mnist() else FALLBACK_DATASET)


# -- the reference loop ---------------------------------------------------------------------------------
class ReferenceLoop:
    """The training loop of pytorch/examples' VAE (mnist/vae/main.py) with the data already in memory.

    Plain PyTorch throughout. Per epoch: shuffle,
    then per batch slice, forward, loss, zero_grad, backward, step and `loss.item()`; then a pass over
    the test set, as that script's test() does. The model and its initial weights are exactly the
    Trainer's for the same config (same builder, same seed), and the optimiser is plain Adam with the
    same lr. The loss is that script's loss_function (BCE summed over pixels + the closed-form KL)
    divided by the batch size, so that it is the same objective as ours; Adam is invariant to that
    constant factor anyway.
    """

    def __init__(self, config: TrainConfig, dataset: ImageDataset):
        self.device = resolve_device(config.device)
        self.batch_size = config.batch_size
        torch.manual_seed(config.seed)
        self.model = build_model(config, dataset.image_shape, dataset.num_classes).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.train_x = dataset.train_x.to(self.device)
        self.test_x = dataset.test_x.to(self.device)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        output = self.model(x)
        bce = F.binary_cross_entropy_with_logits(output.logits, x, reduction="sum")
        kld = -0.5 * torch.sum(1 + output.logvar - output.mu.pow(2) - output.logvar.exp())
        return (bce + kld) / x.shape[0]

    def train_step(self, x: torch.Tensor) -> float:
        self.optimizer.zero_grad()
        loss = self.loss(x)
        loss.backward()
        value = loss.item()  # a host sync every step, as in that script
        self.optimizer.step()
        return value

    def train_epoch(self) -> float:
        """One epoch; returns the mean training loss."""
        self.model.train()
        order = torch.randperm(self.train_x.shape[0], device=self.device)
        total = 0.0
        for start in range(0, len(order), self.batch_size):
            x = self.train_x[order[start:start + self.batch_size]]
            total += self.train_step(x) * x.shape[0]
        return total / len(order)

    @torch.no_grad()
    def test_epoch(self) -> float:
        """The mean test loss, in batches of the training batch size as in that script."""
        self.model.eval()
        total = 0.0
        for start in range(0, self.test_x.shape[0], self.batch_size):
            x = self.test_x[start:start + self.batch_size]
            total += self.loss(x).item() * x.shape[0]
        return total / self.test_x.shape[0]


def use_pytorch_default_threads() -> int:
    """A thread per core on the calling thread: what a plain script gets, so the reference loop runs
    as people run it. The Trainer sets its own count before each step (vae_core/threads.py)."""
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

    def __enter__(self) -> "Stopwatch":
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.timing = Timing(time.perf_counter() - self._wall, time.process_time() - self._cpu)


Measurement = TypeVar("Measurement")


def in_fresh_thread(candidate: Callable[[], Measurement]) -> Measurement:
    """`candidate()` on a new thread that ends with it, as each run of a Streamlit script does.

    Why: a thread that has run a parallel operation keeps an idle OpenMP team until it ends, and on
    2 cores one idle team beside a training thread's makes libgomp throttle its spin-waiting and
    halves that thread's speed (vae_core/threads.py). Run on one long-lived thread, whichever
    candidate went first would slow down the others."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = candidate()
        except BaseException as error:  # re-raised on the calling thread
            outcome["error"] = error

    worker = threading.Thread(target=run, name="bench-candidate")
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def interleaved(candidates: dict[Hashable, Callable[[], Measurement]], rounds: int) -> dict[Hashable, list[Measurement]]:
    """Run every candidate once per round, alternating the order between rounds, so a change in the
    machine's load hits all of them alike; each run on a fresh thread (`in_fresh_thread`). Each
    candidate returns what it measured, e.g. a Timing (setup outside its own stopwatch). Returns
    name -> the measurement of each round."""
    timings: dict[Hashable, list[Measurement]] = {name: [] for name in candidates}
    names = list(candidates)
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            timings[name].append(in_fresh_thread(candidates[name]))
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


def machine_description() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "load average (1, 5, 15 min)": load_average()}


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
    completed = subprocess.run([sys.executable, "-m", module, *arguments], cwd=ROOT, capture_output=True,
                               text=True, timeout=timeout)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{module} {' '.join(arguments)} failed ({completed.returncode}): {' | '.join(tail)}")
    return json.loads(lines[-1])
