"""Thread timings remembered between processes on one machine (vae_core/thread_memory.py), and how
the app's choice uses them (vae_core/thread_choice.py)."""

import json

import pytest
import torch

from vae_core import thread_choice, thread_memory
from vae_core.config import TrainConfig
from vae_core.thread_choice import app_run_threads, refresh_timing, step_kind
from vae_core.thread_memory import MAX_KINDS, Timing, machine_key, recall, remember, timings_file
from vae_core.threads import THREADS_ENV

CPU = torch.device("cpu")
SMALL = dict(data="digits", hidden=(16,), latent_dim=2, epochs=1, device="cpu")
CANDIDATES = (1, 2)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setattr(thread_choice, "_measured", {})


def test_a_timing_is_remembered_for_its_kind_of_step_on_this_machine():
    assert recall("kind", CANDIDATES) is None
    remember("kind", Timing(2, {1: 0.0047, 2: 0.0035}, 1000.0))
    assert recall("kind", CANDIDATES) == Timing(2, {1: 0.0047, 2: 0.0035}, 1000.0)
    assert recall("another kind", CANDIDATES) is None
    stored = json.loads(timings_file().read_text())
    assert stored["machine"] == machine_key() and list(stored["kinds"]) == ["kind"]


def test_a_timing_from_another_machine_or_torch_version_is_never_used(monkeypatch):
    remember("kind", Timing(2, {1: 0.004, 2: 0.003}, 1000.0))
    monkeypatch.setattr(thread_memory, "machine_key", lambda: "AMD EPYC | x86_64 | AVX2 | 2 cores | torch 2.14.1")
    assert recall("kind", CANDIDATES) is None
    remember("other", Timing(1, {1: 0.004, 2: 0.009}, 2000.0))  # the other machine's file replaces it
    assert list(json.loads(timings_file().read_text())["kinds"]) == ["other"]


def test_a_timing_for_other_core_counts_is_not_used():
    remember("kind", Timing(4, {3: 0.004, 4: 0.003}, 1000.0))
    assert recall("kind", CANDIDATES) is None


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"machine": "MACHINE", "kinds": []}',
        '{"machine": "MACHINE", "kinds": {"kind": {"count": 2}}}',
        '{"machine": "MACHINE", "kinds": {"kind": {"count": "two", "seconds": {"1": 0.1, "2": 0.1}, "at": 1}}}',
        '{"machine": "MACHINE", "kinds": {"kind": {"count": 3, "seconds": {"1": 0.1, "2": 0.1}, "at": 1}}}',
        '{"machine": "MACHINE", "kinds": {"kind": {"count": 2, "seconds": {"1": 0.1}, "at": 1}}}',
        '{"machine": "MACHINE", "kinds": {"kind": {"count": 2, "seconds": {"1": -1, "2": 0.1}, "at": 1}}}',
        '{"machine": "MACHINE", "kinds": {"kind": {"count": 2, "seconds": {"1": NaN, "2": 0.1}, "at": 1}}}',
        '{"machine": "MACHINE", "kinds": {"kind": {"count": 2, "seconds": [0.1, 0.1], "at": 1}}}',
        # A moment that is no time (a crafted or broken file) would fail formatting the UI's text.
        '{"machine": "MACHINE", "kinds": {"kind": {"count": 2, "seconds": {"1": 0.1, "2": 0.1}, "at": NaN}}}',
        '{"machine": "MACHINE", "kinds": {"kind": {"count": 2, "seconds": {"1": 0.1, "2": 0.1}, "at": 1e300}}}',
        '{"machine": "MACHINE", "kinds": {"kind": {"count": 2, "seconds": {"1": 0.1, "2": 0.1}, "at": -1e20}}}',
        '{"machine": "MACHINE", "kinds": {"kind": {"count": 2, "seconds": {"1": 0.1, "2": 0.1}, "at": 1e999}}}',
    ],
)
def test_a_malformed_file_is_ignored_and_replaced(content):
    timings_file().parent.mkdir(parents=True)
    timings_file().write_text(content.replace("MACHINE", machine_key()))
    assert recall("kind", CANDIDATES) is None
    remember("kind", Timing(1, {1: 0.002, 2: 0.003}, 1.0))
    assert recall("kind", CANDIDATES) == Timing(1, {1: 0.002, 2: 0.003}, 1.0)


def test_a_timing_taken_on_a_busy_machine_is_not_kept_for_the_next_process():
    # Two threads 40x slower than one: other work had the cores, which says nothing of the machine.
    remember("kind", Timing(1, {1: 0.0053, 2: 0.2204}, 1000.0))
    assert recall("kind", CANDIDATES) is None and not timings_file().exists()
    timings_file().parent.mkdir(parents=True)
    timings_file().write_text(
        json.dumps(
            {
                "machine": machine_key(),
                "kinds": {"kind": {"count": 1, "seconds": {"1": 0.0053, "2": 0.2204}, "at": 1000.0}},
            }
        )
    )  # kept by an older version
    assert recall("kind", CANDIDATES) is None
    remember("kind", Timing(2, {1: 0.0047, 2: 0.0035}, 1000.0))  # an idle machine's timing is
    assert recall("kind", CANDIDATES).count == 2


