"""Thread counts (vae_core/threads.py): a run's own count wins, then the environment's override, then the
load: one core free, one thread; more, a timing of the run's step, remembered in the user cache with the
load it was taken under and read through the safe reader. The count applies to the thread that trains
(vae_core/own_threads.py) and is kept with the run."""

import json
import logging
import os
import threading
import time

import pytest
import torch

from vae_core import threads
from vae_core.config import TrainConfig
from vae_core.jobs import TrainingJob
from vae_core.own_threads import on_a_thread_of_its_own, use_threads
from vae_core.threads import (
    BLOCK_STEPS,
    FILE_NAME,
    MAX_FILE_BYTES,
    MAX_ROUNDS,
    MIN_ROUNDS,
    THREADS_ENV,
    busy_elsewhere,
    machine_key,
    remembered,
    run_threads,
    thread_override,
    time_counts,
    timed_before,
)

CPU = torch.device("cpu")
SMALL = dict(data="digits", hidden=(16,), latent_dim=2, epochs=1, device="cpu")
IDLE_TIMING = {1: 0.0047, 2: 0.0035}  # an idle 2-core machine: two threads win
BUSY_TIMING = {1: 0.0061, 2: 0.0090}  # the same step timed while other programs loaded it


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """An empty user cache of its own, no override, and a machine of two cores."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})


def timings_file(tmp_path):
    return tmp_path / "vae_studio" / FILE_NAME


class Machine:
    """A load (cores busy elsewhere) and what a timing of a step finds under it, for `run_threads`."""

    def __init__(self, monkeypatch, busy: float, timing: dict[int, float]):
        self.busy, self.timing, self.timed = busy, timing, 0
        monkeypatch.setattr(threads, "busy_elsewhere", lambda: self.busy)
        monkeypatch.setattr(threads, "_probe_step", lambda config, dataset, device: None)
        monkeypatch.setattr(threads, "time_counts", self.time_counts)

    def time_counts(self, step, counts):
        assert tuple(counts) == tuple(self.timing)
        self.timed += 1
        return dict(self.timing)


@pytest.mark.parametrize(
    "value, expected", [("", None), ("3", 3), (" 2 ", 2), ("0", 1), ("-4", 1), ("many", None), ("1e9", None)]
)
def test_the_override_is_a_whole_number_or_ignored(monkeypatch, value, expected):
    monkeypatch.setenv(THREADS_ENV, value)
    assert thread_override() == expected


def test_a_runs_own_count_wins_then_the_override_and_gpus_are_left_alone(digits, monkeypatch):
    machine = Machine(monkeypatch, 0.0, IDLE_TIMING)
    monkeypatch.setenv(THREADS_ENV, "3")
    assert run_threads(TrainConfig(threads=2, **SMALL), digits, CPU) == (2, "the run's own count")
    assert run_threads(TrainConfig(**SMALL), digits, CPU) == (3, f"set by {THREADS_ENV}")
    assert run_threads(TrainConfig(**SMALL), digits, torch.device("cuda")) == (None, "")
    assert machine.timed == 0


def test_on_a_busy_machine_a_run_takes_one_thread_without_timing(digits, monkeypatch):
    machine = Machine(monkeypatch, 1.9, IDLE_TIMING)  # e.g. two programs spinning on the two cores
    assert run_threads(TrainConfig(**SMALL), digits, CPU) == (1, "1.9 of 2 cores busy elsewhere")
    machine.busy = 2.3  # a short reading, in whole ticks, can exceed the cores
    assert run_threads(TrainConfig(**SMALL), digits, CPU) == (1, "2.0 of 2 cores busy elsewhere")
    machine.busy = 0.6  # more than half a core busy: one core free
    assert run_threads(TrainConfig(**SMALL), digits, CPU) == (1, "0.6 of 2 cores busy elsewhere")
    assert machine.timed == 0


def test_with_free_cores_the_step_is_timed_once_then_remembered_for_that_load(digits, monkeypatch, tmp_path):
    machine = Machine(monkeypatch, 0.1, IDLE_TIMING)
    timed = (2, "measured: 1 thread 4.7 ms, 2 threads 3.5 ms a step; 0.1 of 2 cores busy elsewhere")
    assert run_threads(TrainConfig(**SMALL), digits, CPU) == timed
    # Another seed, lr or β computes a step of the same cost; a load this close is the same load.
    machine.busy = 0.2
    assert run_threads(TrainConfig(seed=7, lr=0.01, beta=4.0, **SMALL), digits, CPU) == (
        2,
        "remembered: 1 thread 4.7 ms, 2 threads 3.5 ms a step; 0.2 of 2 cores busy elsewhere",
    )
    assert machine.timed == 1
    run_threads(TrainConfig(batch_size=64, **SMALL), digits, CPU)  # another kind of step
    assert machine.timed == 2
    stored = json.loads(timings_file(tmp_path).read_text())
    assert list(stored.values()) == [[0.1, 0.0047, 0.0035], [0.2, 0.0047, 0.0035]]
    assert all(machine_key() in kind for kind in stored)


def test_a_warm_up_reads_the_load_only_for_a_kind_of_step_never_timed_with_every_core_free(digits, monkeypatch):
    machine = Machine(monkeypatch, 0.0, IDLE_TIMING)
    config = TrainConfig(**SMALL)
    assert not timed_before(config, digits, CPU)
    machine.busy = 1.2  # timed nothing: one core free
    run_threads(config, digits, CPU)
    assert not timed_before(config, digits, CPU)
    machine.busy = 0.3  # timed, with both cores free, at that load: known at any other load
    run_threads(config, digits, CPU)
    assert timed_before(config, digits, CPU) and not timed_before(TrainConfig(batch_size=64, **SMALL), digits, CPU)
    assert timed_before(TrainConfig(batch_size=64, **SMALL), digits, torch.device("cuda"))  # no CPU count to time
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert timed_before(TrainConfig(batch_size=64, **SMALL), digits, CPU)  # one core: one thread, no timing
    assert machine.timed == 1


def test_a_timing_taken_under_another_load_is_not_used(digits, monkeypatch, tmp_path):
    # Timed while other programs loaded the machine: one thread won. On the idle machine it is timed
    # again (two threads win there), and the new timing replaces it.
    machine = Machine(monkeypatch, 0.45, BUSY_TIMING)
    assert run_threads(TrainConfig(**SMALL), digits, CPU)[0] == 1
    machine.busy, machine.timing = 0.0, IDLE_TIMING
    assert run_threads(TrainConfig(**SMALL), digits, CPU) == (
        2,
        "measured: 1 thread 4.7 ms, 2 threads 3.5 ms a step; 0.0 of 2 cores busy elsewhere",
    )
    assert machine.timed == 2
    assert list(json.loads(timings_file(tmp_path).read_text()).values()) == [[0.0, 0.0047, 0.0035]]


def test_a_timing_from_another_cpu_or_torch_version_is_not_used(digits, monkeypatch):
    machine = Machine(monkeypatch, 0.0, IDLE_TIMING)
    run_threads(TrainConfig(**SMALL), digits, CPU)
    monkeypatch.setattr(threads, "machine_key", lambda: "AMD EPYC | AVX2 | torch 2.99.0")
    run_threads(TrainConfig(**SMALL), digits, CPU)
    assert machine.timed == 2


def test_one_thread_and_one_per_free_core_are_timed(digits, monkeypatch):
    machine = Machine(monkeypatch, 0.0, IDLE_TIMING)
    run_threads(TrainConfig(**SMALL), digits, CPU)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    machine.busy, machine.timing = 1.2, {1: 0.0047, 3: 0.0044}  # 3 of 4 free; within TIE of one thread
    assert run_threads(TrainConfig(**SMALL), digits, CPU) == (
        1,
        "measured: 1 thread 4.7 ms, 3 threads 4.4 ms a step; 1.2 of 4 cores busy elsewhere",
    )
    assert machine.timed == 2


def _run_with_a_timeout(work, seconds=30.0):
    """`work()` on a thread that must end within `seconds` (a FIFO would block a plain open forever)."""
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("value", work()), daemon=True)
    worker.start()
    worker.join(timeout=seconds)
    assert not worker.is_alive(), "reading the timings file blocked"
    return outcome["value"]


BAD_FILES = {
    "nested": ("[" * 200_000 + "]" * 200_000, "400,000 bytes, more than the limit of 65,536"),
    "nested, small": ("[" * 20_000 + "]" * 20_000, "JSON nested more than 32 deep"),
    "huge number": ('{"k": [0.0, 1' + "0" * 5000 + ", 0.1]}", "not valid JSON"),
    "NaN": ('{"k": [NaN, 0.1, 0.1]}', "not valid JSON"),
    "too large": ("[" + "0.0, " * (MAX_FILE_BYTES // 5) + "0.0]", "65,540 bytes, more than the limit of 65,536"),
    "not JSON": ("thread counts", "not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_malformed_file_is_ignored_logged_once_and_replaced(digits, monkeypatch, tmp_path, caplog, name):
    content, reason = BAD_FILES[name]
    timings_file(tmp_path).parent.mkdir(parents=True)
    timings_file(tmp_path).write_text(content)
    machine = Machine(monkeypatch, 0.0, IDLE_TIMING)
    with caplog.at_level(logging.WARNING, logger="vae_core.threads"):
        assert run_threads(TrainConfig(**SMALL), digits, CPU)[0] == 2
    assert [record.getMessage() for record in caplog.records] == [f"thread timings ignored: {FILE_NAME}: " + reason]
    assert machine.timed == 1 and list(json.loads(timings_file(tmp_path).read_text()).values()) == [
        [0.0, 0.0047, 0.0035]
    ]


def test_a_fifo_in_place_of_the_file_never_blocks_and_is_replaced(digits, monkeypatch, tmp_path, caplog):
    timings_file(tmp_path).parent.mkdir(parents=True)
    os.mkfifo(timings_file(tmp_path))
    Machine(monkeypatch, 0.0, IDLE_TIMING)
    with caplog.at_level(logging.WARNING, logger="vae_core.threads"):
        assert _run_with_a_timeout(remembered) == {}
        assert _run_with_a_timeout(lambda: run_threads(TrainConfig(**SMALL), digits, CPU))[0] == 2
    assert caplog.records[0].getMessage() == f"thread timings ignored: {FILE_NAME}: not a regular file"
    assert timings_file(tmp_path).is_file()  # replaced atomically by a regular file


@pytest.mark.parametrize(
    "entry",
    [
        [0.0, 0.0047],  # too short
        [0.0, 0.0047, 0.0035, 1.0],  # too long
        {"busy": 0.0, "seconds": [0.0047, 0.0035]},  # not a list
        ["0.0", 0.0047, 0.0035],  # a string
        [0, 0.0047, 0.0035],  # a whole number where a float is written
        [True, 0.0047, 0.0035],
        [None, 0.0047, 0.0035],
        [0.0, -0.0047, 0.0035],  # a negative time
        [0.0, 0.0047, 1e300],  # a step of more than a minute
        [-1.0, 0.0047, 0.0035],  # a negative load
        [1e300, 0.0047, 0.0035],
        [0.0, 1e999, 0.0035],  # parsed as infinity
    ],
)
def test_an_entry_of_another_form_is_ignored_and_replaced(digits, monkeypatch, tmp_path, entry):
    machine = Machine(monkeypatch, 0.0, IDLE_TIMING)
    run_threads(TrainConfig(**SMALL), digits, CPU)
    (kind,) = json.loads(timings_file(tmp_path).read_text())
    timings_file(tmp_path).write_text(json.dumps({kind: entry}).replace("Infinity", "1e999"))
    assert remembered() == {}
    assert run_threads(TrainConfig(**SMALL), digits, CPU)[1].startswith("measured: ")
    assert machine.timed == 2 and json.loads(timings_file(tmp_path).read_text()) == {kind: [0.0, 0.0047, 0.0035]}


@pytest.mark.parametrize("content", ["[]", '"text"', "3", "null", '{"k": 1}'])
def test_a_file_of_another_shape_holds_no_timing(tmp_path, content):
    timings_file(tmp_path).parent.mkdir(parents=True)
    timings_file(tmp_path).write_text(content)
    assert remembered() == {}


def test_a_cache_that_cannot_be_written_is_skipped(digits, monkeypatch, tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # its vae_studio folder cannot be made
    machine = Machine(monkeypatch, 0.0, IDLE_TIMING)
    assert run_threads(TrainConfig(**SMALL), digits, CPU)[0] == 2
    assert run_threads(TrainConfig(**SMALL), digits, CPU)[0] == 2
    assert machine.timed == 2


def test_the_load_is_read_from_the_cpus_else_the_load_average(monkeypatch):
    assert 0.0 <= busy_elsewhere(0.05) < 100  # the cores this process may use, give or take a tick
    monkeypatch.setattr(threads, "_busy_seconds", lambda: (_ for _ in ()).throw(OSError("no /proc")))
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 0.5))
    assert busy_elsewhere(0.05) == 1.5


def test_this_process_own_work_is_not_load(monkeypatch):
    """A process busy on its own threads while the load is read does not count itself."""
    monkeypatch.setattr(threads, "_busy_seconds", lambda: time.process_time())  # only this process works
    spinner = threading.Thread(target=lambda: [sum(range(1000)) for _ in range(20_000)])
    spinner.start()
    assert busy_elsewhere(0.05) == pytest.approx(0.0, abs=0.05)
    spinner.join()


class FakeStep:
    """A step that takes `seconds[count]` at the calling thread's count, and counts its calls."""

    def __init__(self, seconds):
        self.seconds, self.calls = seconds, []

    def __call__(self):
        count = torch.get_num_threads()
        self.calls.append(count)
        time.sleep(self.seconds[count])


