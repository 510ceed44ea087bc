"""The limit of runs waiting per person (config.Limits.max_queued_per_person) counts the runs pending
in SLURM, whichever door they came by: the app's forms (registry.submit) and the CLI's `sweep` and
`experiment` (SlurmQueue.queue). A full cluster is the fake SLURM holding every job pending."""

import pytest

from tests.fake_slurm import fake_slurm  # noqa: F401  (the fixture)
from vae_core.config import TrainConfig
from vae_core.errors import TrainingError
from vae_core.executor_state import states_in
from vae_core.registry import JobRegistry
from vae_core.slurm_executor import SlurmQueue

TINY = dict(data="digits", hidden=(16,), latent_dim=2, batch_size=16, device="cpu", threads=1, epochs=1)
ALICE, BOB = "a" * 32, "b" * 32


@pytest.fixture
def full_cluster(fake_slurm, monkeypatch):  # noqa: F811
    monkeypatch.setenv("FAKE_SLURM_HOLD", "1")
    monkeypatch.setenv("VAE_STUDIO_MAX_QUEUED_PER_PERSON", "2")
    return fake_slurm


def test_the_forms_limit_counts_the_runs_pending_in_slurm(tmp_path, full_cluster, digits):
    registry = JobRegistry(tmp_path, executor="slurm")
    try:
        for _ in range(2):
            registry.submit(TrainConfig(**TINY), digits, owner=ALICE)
        assert [state.text() for state in states_in(tmp_path).values()] == [
            f"pending in SLURM (job {state.job_id})" for state in states_in(tmp_path).values()
        ]
        with pytest.raises(TrainingError) as refused:
            registry.submit(TrainConfig(**TINY), digits, owner=ALICE)
        assert str(refused.value) == (
            "2 runs already wait in the queue for you (VAE_STUDIO_MAX_QUEUED_PER_PERSON): "
            "let some finish, or cancel some first"
        )
        registry.submit(TrainConfig(**TINY), digits, owner=BOB)  # another person's runs are not counted
        assert len(full_cluster.calls("sbatch")) == 3
        registry.cancel(registry.slurm.active_runs()[0][1].run_id)  # one of Alice's leaves: room for one
        registry.submit(TrainConfig(**TINY), digits, owner=ALICE)
    finally:
        registry.close()


def test_a_sweep_or_experiment_past_the_limit_queues_nothing(tmp_path, full_cluster):
    slurm = SlurmQueue(tmp_path)
    slurm.queue([TrainConfig(**TINY)])
    with pytest.raises(TrainingError) as refused:
        slurm.queue([TrainConfig(**TINY), TrainConfig(**TINY)])  # `sweep`'s and `experiment`'s door
    assert str(refused.value) == (
        "2 more runs would pass the limit of 2 waiting in the queue (1 wait) "
        "(VAE_STUDIO_MAX_QUEUED_PER_PERSON): let some finish, or cancel some first"
    )
    assert len(states_in(tmp_path)) == 1 and len(full_cluster.calls("sbatch")) == 1  # all or nothing
    slurm.queue([TrainConfig(**TINY)], owner=ALICE)  # the CLI's runs are the shared ones, not Alice's