def test_a_file_too_large_to_be_ours_is_ignored():
    timings_file().parent.mkdir(parents=True)
    entry = '{"count": 2, "seconds": {"1": 0.1, "2": 0.1}, "at": 1}'
    timings_file().write_text(
        f'{{"machine": "{machine_key()}", "kinds": {{"kind": {entry}}}, "padding": "' + "x" * (1 << 20) + '"}'
    )
    assert recall("kind", CANDIDATES) is None


def test_malformed_entries_are_dropped_when_the_file_is_written_again():
    timings_file().parent.mkdir(parents=True)
    timings_file().write_text(
        json.dumps(
            {
                "machine": machine_key(),
                "kinds": {"junk": {"count": "?"}, "good": {"count": 1, "seconds": {"1": 0.001, "2": 0.002}, "at": 5.0}},
            }
        )
    )
    remember("kind", Timing(2, {1: 0.004, 2: 0.003}, 10.0))
    assert sorted(json.loads(timings_file().read_text())["kinds"]) == ["good", "kind"]


def test_a_cache_that_cannot_be_written_is_skipped(tmp_path, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # its vae_studio folder cannot be made
    remember("kind", Timing(2, {1: 0.004, 2: 0.003}, 1.0))  # no error
    assert recall("kind", CANDIDATES) is None


def test_the_newest_kinds_are_kept():
    for number in range(MAX_KINDS + 5):
        remember(f"kind {number}", Timing(1, {1: 0.001, 2: 0.002}, float(number)))
    kinds = json.loads(timings_file().read_text())["kinds"]
    assert len(kinds) == MAX_KINDS and "kind 4" not in kinds and f"kind {MAX_KINDS + 4}" in kinds


def _fake_measure(monkeypatch, result):
    calls = []

    def measure(config, dataset, device):
        calls.append(config.batch_size)
        return result

    monkeypatch.setattr(thread_choice, "_measure", measure)
    monkeypatch.setattr(thread_choice, "app_thread_candidates", lambda: CANDIDATES)
    return calls


def test_the_app_uses_a_timing_an_earlier_process_made_without_timing_again(digits, monkeypatch):
    config = TrainConfig(**SMALL)
    remember(repr(step_kind(config, digits, CPU)), Timing(1, {1: 0.0031, 2: 0.0042}, 1796058000.0))
    calls = _fake_measure(monkeypatch, (2, {1: 0.009, 2: 0.001}))
    count, how = app_run_threads(config, digits, CPU)
    assert calls == [] and count == 1
    assert how.startswith("measured: 1 thread 3.1 ms, 2 threads 4.2 ms a step (timed on this machine on ")


def test_a_timing_made_as_a_run_starts_is_for_this_process_only(digits, monkeypatch):
    config = TrainConfig(**SMALL)
    calls = _fake_measure(monkeypatch, (1, {1: 0.0031, 2: 0.0050}))  # perhaps a disturbed moment
    assert app_run_threads(config, digits, CPU) == (1, "measured: 1 thread 3.1 ms, 2 threads 5.0 ms a step")
    assert calls == [128] and not timings_file().exists()


def test_a_refresh_times_again_for_the_next_process_and_this_one_keeps_its_count(digits, monkeypatch):
    config = TrainConfig(**SMALL)
    calls = _fake_measure(monkeypatch, (2, {1: 0.0031, 2: 0.0020}))
    assert app_run_threads(config, digits, CPU)[0] == 2
    calls = _fake_measure(monkeypatch, (1, {1: 0.0030, 2: 0.0090}))  # a new timing disagrees
    assert refresh_timing(config, digits, CPU, still_quiet=lambda: True)
    assert calls == [128]
    assert recall(repr(step_kind(config, digits, CPU)), CANDIDATES).count == 1  # for the next process
    assert app_run_threads(config, digits, CPU)[0] == 2  # this one's runs repeat with the count they had


def test_a_refresh_during_which_a_run_started_is_not_kept(digits, monkeypatch):
    config = TrainConfig(**SMALL)
    remember(repr(step_kind(config, digits, CPU)), Timing(2, {1: 0.0031, 2: 0.0020}, 1000.0))
    _fake_measure(monkeypatch, (1, {1: 0.0030, 2: 0.0900}))  # two threads timed beside a run
    assert not refresh_timing(config, digits, CPU, still_quiet=lambda: False)
    assert recall(repr(step_kind(config, digits, CPU)), CANDIDATES).count == 2


def test_a_known_count_does_not_wait_for_a_measurement_under_way(digits, monkeypatch):
    config = TrainConfig(**SMALL)
    _fake_measure(monkeypatch, (2, {1: 0.0031, 2: 0.0020}))
    app_run_threads(config, digits, CPU)
    with thread_choice._measuring:  # e.g. the idle refresh timing a step
        assert app_run_threads(config, digits, CPU)[0] == 2


def test_a_refresh_does_nothing_under_an_override(digits, monkeypatch):
    calls = _fake_measure(monkeypatch, (2, {1: 0.0031, 2: 0.0020}))
    monkeypatch.setenv(THREADS_ENV, "1")
    assert not refresh_timing(TrainConfig(**SMALL), digits, CPU, still_quiet=lambda: True)
    assert calls == [] and not timings_file().exists()
