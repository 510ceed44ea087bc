"""Thread counts: a run's own count wins, then the environment's override; the CLI keeps PyTorch's
default and the app times the run's own step on its candidate counts; the count is applied on the
thread that trains and kept with the run."""

import time

import pytest
import torch

from vae_core import thread_choice
from vae_core.config import TrainConfig
from vae_core.jobs import TrainingJob
from vae_core.thread_choice import BLOCK_STEPS, HOPELESS, MIN_ROUNDS, app_run_threads, fastest_thread_count
from vae_core.threads import THREADS_ENV, app_thread_candidates, on_a_thread_of_its_own, thread_override, use_threads

CPU = torch.device("cpu")
SMALL = dict(data="digits", hidden=(16,), latent_dim=2, epochs=1, device="cpu")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """No timing remembered by an earlier process (vae_core/thread_memory.py): each test times anew."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))


@pytest.mark.parametrize("value, expected", [("", None), ("3", 3), (" 2 ", 2), ("0", 1), ("-4", 1), ("many", None)])
def test_the_override_is_a_whole_number_or_ignored(monkeypatch, value, expected):
    monkeypatch.setenv(THREADS_ENV, value)
    assert thread_override() == expected


def test_the_app_chooses_between_all_cores_and_one_left_to_the_ui():
    assert [app_thread_candidates(cores) for cores in (1, 2, 4, 16)] == [(1,), (1, 2), (3, 4), (15, 16)]


class FakeStep:
    """A step that takes `seconds[count]` at the calling thread's count, and counts its calls."""

    def __init__(self, seconds):
        self.seconds, self.calls = seconds, []

    def __call__(self):
        count = torch.get_num_threads()
        self.calls.append(count)
        time.sleep(self.seconds[count])


def test_the_faster_count_wins_and_each_is_timed_alike():
    step = FakeStep({1: 0.004, 2: 0.002})  # within HOPELESS of each other: timed to the budget
    best, medians = on_a_thread_of_its_own(lambda: fastest_thread_count(step, (1, 2), budget_s=0.05))
    assert best == 2 and set(medians) == {1, 2}
    assert medians[1] == pytest.approx(0.004, abs=0.0015) and medians[2] == pytest.approx(0.002, abs=0.0015)
    block = BLOCK_STEPS + 1  # a block's first step, where the team changes size, is not timed
    assert step.calls.count(1) == step.calls.count(2) >= block * (1 + MIN_ROUNDS)
    # Blocks of one count in a row: an untimed block of each, then rounds in alternating order.
    assert step.calls[: 4 * block] == [1] * block + [2] * block + [2] * block + [1] * block
    assert step.calls[4 * block : 6 * block] == [1] * block + [2] * block


def test_on_a_near_tie_the_smaller_count_wins():
    step = FakeStep({1: 0.0100, 2: 0.0095})
    assert on_a_thread_of_its_own(lambda: fastest_thread_count(step, (1, 2), budget_s=0.05))[0] == 1


def test_rounds_stop_at_the_limit_even_within_the_budget():
    step = FakeStep({1: 0.0, 2: 0.0})
    on_a_thread_of_its_own(lambda: fastest_thread_count(step, (1, 2), budget_s=10.0, max_rounds=5))
    assert len(step.calls) == 2 * (BLOCK_STEPS + 1) * (1 + 5)


def test_a_hopeless_count_is_not_timed_on():
    step = FakeStep({1: 0.001, 2: 0.001 * HOPELESS * 3})  # e.g. two threads on cores busy elsewhere
    assert on_a_thread_of_its_own(lambda: fastest_thread_count(step, (1, 2), budget_s=10.0))[0] == 1
    assert len(step.calls) == 2 * (BLOCK_STEPS + 1) * (1 + 1)


def test_a_count_applies_to_the_calling_thread_and_gpus_are_left_alone():
    def work():
        seen = {
            "description": use_threads(1, CPU),
            "count": torch.get_num_threads(),
            "gpu": use_threads(3, torch.device("cuda")),
        }
        seen["after_gpu"] = torch.get_num_threads()
        seen["kept"] = use_threads(None, CPU)
        return seen

    assert on_a_thread_of_its_own(work) == {
        "description": "1 CPU thread",
        "count": 1,
        "gpu": "",
        "after_gpu": 1,
        "kept": "1 CPU thread",
    }


def test_a_runs_own_count_wins_then_the_override(digits, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "3")
    assert app_run_threads(TrainConfig(threads=2, **SMALL), digits, CPU) == (2, "the run's own count")
    assert app_run_threads(TrainConfig(**SMALL), digits, CPU) == (3, f"set by {THREADS_ENV}")
    assert app_run_threads(TrainConfig(**SMALL), digits, torch.device("cuda")) == (None, "")


def test_the_app_measures_once_per_kind_of_step(digits, monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setattr(thread_choice, "_measured", {})
    measured = []

    def fake_measure(config, dataset, device):
        measured.append(config.batch_size)
        return 2, {1: 0.0031, 2: 0.0020}

    monkeypatch.setattr(thread_choice, "_measure", fake_measure)
    first = app_run_threads(TrainConfig(**SMALL), digits, CPU)
    assert first == (2, "measured: 1 thread 3.1 ms, 2 threads 2.0 ms a step")
    # Another seed, lr or β computes a step of the same cost: the same count, so the same numbers.
    assert app_run_threads(TrainConfig(seed=7, lr=0.01, beta=4.0, **SMALL), digits, CPU) == first
    app_run_threads(TrainConfig(batch_size=64, **SMALL), digits, CPU)
    assert measured == [128, 64]


def test_a_real_measurement_times_the_runs_step_without_touching_the_run(digits, monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setattr(thread_choice, "_measured", {})
    count, how = on_a_thread_of_its_own(lambda: app_run_threads(TrainConfig(batch_size=32, **SMALL), digits, CPU))
    assert count in app_thread_candidates() and how.startswith("measured: ")
    if len(app_thread_candidates()) > 1:
        assert how.count(" ms") == 2
    # A run of two steps an epoch is timed across epochs.
    count, how = on_a_thread_of_its_own(lambda: app_run_threads(TrainConfig(batch_size=1024, **SMALL), digits, CPU))
    assert count in app_thread_candidates() and how.startswith("measured: ")


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
    import threading

    caller = threading.get_ident()
    assert on_a_thread_of_its_own(threading.get_ident) != caller
    with pytest.raises(ValueError, match="bad input"):
        on_a_thread_of_its_own(lambda: (_ for _ in ()).throw(ValueError("bad input")))
