"""The single source of hyperparameters of a run. It is serialised into every checkpoint, so a
file explains itself and a run can be rebuilt from it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

MODEL_NAMES = ("mlp", "conv", "ae", "cvae")
RECON_LOSSES = ("bce", "mse")
KL_ANNEALING = ("none", "linear", "cyclical")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a training run computes."""

    data: str = "mnist-sample"
    image_size: int | None = None  # resize own data to this square size; None keeps the native size
    model: str = "mlp"
    hidden: tuple[int, ...] = (256, 128)  # encoder widths; the decoder mirrors them
    latent_dim: int = 10
    beta: float = 1.0
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 10
    recon: str = "bce"
    learn_variance: bool = False  # Gaussian recon only: learn one log-variance instead of fixing it at 1
    kl_anneal: str = "none"
    kl_warmup_epochs: float = 5.0  # linear: epochs to reach beta; cyclical: length of one cycle
    free_bits: float = 0.0  # nats per latent dimension (Kingma et al. 2016)
    seed: int = 0
    device: str = "auto"
    test_fraction: float = 0.2  # share held out for datasets without an official test split

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first hyperparameter that is out of range."""
        checks = [
            (self.model in MODEL_NAMES, f"model must be one of {', '.join(MODEL_NAMES)}, not {self.model!r}"),
            (self.recon in RECON_LOSSES, f"recon must be one of {', '.join(RECON_LOSSES)}, not {self.recon!r}"),
            (self.kl_anneal in KL_ANNEALING,
             f"kl_anneal must be one of {', '.join(KL_ANNEALING)}, not {self.kl_anneal!r}"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, not {self.device!r}"),
            (2 <= self.latent_dim <= 128, f"latent_dim must be between 2 and 128, not {self.latent_dim}"),
            (len(self.hidden) >= 1 and all(4 <= h <= 4096 for h in self.hidden),
             f"hidden sizes must be 1 or more widths between 4 and 4096, not {list(self.hidden)}"),
            (0.0 <= self.beta <= 1000.0, f"beta must be between 0 and 1000, not {self.beta}"),
            (0.0 < self.lr <= 100.0, f"lr must be above 0 and at most 100, not {self.lr}"),
            (1 <= self.batch_size <= 65536, f"batch_size must be between 1 and 65536, not {self.batch_size}"),
            (1 <= self.epochs <= 100000, f"epochs must be between 1 and 100000, not {self.epochs}"),
            (self.kl_warmup_epochs > 0, f"kl_warmup_epochs must be above 0, not {self.kl_warmup_epochs}"),
            (0.0 <= self.free_bits <= 10.0, f"free_bits must be between 0 and 10 nats, not {self.free_bits}"),
            (0.0 < self.test_fraction < 1.0, f"test_fraction must be between 0 and 1, not {self.test_fraction}"),
            (self.image_size is None or 8 <= self.image_size <= 256,
             f"image_size must be between 8 and 256, not {self.image_size}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def is_variational(self) -> bool:
        return self.model != "ae"

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["hidden"] = list(self.hidden)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a dict (e.g. checkpoint metadata); unknown keys are an error, missing ones default."""
        if not isinstance(values, dict):
            raise ConfigError("config must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        try:
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"config has a value of the wrong type: {error}") from None

