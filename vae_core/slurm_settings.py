"""Where queued runs train (VAE_STUDIO_EXECUTOR) and how a SLURM job of a run is asked for.

The operator's settings, read from a TOML file and the environment, never from a page.

    VAE_STUDIO_EXECUTOR=local    the default: runs train in processes of this machine (registry.py)
    VAE_STUDIO_EXECUTOR=slurm    each queued run becomes a SLURM job (slurm_executor.py)

The SLURM settings come from `VAE_STUDIO_SLURM_CONFIG` (a path), else `slurm.toml` beside the
checkpoints folder, else nothing but the defaults; a `VAE_STUDIO_SLURM_<FIELD>` variable overrides
the file's field. Each field is range-checked here, and a bad one is one line naming it.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from .errors import ConfigError
from .safe_files import UnreadableFile, read_regular_file

EXECUTOR_ENV = "VAE_STUDIO_EXECUTOR"
SLURM_CONFIG_ENV = "VAE_STUDIO_SLURM_CONFIG"
SLURM_ENV_PREFIX = "VAE_STUDIO_SLURM_"
SLURM_CONFIG_NAME = "slurm.toml"
MAX_CONFIG_BYTES = 64 * 1024
# The operator's names. "process" and "thread" are the registry's own (the app's process pool under
# its older name; threads of the server, for tests and scripts).
EXECUTORS = ("local", "slurm")
REGISTRY_EXECUTORS = {"local": "process", "process": "process", "thread": "thread", "slurm": "slurm"}
# A partition, account or qos name: what SLURM accepts, and nothing a shell would read twice.
_SLURM_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SBATCH_OPTION = re.compile(r"[a-z][a-z0-9-]{0,40}")
_SBATCH_VALUE = re.compile(r"[A-Za-z0-9_.,:=@%/+-]{1,200}")


def executor_setting(value: str | None = None) -> str:
    """The registry executor named by `value` (else VAE_STUDIO_EXECUTOR, else local): "process" for
    local, "slurm", or "thread"; ConfigError in one line for anything else."""
    chosen = os.environ.get(EXECUTOR_ENV, "local") if value is None else value
    chosen = chosen.strip().lower() or "local"
    if chosen not in REGISTRY_EXECUTORS:
        raise ConfigError(f"{EXECUTOR_ENV}={chosen[:40]!r} is not an executor: use local (the default) or slurm")
    return REGISTRY_EXECUTORS[chosen]


@dataclass(frozen=True)
class SlurmSettings:
    """What each run's job asks SLURM for. `max_requeues`: how often a run is requeued (a time limit,
    a preemption, a node failure) without its job having saved a new epoch; a requeue after a new
    epoch is not counted (slurm_executor.py)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: int = 60
    gpus_per_run: int = 0
    cpus_per_run: int = 2
    mem_gb: int = 8
    max_requeues: int = 3
    signal_delay_s: int = 90  # SLURM's warning before a time limit: the job is requeued on it
    sbatch: dict[str, str] = field(default_factory=dict)  # extra options: {"constraint": "a100"}
    setup: tuple[str, ...] = ()  # shell lines run before the job (module load ..., source venv)

    def sbatch_parameters(self) -> dict:
        """The settings as submitit's SlurmExecutor.update_parameters takes them."""
        parameters = {
            "time": self.time_min,
            "cpus_per_task": self.cpus_per_run,
            "mem": f"{self.mem_gb}GB",
            "signal_delay_s": self.signal_delay_s,
        }
        if self.gpus_per_run:
            parameters["gpus_per_node"] = self.gpus_per_run
        for name in ("partition", "account", "qos"):
            if getattr(self, name) is not None:
                parameters[name] = getattr(self, name)
        if self.sbatch:
            parameters["additional_parameters"] = dict(self.sbatch)
        return parameters