def test_each_count_is_timed_alike_in_alternating_blocks():
    step = FakeStep({1: 0.004, 2: 0.002})
    medians = on_a_thread_of_its_own(lambda: time_counts(step, (1, 2), budget_s=0.05))
    assert medians[1] == pytest.approx(0.004, abs=0.0015) and medians[2] == pytest.approx(0.002, abs=0.0015)
    block = BLOCK_STEPS + 1  # a block's first step, where the team changes size, is not timed
    assert step.calls.count(1) == step.calls.count(2) >= block * (1 + MIN_ROUNDS)
    # An untimed round, then rounds in alternating order.
    assert step.calls[: 6 * block] == [2] * block + [1] * block + [1] * block + [2] * block + [2] * block + [1] * block


def test_rounds_stop_at_the_limit_even_within_the_budget():
    step = FakeStep({1: 0.0, 2: 0.0})
    on_a_thread_of_its_own(lambda: time_counts(step, (1, 2), budget_s=10.0))
    assert len(step.calls) == 2 * (BLOCK_STEPS + 1) * (1 + MAX_ROUNDS)


def test_a_real_timing_times_the_runs_step_without_touching_the_run(digits, monkeypatch):
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 0.0)
    count, how = on_a_thread_of_its_own(lambda: run_threads(TrainConfig(batch_size=32, **SMALL), digits, CPU))
    assert count in (1, 2) and how.startswith("measured: 1 thread ") and how.count(" ms") == 2
    # A run of two steps an epoch is timed across epochs (a new throwaway trainer for each).
    count, how = on_a_thread_of_its_own(lambda: run_threads(TrainConfig(batch_size=1024, **SMALL), digits, CPU))
    assert count in (1, 2) and how.startswith("measured: 1 thread ")


