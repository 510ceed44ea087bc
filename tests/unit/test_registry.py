"""The job registry: one job trains per device, the others wait in a queue that can be reordered
and cancelled, and the next one starts when the device frees."""

import threading

import pytest

from vae_core.config import TrainConfig
from vae_core.errors import TrainingError
from vae_core.registry import JobRegistry, distinct_name

SMALL = dict(data="digits", hidden=(32,), latent_dim=2, batch_size=32, device="cpu")
LONG = TrainConfig(epochs=500, **SMALL)
LONG_NAME = "mlp z2 β1 digits h32 bs 32"


@pytest.fixture
def registry(tmp_path):
    registry = JobRegistry(tmp_path)
    yield registry
    registry.stop_all()


def test_a_start_while_the_device_trains_waits_in_the_queue_and_starts_when_it_frees(registry, digits):
    first = registry.start(LONG, digits)
    second = registry.start(TrainConfig(epochs=1, **SMALL), digits)
    assert first.status in ("starting", "running") and second.status == "queued"
    assert registry.busy_job("cpu") is first
    assert registry.queued("cpu") == [second] and registry.position(second.run_id) == 1
    assert registry.position(first.run_id) is None
    assert registry.jobs() == [first, second]
    first.stop()
    assert second.wait(60) and second.snapshot().status == "finished"
    assert first.status == "stopped" and registry.queued() == []


def test_queued_jobs_are_reordered_and_cancelled(registry, digits):
    running = registry.start(LONG, digits)
    a, b, c = (registry.submit(TrainConfig(epochs=1, seed=seed, **SMALL), digits) for seed in (1, 2, 3))
    assert [job.run_id for job in registry.queued("cpu")] == [a.run_id, b.run_id, c.run_id]
    assert registry.move(c.run_id, -1) == 2
    assert registry.move(a.run_id, +5) == 3  # clamped to the end
    assert registry.queued("cpu") == [c, b, a]
    registry.cancel(c.run_id)
    assert c.status == "cancelled" and registry.queued("cpu") == [b, a]
    with pytest.raises(TrainingError, match="not waiting in a queue: it is cancelled"):
        registry.move(c.run_id, 1)
    with pytest.raises(TrainingError, match="not waiting in a queue: it is (starting|running)"):
        registry.cancel(running.run_id)

    started = []
    real_start = type(b).start

    def record_start(job):
        started.append(job.run_id)
        return real_start(job)

    for job in (a, b):
        job.start = record_start.__get__(job)
    running.stop()
    assert a.wait(60) and b.wait(60)
    assert started == [b.run_id, a.run_id]  # in the queue's order, one after the other
    assert b.snapshot().status == a.snapshot().status == "finished"


def test_a_stop_on_a_queued_job_cancels_it_and_the_queue_skips_it(registry, digits):
    running = registry.start(LONG, digits)
    skipped = registry.start(TrainConfig(epochs=1, **SMALL), digits)
    after = registry.start(TrainConfig(epochs=1, seed=1, **SMALL), digits)
    skipped.stop()
    running.stop()
    assert after.wait(60) and after.status == "finished"
    assert skipped.status == "cancelled" and skipped.snapshot().step == 0


def test_names_are_readable_and_distinct(registry, digits):
    first = registry.start(LONG, digits)
    second = registry.start(LONG, digits)
    named = registry.start(LONG, digits, name="mine")
    assert first.name == "mlp z2 β1 digits h32 bs 32" and second.name == first.name + " (2)"
    assert named.snapshot().name == "mine"
    assert distinct_name("a", {"a", "a (2)"}) == "a (3)" and distinct_name("b", {"a"}) == "b"