_BOUNDS = {
    "time_min": (1, 60 * 24 * 30),
    "gpus_per_run": (0, 16),
    "cpus_per_run": (1, 256),
    "mem_gb": (1, 4096),
    "max_requeues": (0, 20),
    "signal_delay_s": (10, 3600),
}


def slurm_config_path(checkpoint_dir: str | Path) -> Path:
    """VAE_STUDIO_SLURM_CONFIG, else slurm.toml beside the checkpoints folder."""
    named = os.environ.get(SLURM_CONFIG_ENV)
    return Path(named) if named else Path(checkpoint_dir).resolve().parent / SLURM_CONFIG_NAME


def load_slurm_settings(checkpoint_dir: str | Path) -> SlurmSettings:
    """The settings of the config file (when there is one) with the environment's overrides;
    ConfigError naming the file or variable and the field."""
    path = slurm_config_path(checkpoint_dir)
    values: dict = {}
    if os.environ.get(SLURM_CONFIG_ENV) or path.exists():
        try:
            text = read_regular_file(path, MAX_CONFIG_BYTES).decode()
            values = tomllib.loads(text)
        except (UnreadableFile, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"SLURM settings {path}: {str(error).splitlines()[0][:200]}") from None
        values = values.get("slurm", values)  # a [slurm] table, or the fields at the top
    for item in fields(SlurmSettings):
        variable = SLURM_ENV_PREFIX + item.name.upper()
        if variable in os.environ and item.name not in ("sbatch", "setup"):
            values[item.name] = os.environ[variable]
    return checked_settings(values, str(path))


def checked_settings(values: dict, where: str) -> SlurmSettings:
    """`values` (from TOML or the environment) as SlurmSettings, every field checked."""
    if not isinstance(values, dict):
        raise ConfigError(f"SLURM settings {where}: expected a table of fields")
    known = {item.name for item in fields(SlurmSettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"SLURM settings {where}: unknown field {unknown[0]!r}; known: {', '.join(sorted(known))}")
    settings = SlurmSettings()
    for name, value in values.items():
        settings = replace(settings, **{name: _checked_field(name, value, where)})
    return settings


def _checked_field(name: str, value, where: str):
    def refuse(what: str):
        return ConfigError(f"SLURM settings {where}: {name} {what}")

    if name in _BOUNDS:
        low, high = _BOUNDS[name]
        try:
            number = int(value) if isinstance(value, str) else value
        except ValueError:
            raise refuse(f"must be a whole number, not {value!r:.40}") from None
        if not isinstance(number, int) or isinstance(number, bool) or not low <= number <= high:
            raise refuse(f"must be a whole number from {low} to {high}")
        return number
    if name in ("partition", "account", "qos"):
        if not isinstance(value, str) or not _SLURM_NAME.fullmatch(value):
            raise refuse("must be a name of letters, digits, '_', '.' or '-' (at most 64)")
        return value
    if name == "sbatch":
        if not isinstance(value, dict) or len(value) > 32:
            raise refuse("must be a table of at most 32 sbatch options")
        options = {}
        for option, setting in value.items():
            setting = str(setting) if isinstance(setting, int) and not isinstance(setting, bool) else setting
            if not _SBATCH_OPTION.fullmatch(str(option)) or not isinstance(setting, str):
                raise refuse(f"option {str(option)[:40]!r} is not an sbatch option name with a text value")
            if not _SBATCH_VALUE.fullmatch(setting):
                raise refuse(f"option {option}: {setting[:40]!r} has characters sbatch options do not need")
            options[option] = setting
        return options
    if name == "setup":  # written by the operator into each job's script, as their own shell lines
        if not isinstance(value, list) or len(value) > 32 or not all(isinstance(line, str) for line in value):
            raise refuse("must be a list of at most 32 shell lines")
        if any("\n" in line or len(line) > 500 for line in value):
            raise refuse("lines must be single lines of at most 500 characters")
        return tuple(value)
    raise refuse("is not a field")  # unreachable: checked_settings refuses unknown names first
