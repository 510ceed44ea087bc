"""The thread rule: the CLI keeps PyTorch's default, the app's training thread leaves a core to the
UI, an environment variable overrides both, and a count is applied on the thread that trains."""

import threading

import pytest
import torch

from vae_core.config import TrainConfig
from vae_core.jobs import TrainingJob
from vae_core.threads import THREADS_ENV, app_thread_count, thread_override, use_threads


@pytest.mark.parametrize("value, expected", [("", None), ("3", 3), (" 2 ", 2), ("0", 1), ("-4", 1), ("many", None)])
def test_the_override_is_a_whole_number_or_ignored(monkeypatch, value, expected):
    monkeypatch.setenv(THREADS_ENV, value)
    assert thread_override() == expected


def test_the_app_leaves_one_core_to_the_ui_unless_overridden(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert [app_thread_count(cores) for cores in (1, 2, 4, 16)] == [1, 1, 3, 15]
    monkeypatch.setenv(THREADS_ENV, "2")
    assert app_thread_count(cores=8) == 2


def test_a_count_applies_to_the_calling_thread_and_gpus_are_left_alone():
    seen = {}

    def worker():
        seen["description"] = use_threads(1, torch.device("cpu"))
        seen["count"] = torch.get_num_threads()
        seen["gpu"] = use_threads(3, torch.device("cuda"))
        seen["after_gpu"] = torch.get_num_threads()
        seen["kept"] = use_threads(None, torch.device("cpu"))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == {"description": "1 CPU thread", "count": 1, "gpu": "", "after_gpu": 1, "kept": "1 CPU thread"}


def test_the_job_trains_with_the_apps_count_on_its_own_thread(digits, monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    before = torch.get_num_threads()
    job = TrainingJob(TrainConfig(data="digits", hidden=(16,), latent_dim=2, epochs=1, device="cpu"), digits).start()
    assert job.wait(60) and job.status == "finished"
    count = app_thread_count()
    assert job.snapshot().threads == f"{count} CPU thread{'s' * (count != 1)}"
    assert torch.get_num_threads() == before  # the caller's own count is untouched
