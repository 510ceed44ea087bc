"""The thread policy: the tuner's choices on a fake clock, and training that gives the same bits
whatever the thread count (which is what lets the tuner switch counts mid-run)."""

import os

import pytest
import torch

from vae_core.config import TrainConfig
from vae_core.threads import (FALLBACK_NOTE, THREADS_ENV, ThreadPolicy, ThreadTuner, candidate_counts,
                              thread_count_changes_results, thread_override, thread_policy)
from vae_core.trainer import Trainer, run_to_end

BATCH = 100


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def tuner_on(clock: FakeClock, **kwargs) -> ThreadTuner:
    """Measures from the second step: 4 timed steps of the count in force, then the other count after
    one untimed step; a challenger is cut short after 2 steps that all lost."""
    return ThreadTuner((1, 2), clock=clock, start_after_s=0.0, warm_up_steps=1, window_steps=4, window_s=0.0,
                       reject_after_steps=2, first_interval_s=5.0, max_interval_s=20.0, **kwargs)


def run_steps(tuner: ThreadTuner, clock: FakeClock, seconds_per_step: dict[int, float], steps: int) -> list[int]:
    """Steps whose duration depends on the count in force; returns the count of each step."""
    counts = []
    for _ in range(steps):
        counts.append(tuner.count)
        clock.now += seconds_per_step[tuner.count]
        tuner.record(seconds_per_step[tuner.count], BATCH)
    return counts


IDLE = {1: 0.010, 2: 0.007}  # two threads faster
BUSY = {1: 0.011, 2: 0.021}  # another process on one core: two spinning threads get 3 times slower


def test_measures_the_count_in_force_then_cuts_a_losing_challenger_short():
    clock = FakeClock()
    tuner = tuner_on(clock)
    counts = run_steps(tuner, clock, IDLE, 1 + 4 + 3 + 3)
    # 4 timed steps of 2 threads (in force: no warm-up), then 1 thread: an untimed step and 2 timed
    # ones, both slower than 2 threads' score, so it is dropped at once.
    assert counts == [2] + [2] * 4 + [1] * 3 + [2] * 3
    assert not tuner.measuring and tuner.measurements == 1
    assert tuner.describe() == "2 CPU threads, tuned to the load"


def test_a_faster_challenger_is_measured_in_full_and_wins():
    clock = FakeClock()
    tuner = tuner_on(clock)
    counts = run_steps(tuner, clock, BUSY, 1 + 4 + 5 + 3)
    assert counts == [2] + [2] * 4 + [1] * 5 + [1] * 3
    assert tuner.describe() == "1 CPU thread, tuned to the load"


def test_a_slow_warm_up_step_is_not_counted():
    clock = FakeClock()
    tuner = tuner_on(clock)
    tuner.record(0.007, BATCH)  # the run's first step, before any measurement
    for _ in range(4):
        tuner.record(0.012, BATCH)  # 2 threads, in force
    tuner.record(1.0, BATCH)  # 1 thread's first step: caches refill
    for _ in range(4):
        tuner.record(0.010, BATCH)
    assert tuner.count == 1


def test_time_is_compared_per_image_so_a_short_last_batch_is_not_faster():
    clock = FakeClock()
    tuner = tuner_on(clock)
    half = BATCH // 2
    steps = ([(0.007, BATCH)] + [(0.011, BATCH), (0.011, BATCH), (0.0055, half), (0.0055, half)]
             + [(0.010, BATCH)] * 5)
    for seconds, samples in steps:
        tuner.record(seconds, samples)
    # 2 threads' median step took 0.00825 s, less than 1 thread's 0.010 s, but only because two of
    # its steps had half a batch: per image it is 10% slower.
    assert tuner.count == 1


def test_a_near_tie_keeps_the_count_in_force():
    clock = FakeClock()
    tuner = tuner_on(clock, switch_margin=0.05)
    run_steps(tuner, clock, IDLE, 1 + 4 + 3)
    clock.now += 5.0
    # Measured again: 1 thread is now 3% faster than 2, within the margin, so 2 stays.
    counts = run_steps(tuner, clock, {1: 0.0068, 2: 0.007}, 1 + 4 + 5)
    assert counts == [2] + [2] * 4 + [1] * 5
    assert tuner.count == 2 and tuner.measurements == 2


def test_measures_again_less_often_while_the_winner_stays_the_same():
    clock = FakeClock()
    tuner = tuner_on(clock)
    measured_at = []
    for _ in range(12_000):
        before = tuner.measurements
        run_steps(tuner, clock, IDLE, 1)
        if tuner.measurements > before:
            measured_at.append(round(clock.now, 3))
    gaps = [round(b - a, 1) for a, b in zip(measured_at, measured_at[1:])]
    # Each measurement itself takes 7 steps (~0.06 s) after the interval: 5, 10, 20, then the cap.
    assert gaps[:4] == [5.1, 10.1, 20.1, 20.1]


def test_a_change_in_step_time_starts_a_new_measurement_and_the_other_count_wins():
    clock = FakeClock()
    tuner = tuner_on(clock, drift=1.5)
    run_steps(tuner, clock, IDLE, 1 + 4 + 3)
    assert tuner.count == 2
    counts = run_steps(tuner, clock, BUSY, 8)  # the tuner looks at the median of 8 steps
    assert counts == [2] * 8 and tuner.measuring
    run_steps(tuner, clock, BUSY, 4 + 5)
    assert tuner.count == 1 and tuner.measurements == 2
    assert clock.now < 1.0  # at once, not after the 5 s interval


