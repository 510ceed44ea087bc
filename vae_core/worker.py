"""A run process, `python -m vae_core.worker FOLDER [--uploads DIR]`: trains the queued runs its server names.

Started by a server (executors.py), it trains the runs of FOLDER's durable queue (run_queue.py) that
the server names.

It pays the start-up costs once (torch, the engine, the default dataset, the first optimiser), telling
the server when it is warm, and then waits for the server's "train <run id>";
after a run it waits for the next one, so a server keeps one warm process per device. For each run it
takes the device's lock, claims the run from the queue, trains it with the one job (jobs.py, running
loop.py), which writes the run's checkpoint every epoch and its progress record a few times a second,
and sends the server each new snapshot and the weights of each epoch end over its stdout. Commands
(pause, resume, stop, lr, beta, rename) arrive on its stdin, and so do the server's checks of new
runs (`check_new_run`), answered from its start, while it warms up, as soon as it has torch and the data.

When the server is gone (its end of the pipe closes: a crash, a kill, a restart), the process goes
on: it finishes the run in progress, then trains the rest of the folder's queue in order, then exits.
A restarted server finds those runs in the store, live, as it finds a run of the CLI.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from pathlib import Path

from .channel import Channel, ChannelClosed
from .errors import VAEStudioError
from .latest_worker import LatestWorker
from .run_commands import CommandFile
from .run_queue import DeviceLock, QueuedRun, claim, queued_path, read_queued, recover_interrupted, release, waiting
from .safe_files import UnreadableFile

READY_LOG_PREFIX = "VAE Studio run process: warm after"
COMMAND_POLL_S = 0.5  # a stat of the command file this often: nothing a training step would notice


class SnapshotSender:
    """Sends the newest snapshot (and the weights, when they changed) on a thread of its own: the
    training thread only hands a snapshot over, so a slow reader never holds up a step, and a snapshot
    superseded before it was sent is skipped."""

    def __init__(self, channel: Channel, server_gone: threading.Event):
        self.channel, self.server_gone = channel, server_gone
        self.job = None
        self._sent_weights = None
        self._worker = LatestWorker(self._send, name="snapshot-sender")

    def publish(self, snapshot) -> None:
        self._worker.submit(snapshot)

    def close(self) -> None:
        """Send what is left, then stop."""
        self._worker.close()

    def _send(self, snapshot) -> None:
        if self.server_gone.is_set():
            return
        try:
            self.channel.send("snapshot", snapshot)
            self._send_weights_if_new(snapshot.run_id)
        except ChannelClosed:
            self.server_gone.set()

    def _send_weights_if_new(self, run_id: str) -> None:
        weights = self.job.kept_weights() if self.job is not None else None
        if weights is not None and weights is not self._sent_weights:
            epoch, state = weights
            self.channel.send("weights", run_id, epoch, {key: value.numpy() for key, value in state.items()})
            self._sent_weights = weights


class Worker:
    def __init__(self, folder: Path, channel: Channel, upload_root: Path | None = None):
        self.folder, self.channel, self.upload_root = folder, channel, upload_root
        self.requests: queue.Queue = queue.Queue()
        self.server_gone = threading.Event()
        self.job = None
        self.early_stops: set[str] = set()  # runs asked to stop before their job was built

    # -- the server's messages -----------------------------------------------------------------
    def listen(self) -> None:
        while True:
            try:
                kind, *args = self.channel.receive()
            except ChannelClosed:
                self.server_gone.set()
                self.requests.put(None)
                return
            if kind == "train":
                self.requests.put(args[0])
            elif kind == "check":
                threading.Thread(target=self._check, args=args, name="check", daemon=True).start()
            elif kind == "exit":
                self.requests.put(None)
            else:
                self._command(kind, *args)

    def _command(self, kind: str, run_id: str, *value) -> None:
        job = self.job
        if job is None or job.run_id != run_id:
            if kind == "stop":  # pressed while its data loads: obeyed as soon as the job exists
                self.early_stops.add(run_id)
            return
        try:
            if kind in ("pause", "resume", "stop"):
                getattr(job, kind)()
            elif kind == "lr":
                job.set_lr(value[0])
            elif kind == "beta":
                job.set_beta(value[0])
            elif kind == "rename":
                job.rename(value[0])
        except VAEStudioError:
            pass  # the server checked it first; a stale command is dropped

    def _check(self, request_id: int, config, allowed: list[str]) -> None:
        try:
            device, warnings = check_new_run(config, allowed)
            self.tell("checked", request_id, ("ok", device, warnings))
        except VAEStudioError as error:
            self.tell("checked", request_id, ("refused", type(error).__name__, str(error)))
        except Exception as error:  # a fault of the check itself: said, not left for the server to wait on
            self.tell("checked", request_id, ("refused", "TrainingError", f"the run could not be checked: {error!r}"))

    def tell(self, *message) -> None:
        if not self.server_gone.is_set():
            try:
                self.channel.send(*message)
            except ChannelClosed:
                self.server_gone.set()

    # -- training --------------------------------------------------------------------------------
    def serve(self) -> int:
        """Train the runs the server names, one after another (its messages are read by `listen`,
        which runs from the process's start: a check is answered while it warms up)."""
        while True:
            run_id = self.requests.get()
            if run_id is None:
                break
            self.train(run_id)
        if self.server_gone.is_set():
            self.train_the_rest_of_the_queue()
        return 0

    def train_the_rest_of_the_queue(self) -> None:
        """The server is gone: the folder's queue still trains, in order, one run after another."""
        while True:
            recover_interrupted(self.folder)
            runs = waiting(self.folder)
            if not runs or not self.train(runs[0].run_id):
                return  # nothing left, or another process trains on the device (and will go on)

    def train(self, run_id: str) -> bool:
        """Train queued run `run_id` to its end; False when its device is busy with another process."""
        try:
            device = read_queued(queued_path(self.folder, run_id)).device
        except (UnreadableFile, VAEStudioError):
            self.tell("not started", run_id, "gone")
            return True
        lock = DeviceLock(self.folder, device)
        if not lock.acquire():
            self.tell("not started", run_id, "busy")
            return False
        try:
            run = claim(self.folder, run_id)
            if run is None:
                self.tell("not started", run_id, "gone")
                return True
            sender = SnapshotSender(self.channel, self.server_gone)
            try:
                job = self._job(run, sender)
            except VAEStudioError as error:
                release(self.folder, run_id)
                sender.close()
                self.tell("not started", run_id, f"failed: {error}")
                return True
            sender.job = self.job = job
            self.tell("started", run_id, os.getpid())
            commands = CommandFile(self.folder, run_id)  # from a server that did not start this process
            job.start()
            if run_id in self.early_stops:
                self.early_stops.discard(run_id)
                job.stop()
            while not job.wait(COMMAND_POLL_S):
                for name, value in commands.new_commands():
                    self._command(name, run_id, *([] if value is None else [value]))
            commands.remove()
            sender.close()
            self.job = None
            release(self.folder, run_id)
            self.tell("ended", run_id, job.status)
            return True
        finally:
            lock.release()

    def _job(self, run: QueuedRun, sender: SnapshotSender):
        return training_job(self.folder, run, self.upload_root, sender.publish)


def check_new_run(config, allowed: list[str]) -> tuple[str, tuple[str, ...]]:
    """What a server asks its run process before it queues a run (registry.JobRegistry.submit), so that
    a fresh server need not import torch and load the data itself to start its first run: the data
    `config` names is opened only if it is a built-in dataset or lies in `allowed` (the person's own
    uploads), loaded (into the engine's cache, where the run finds it) and checked with the model
    against every limit (trainer.check_trainable). Returns the device the run trains on and the
    data's warnings; raises the VAEStudioError that says what is wrong. On a thread of its own, for
    the reason `training_job` gives."""
    from .data import load_run_data
    from .device import resolve_device
    from .own_threads import on_a_thread_of_its_own
    from .trainer import check_trainable

    def check() -> tuple[str, tuple[str, ...]]:
        dataset = load_run_data(config, allowed)
        check_trainable(config, dataset)
        return str(resolve_device(config.device)), tuple(dataset.warnings)

    return on_a_thread_of_its_own(check, name="check-run")


def training_job(folder: Path, run: QueuedRun, upload_root: Path | None, on_publish=None):
    """The job of a claimed run: on its data, from its own checkpoint in the folder when it has one
    (a resume, or a run whose process died), else from scratch. Also what a SLURM job trains
    (slurm_executor.py).

    Built on a thread that ends with the building: loading the data and checking it run parallel
    tensor operations, and the thread that runs them keeps an OpenMP team for as long as it lives. Built
    on this process's main thread, that idle team would sit beside the job's own for the whole run, and
    with more OpenMP threads than cores libgomp cuts every spin-wait short: the job's workers then sleep
    and wake between every small operation (a fresh 2-core process: 57,000 context switches an epoch
    instead of a few, and the epoch 2.5x as long; tests/unit/test_run_process_threads.py)."""
    from .own_threads import on_a_thread_of_its_own

    return on_a_thread_of_its_own(lambda: _built_job(folder, run, upload_root, on_publish), name="build-job")


def _built_job(folder: Path, run: QueuedRun, upload_root: Path | None, on_publish):
    from .checkpoint import check_resumable, load_checkpoint
    from .data import load_run_data
    from .jobs import TrainingJob
    from .runs import checkpoint_path

    config = run.config
    dataset = load_run_data(config, [upload_root] if upload_root else [])
    state, saved = None, checkpoint_path(folder, run.run_id)
    if saved.exists():
        previous = load_checkpoint(saved)
        check_resumable(previous, dataset)
        state = previous.state
        # Its numbers depend on its thread count: the resumed part keeps the one it trained with.
        config = config.replace(threads=previous.config.threads or config.threads)
    return TrainingJob(
        config,
        dataset,
        run_id=run.run_id,
        name=run.name,
        state=state,
        checkpoint_dir=folder,
        owner=run.owner,
        on_publish=on_publish,
        write_progress=True,
    )


def warm_up() -> None:
    """What every run needs, once per process: torch, the engine, the default dataset (in the
    engine's cache, loaded beside the first optimiser, whose building imports torch._dynamo, ~1 s),
    and a timing of the default run's CPU thread counts where none is remembered (threads.py). All
    of it on threads that end with it, so no idle OpenMP team stays behind beside the runs' (see
    `training_job`)."""
    from .own_threads import begin_on_a_thread_of_its_own, on_a_thread_of_its_own

    def prepare() -> None:
        import torch

        from .config import TrainConfig
        from .data import DEFAULT_DATASET, load_dataset
        from .device import resolve_device
        from .threads import run_threads, timed_before
        from .trainer import make_adam

        loaded = begin_on_a_thread_of_its_own(lambda: load_dataset(DEFAULT_DATASET), name="warm-up-data")
        make_adam(torch.nn.Linear(1, 1), 1e-3)
        try:
            dataset = loaded()
            config = TrainConfig()
            device = resolve_device(config.device)
            if not timed_before(config, dataset, device):  # else "ready" 0.1 s sooner: the run reads the load itself
                run_threads(config, dataset, device)
        except VAEStudioError:
            return  # the default data or run is not to be had here (limits below its model): a run that needs it says why

    on_a_thread_of_its_own(prepare, name="warm-up")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m vae_core.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--uploads", type=Path, default=None, help="the server's folder of uploaded data")
    args = parser.parse_args(argv)
    # Messages go out on the original stdout; anything printed lands in stderr (the server's log file).
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    worker = Worker(args.folder, Channel(sys.stdin.buffer, out), args.uploads)
    threading.Thread(target=worker.listen, name="commands", daemon=True).start()
    began = time.perf_counter()
    import torch  # noqa: F401

    warm_up()
    print(f"{READY_LOG_PREFIX} {time.perf_counter() - began:.2f} s", file=sys.stderr, flush=True)
    worker.tell("ready", os.getpid())
    return worker.serve()  # with no server left by then, it trains what the folder's queue holds


if __name__ == "__main__":
    sys.exit(main())