def test_a_count_applies_to_the_calling_thread_and_gpus_are_left_alone():
    def work():
        seen = {"description": use_threads(1, CPU), "count": torch.get_num_threads()}
        seen["gpu"] = use_threads(3, torch.device("cuda"))
        seen["after_gpu"], seen["kept"] = torch.get_num_threads(), use_threads(None, CPU)
        return seen

    assert on_a_thread_of_its_own(work) == {
        "description": "1 CPU thread",
        "count": 1,
        "gpu": "",
        "after_gpu": 1,
        "kept": "1 CPU thread",
    }


def test_the_job_trains_with_its_count_on_its_own_thread_and_keeps_it(digits, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "1")
    before = torch.get_num_threads()
    job = TrainingJob(TrainConfig(**SMALL), digits).start()
    assert job.wait(60) and job.status == "finished"
    snap = job.snapshot()
    assert snap.threads == f"1 CPU thread (set by {THREADS_ENV})"
    assert snap.config["threads"] == job.config.threads == 1
    assert torch.get_num_threads() == before  # the caller's own count is untouched


def test_work_on_a_thread_of_its_own_returns_its_result_or_raises_its_error():
    caller = threading.get_ident()
    assert on_a_thread_of_its_own(threading.get_ident) != caller
    with pytest.raises(ValueError, match="bad input"):
        on_a_thread_of_its_own(lambda: (_ for _ in ()).throw(ValueError("bad input")))


