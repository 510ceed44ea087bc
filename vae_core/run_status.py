"""What a run of this server may be, in one place that imports nothing (the registry needs it before torch)."""

STATUSES = ("queued", "starting", "running", "paused", "finished", "stopped", "failed", "cancelled")
ACTIVE = ("queued", "starting", "running", "paused")  # not ended yet
TRAINING = ("starting", "running", "paused")  # holding its device