def test_a_new_runs_name_is_the_one_the_folder_listing_shows_and_a_resumed_run_keeps_its_own(tmp_path, digits):
    """Names are made distinct against the folder too (runs of a previous server, of the CLI), so the
    Train page and every listing name a run alike; a resumed run keeps the name it had."""
    from vae_core.runs import list_runs

    quick = TrainConfig(epochs=1, **SMALL)
    earlier = JobRegistry(tmp_path)  # a server that has since restarted
    first = earlier.start(quick, digits)
    assert first.wait(60) and first.status == "finished"
    earlier.close()

    registry = JobRegistry(tmp_path)
    try:
        second = registry.start(quick, digits)
        assert second.wait(60) and second.status == "finished"
        assert second.name == first.name + " (2)"
        shown = {record.run_id: record.display_name for record in list_runs(tmp_path)}
        assert shown == {first.run_id: first.name, second.run_id: second.name}

        resumed = registry.start(quick.replace(epochs=2), digits, run_id=first.run_id, name=first.name)
        assert resumed.name == first.name  # not "(3)": its own record does not count against it
        assert resumed.wait(60)
        shown = {record.run_id: record.display_name for record in list_runs(tmp_path)}
        assert shown == {first.run_id: first.name, second.run_id: second.name}
    finally:
        registry.stop_all()


def test_served_names_are_distinct_within_a_persons_runs_only(registry, digits):
    """Another person's identical runs do not number mine: a '(4)' would tell me three exist."""
    from vae_core.checkpoint_fields import OWNER_ID_LENGTH

    them, me = "a" * OWNER_ID_LENGTH, "b" * OWNER_ID_LENGTH
    theirs = [registry.start(LONG, digits, owner=them) for _ in range(2)]
    mine = registry.start(LONG, digits, owner=me)
    again = registry.start(LONG, digits, owner=me)
    assert [job.name for job in theirs] == [LONG_NAME, LONG_NAME + " (2)"]
    assert (mine.name, again.name) == (LONG_NAME, LONG_NAME + " (2)")


def test_run_ids_are_unique_and_ended_jobs_can_be_forgotten(registry, digits):
    job = registry.start(LONG, digits, run_id="one")
    with pytest.raises(TrainingError, match="run one already exists"):
        registry.start(TrainConfig(epochs=1, **SMALL), digits, run_id="one")
    with pytest.raises(TrainingError, match="has not ended"):
        registry.forget("one")
    job.stop()
    assert job.wait(10)
    registry.forget("one")
    assert registry.get("one") is None


def test_concurrent_starts_never_train_two_jobs_on_one_device(registry, digits):
    """Many threads submit at once while jobs end: at every moment at most one job trains."""
    overlaps = []
    jobs = []
    lock = threading.Lock()

    def submit(seed):
        job = registry.submit(TrainConfig(epochs=1, seed=seed, **SMALL), digits)
        with lock:
            jobs.append(job)

    threads = [threading.Thread(target=submit, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    while any(job.status in ("queued", "starting", "running") for job in jobs):
        overlaps.append(sum(job.alive for job in jobs))
        jobs[0].wait(0.01)
    assert max(overlaps) <= 1
    assert all(job.status == "finished" for job in jobs)


def test_the_queue_holds_a_limited_number_of_runs_per_person(digits, monkeypatch):
    """Four sweep submits once queued 1,024 runs, and the next person's run went to position 1024."""
    monkeypatch.setenv("VAE_STUDIO_MAX_QUEUED_PER_PERSON", "2")
    registry = JobRegistry()
    alice, bob = "a" * 32, "b" * 32
    try:
        registry.submit(TrainConfig(epochs=200, **SMALL), digits, owner=alice)  # trains: not waiting
        for _ in range(2):
            registry.submit(TrainConfig(epochs=1, **SMALL), digits, owner=alice)
        with pytest.raises(TrainingError, match="2 runs already wait in the queue for you"):
            registry.submit(TrainConfig(epochs=1, **SMALL), digits, owner=alice)
        assert registry.submit(TrainConfig(epochs=1, **SMALL), digits, owner=bob).status == "queued"
    finally:
        registry.stop_all()


def test_a_sweep_over_the_limits_queues_nothing():
    from vae_core.errors import ConfigError
    from vae_core.sweep import sweep_configs

    base = TrainConfig(**SMALL)
    with pytest.raises(ConfigError, match="65 combinations, more than the limit of 64"):
        sweep_configs(base, {"beta": " ".join(str(1 + i) for i in range(65))})
    with pytest.raises(ConfigError, match="at most 1,000 epochs"):
        sweep_configs(base, {"epochs": "2 100000"})  # all or nothing: not the first alone