def test_work_at_any_priority_is_counted_busy(monkeypatch):
    """Browsers or jobs at nice 19 count as busy cores: they give way to a run, yet a timeslice of theirs
    still stalls a team of threads at its barrier, and a timing taken beside them must not pass for an
    idle machine's (a timing so taken once chose 1 thread on the idle machine: 0.66x the reference)."""
    import io
    import os

    cpus = sorted(os.sched_getaffinity(0))
    lines = "cpu 0 0 0 0 0 0 0 0\n" + "".join(f"cpu{n} 100 5000 30 900 7 1 2 3 0 0\n" for n in cpus)
    monkeypatch.setattr(threads, "open", lambda *args, **kwargs: io.StringIO(lines), raising=False)
    assert threads._busy_seconds() == len(cpus) * (100 + 5000 + 30 + 1 + 2 + 3) / os.sysconf("SC_CLK_TCK")


def test_a_timing_taken_by_an_older_method_is_taken_again(digits, monkeypatch, tmp_path):
    """Timings taken before the run process stopped timing beside an idle OpenMP team (TIMING_METHOD 1)
    made two threads look slow: the same kind of step under method 1 is timed again, not reused."""
    machine = Machine(monkeypatch, 0.0, IDLE_TIMING)
    run_threads(TrainConfig(**SMALL), digits, CPU)
    (kind,) = json.loads(timings_file(tmp_path).read_text())
    assert kind.endswith(f", {threads.TIMING_METHOD})")
    older = kind.removesuffix(f", {threads.TIMING_METHOD})") + ", 1)"
    timings_file(tmp_path).write_text(json.dumps({older: [0.0, 0.0047, 0.0090]}))  # two threads "slower"
    count, why = run_threads(TrainConfig(**SMALL), digits, CPU)
    assert (count, why.split(":")[0]) == (2, "measured") and machine.timed == 2
