"""A run's first loss points reach its snapshot after its first few steps, so the person who pressed
Start sees the curve begin at once rather than after a full publish interval."""

from vae_core.config import TrainConfig
from vae_core.jobs import FIRST_PUBLISH_STEPS, FLUSH_EVERY_STEPS, TrainingJob


class RecordingJob(TrainingJob):
    """Keeps the step of every snapshot it publishes."""

    def __init__(self, *args, **kwargs):
        self.published_steps: list[int] = []
        super().__init__(*args, **kwargs)

    def _publish(self) -> None:
        super()._publish()
        self.published_steps.append(self.snapshot().step)


def test_the_first_points_are_published_after_the_first_few_steps(digits):
    assert FIRST_PUBLISH_STEPS < FLUSH_EVERY_STEPS
    config = TrainConfig(data="digits", hidden=(32,), latent_dim=2, batch_size=32, epochs=1, device="cpu")
    job = RecordingJob(config, digits).start()
    assert job.wait(60)
    first_with_points = next(step for step in job.published_steps if step > 0)
    assert first_with_points == FIRST_PUBLISH_STEPS
    assert job.snapshot().status == "finished" and len(job.snapshot().curves) == job.snapshot().step