def test_a_run_starts_with_the_largest_count_and_measures_after_its_first_slow_steps():
    clock = FakeClock()
    tuner = ThreadTuner((1, 2), clock=clock, start_after_s=0.5, warm_up_steps=2, window_steps=8, window_s=0.1,
                        first_interval_s=5.0)
    counts = run_steps(tuner, clock, IDLE, 110)
    first_of_one_thread = counts.index(1)
    # 2 threads for 0.5 s, then as the count in force for 8 timed steps and 0.1 s (15 steps)...
    assert counts[:first_of_one_thread] == [2] * first_of_one_thread
    assert 0.5 <= (first_of_one_thread - 15) * 0.007 < 0.52
    # ... then 1 thread: 2 untimed steps and 2 timed ones that lose, and back to 2.
    assert counts[first_of_one_thread:first_of_one_thread + 5] == [1] * 4 + [2]
    assert tuner.count == 2 and tuner.measurements == 1


def test_candidate_counts():
    assert candidate_counts(1) == (1,)
    assert candidate_counts(2) == (1, 2)
    assert candidate_counts(6) == (1, 2, 4, 6)
    assert candidate_counts(8) == (1, 2, 4, 8)


def agree() -> bool:
    return False


def test_override_and_devices(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "3")
    assert thread_override() == 3
    policy = thread_policy(torch.device("cpu"), results_vary=agree)
    assert not policy.tuned and policy.count == 3 and policy.describe() == "3 CPU threads"
    monkeypatch.setenv(THREADS_ENV, "many")
    assert thread_override() is None
    monkeypatch.delenv(THREADS_ENV)
    assert thread_policy(torch.device("meta"), results_vary=agree).count is None  # an accelerator: left alone
    assert thread_policy(torch.device("meta"), results_vary=agree).describe() == ""
    expected_tuned = (os.cpu_count() or 1) > 1
    assert thread_policy(torch.device("cpu"), results_vary=agree).tuned is expected_tuned


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to run 2 threads")
def test_a_model_whose_results_depend_on_the_count_trains_on_one_thread_and_says_why():
    policy = thread_policy(torch.device("cpu"), results_vary=lambda: True)
    assert not policy.tuned and policy.count == 1
    assert policy.describe() == f"1 CPU thread, {FALLBACK_NOTE}"


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to run 2 threads")
def test_the_probe_compares_bits_across_counts_and_remembers_its_answer():
    calls = []

    def count_dependent() -> list[torch.Tensor]:
        calls.append(torch.get_num_threads())
        return [torch.tensor([float(torch.get_num_threads())])]

    assert thread_count_changes_results(count_dependent, key="test: count dependent") is True
    assert thread_count_changes_results(lambda: [torch.ones(3)], key="test: constant") is False
    assert thread_count_changes_results(count_dependent, key="test: count dependent") is True
    assert calls == list(candidate_counts(os.cpu_count())), "measured once per key, with every candidate count"


def test_importing_vae_core_first_makes_the_mlp_independent_of_the_thread_count(mnist_sample):
    # conftest imports vae_core before torch can start MKL; without MKL_CBWR in force by then, MKL
    # splits fc_mu's gradient (10x128 @ 128x128) by thread and the default model loses its tuner.
    assert os.environ["MKL_CBWR"] == "AUTO,STRICT"
    trainer = Trainer(TrainConfig(model="mlp", epochs=1, device="cpu"), mnist_sample)
    assert trainer.threads.tuned is ((os.cpu_count() or 1) > 1)


class EveryStepTuner(ThreadTuner):
    """Switches between 1 and 2 threads on nearly every step: the worst case for reproducibility."""

    def __init__(self):
        super().__init__((1, 2), start_after_s=0.0, warm_up_steps=0, window_steps=1, window_s=0.0,
                         first_interval_s=0.0, max_interval_s=0.0)
        self.counts_used: list[int] = []

    def apply(self) -> None:
        super().apply()
        self.counts_used.append(torch.get_num_threads())


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to run 2 threads")
@pytest.mark.parametrize("model", ["mlp", "conv", "cvae"])
def test_a_model_gets_the_tuner_only_if_1_thread_2_threads_and_switching_give_the_same_bits(mnist_sample, model):
    # The default sizes: MKL splits their products by thread (fc_mu's gradient is 10x128 @ 128x128).
    config = TrainConfig(model=model, epochs=1, device="cpu", hidden=(32, 64) if model == "conv" else (256, 128))
    if not Trainer(config, mnist_sample).threads.tuned:
        # The probe found a kernel that splits by thread (oneDNN's convolutions on AVX-512 CPUs):
        # one thread, and the UI says why.
        assert Trainer(config, mnist_sample).threads.describe() == f"1 CPU thread, {FALLBACK_NOTE}"
        return
    runs = {}
    for name, policy in [("1", ThreadPolicy(1)), ("2", ThreadPolicy(2)), ("switching", EveryStepTuner())]:
        trainer = Trainer(config, mnist_sample, threads=policy)
        run_to_end(trainer)
        runs[name] = trainer
    used = runs["switching"].threads.counts_used
    assert sum(a != b for a, b in zip(used, used[1:])) >= 10  # the count really changed mid-run
    reference = runs["1"]
    for name in ("2", "switching"):
        weights = runs[name].model.state_dict()
        assert all(torch.equal(reference.model.state_dict()[key], weights[key]) for key in weights), name
        assert runs[name].history.epochs[0]["test_neg_elbo"] == reference.history.epochs[0]["test_neg_elbo"]
