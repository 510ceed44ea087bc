"""What a run of this server may be, in one place that imports nothing (the registry needs it before torch)."""

ACTIVE = ("queued", "starting", "running", "paused")  # not ended yet: then finished, stopped, failed or cancelled
TRAINING = ("starting", "running", "paused")  # holding its device
