"""Errors a user can cause, each with a message a person can act on.

The CLI and the app show `str(error)` and never a traceback."""


class VAEStudioError(Exception):
    """Base class of every error that is the user's input, not our bug."""


class DataError(VAEStudioError):
    """A dataset could not be found, read or understood."""


class CheckpointError(VAEStudioError):
    """A checkpoint file is missing, not a safetensors file, corrupt, or does not fit its config."""


class ConfigError(VAEStudioError):
    """A hyperparameter is out of range or names something that does not exist."""


class TrainingError(VAEStudioError):
    """Training cannot go on (divergence, out of memory, device busy)."""
