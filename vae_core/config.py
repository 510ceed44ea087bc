"""The single source of hyperparameters of a run, and the one home of every default and bound.

A `TrainConfig` is serialised into every checkpoint, so a file explains itself and a run can be
rebuilt from it. The CLI, the app and the job read their defaults and limits from here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

MODEL_NAMES = ("mlp", "conv", "ae", "cvae", "vqvae")
# Here rather than in models.py (which needs torch), so a form can list the models before torch loads.
MODEL_DESCRIPTIONS = {
    "mlp": "MLP VAE (the note's 784-256-128-z model)",
    "conv": "Convolutional VAE (28x28 and larger, grayscale or RGB)",
    "ae": "Plain autoencoder (no sampling, no KL): cannot generate",
    "cvae": "Conditional VAE (encoder and decoder see the label)",
    "vqvae": "VQ-VAE (a codebook of discrete codes and a learned prior over them)",
}
# The models with a Gaussian latent and a KL in their loss (their classes' `variational`, which a unit
# test checks against this): here too, so a page tells an ELBO from a plain loss before torch loads.
VARIATIONAL_MODELS = ("mlp", "conv", "cvae")
RECON_LOSSES = ("bce", "mse")
RECON_REDUCTIONS = ("sum", "mean")
KL_ANNEALING = ("none", "linear", "cyclical")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16")  # bf16: autocast of forward and loss, fp32 master weights (speed.py)

# Layer widths by model: the note's 784-256-128 MLP; for `conv`, the channels of its two layers.
DEFAULT_HIDDEN = {"mlp": (256, 128), "ae": (256, 128), "cvae": (256, 128), "vqvae": (256, 128), "conv": (32, 64)}
WIDTH_RANGE = (4, 4096)

# THE definition of an active latent dimension, for every count and chart of the studio (Train's and
# Theory's KL bars, `active_units` in eval/inspect, the experiments' findings, the bench): dimension d
# is active when its KL(q(z_d|x) || N(0, 1)), averaged over the test images, is at least
# ACTIVE_KL_NATS; else it has collapsed to the prior. Why the KL, not Burda et al.'s variance of the
# means (> 0.01): the average KL bounds the information I(x; z_d) a dimension can carry about the
# image, and it is the number the bars show, so a count and its chart cannot disagree (with the
# variance, a beta=8 run counted 8 of 10 dimensions "active" while 8 bars carried <= 0.04 nats).
# Why 0.05 nats (0.07 bits): below it a dimension tells the decoder less than a tenth of a coin
# flip about an image, which is noise; a dimension in use carries a tenth of a nat or more (that
# beta=8 run: z2 0.955 and z6 0.13 nats, every other one <= 0.04).
ACTIVE_KL_NATS = 0.05


@dataclass(frozen=True)
class Bound:
    """The allowed range of a number; an open end excludes that value itself."""

    low: float
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False

    def check(self, name: str, value: float) -> None:
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        if not (above and below):
            raise ConfigError(f"{name} must be {self.describe()}, not {value}")

    def describe(self) -> str:
        if self.high == math.inf:
            return f"{'above' if self.open_low else 'at least'} {self.low:g}"
        if self.open_low and self.open_high:
            return f"strictly between {self.low:g} and {self.high:g}"
        if self.open_low:
            return f"above {self.low:g} and at most {self.high:g}"
        return f"between {self.low:g} and {self.high:g}"


@dataclass(frozen=True)
class Limits:
    """What one run, and one request, may cost, and what the server may keep: the run limits are checked
    where a run is created, whichever door it comes in by (the Train form, `train`, `sweep`, `experiment`,
    the sweep form, the experiments, a resume), before anything is allocated; the byte budgets bound
    what the server holds between requests. Whoever runs the server may raise (or lower) each one with
    an environment variable, VAE_STUDIO_<NAME IN CAPITALS>; a request never can."""

    max_parameters: int = 100_000_000  # 400 MB of float32 weights, 1.2 GB with Adam's moments
    max_activation_floats: int = 1 << 28  # what one batch's forward pass keeps for backward: 1 GiB
    max_hidden_layers: int = 16
    max_epochs: int = 1_000
    max_runs_per_request: int = 64  # a sweep, an experiment
    max_queued_per_person: int = 128  # runs waiting in the queue, per owner (served) or in all (local)
    # Kept in memory between requests, weighed by the bytes of their arrays and tensors (byte_cache.py),
    # the least recently used dropped first. A 190 MB upload (8 M history rows) weighs about 200 MB.
    checkpoint_cache_bytes: int = 1 << 30  # checkpoints read from files, and the models built to draw them
    dataset_cache_bytes: int = 1 << 30  # datasets; fashion-mnist weighs 220 MB
    projection_cache_bytes: int = 256 << 20  # the Latent page's scatters (latent means and their projections)
    # Served: the checkpoints one person has uploaded, kept as runs of theirs in the checkpoints folder.
    max_upload_bytes_per_person: int = 1 << 30


def limits() -> Limits:
    """The limits in force: the defaults, with the environment's overrides (ConfigError names a bad one)."""
    import os

    values = {}
    for field in dataclasses.fields(Limits):
        variable = f"VAE_STUDIO_{field.name.upper()}"
        text = os.environ.get(variable)
        if text is None:
            continue
        try:
            values[field.name] = int(text)
        except ValueError:
            raise ConfigError(f"{variable} must be a whole number, not {text!r}") from None
        if values[field.name] < 1:
            raise ConfigError(f"{variable} must be at least 1, not {text}")
    return Limits(**values)


def check_creatable(config: TrainConfig) -> None:
    """The limits a new run's config must keep (a checkpoint read back need not: it was made already).
    The model's size is checked on its shapes by trainer.check_trainable, which calls this first."""
    limit = limits()
    if len(config.hidden) > limit.max_hidden_layers:
        raise ConfigError(
            f"a model has at most {limit.max_hidden_layers} hidden layers (VAE_STUDIO_MAX_HIDDEN_LAYERS), "
            f"not {len(config.hidden):,}"
        )
    if config.epochs > limit.max_epochs:
        raise ConfigError(
            f"a run has at most {limit.max_epochs:,} epochs (VAE_STUDIO_MAX_EPOCHS), not {config.epochs:,}"
        )


BOUNDS = {
    "latent_dim": Bound(2, 128),
    "beta": Bound(0.0, 1000.0),
    "lr": Bound(0.0, 100.0, open_low=True),
    "batch_size": Bound(1, 65536),
    "epochs": Bound(1, 100000),
    "kl_warmup_epochs": Bound(0.0, open_low=True),
    "free_bits": Bound(0.0, 10.0),
    "test_fraction": Bound(0.0, 1.0, open_low=True, open_high=True),
    "image_size": Bound(8, 256),
    "threads": Bound(1, 1024),
}


def check_lr(lr: float) -> float:
    """`lr` as a float, or ConfigError when it is out of range (a change while training, too)."""
    BOUNDS["lr"].check("lr", lr)
    return float(lr)


def check_beta(beta: float) -> float:
    BOUNDS["beta"].check("beta", beta)
    return float(beta)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a training run computes."""

    data: str = "mnist-sample"
    image_size: int | None = None  # resize own data to this square size; None keeps the native size
    model: str = "mlp"
    hidden: tuple[int, ...] | None = None  # encoder widths (decoder mirrors); None: DEFAULT_HIDDEN[model]
    latent_dim: int = 10
    beta: float = 1.0
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 10
    recon: str = "bce"
    # "mean" averages the reconstruction over pixels while the KL stays summed: the scale trap the
    # losses module explains, kept as an option so the experiments can show what it does.
    recon_reduction: str = "sum"
    learn_variance: bool = False  # Gaussian recon only: learn one log-variance instead of fixing it at 1
    kl_anneal: str = "none"
    kl_warmup_epochs: float = 5.0  # linear: epochs to reach beta; cyclical: length of one cycle
    free_bits: float = 0.0  # nats per latent dimension (Kingma et al. 2016)
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"  # it changes the numbers a run computes, so it is kept with the run
    # CPU threads of a training step. The float sums a step computes depend on how many threads share
    # them, so the count a run used is kept with it: same seed and same count, same numbers (and an
    # exact resume). None: chosen when the run starts (threads.py), then recorded here.
    threads: int | None = None
    test_fraction: float = 0.2  # share held out for datasets without an official test split

    def __post_init__(self) -> None:
        hidden = DEFAULT_HIDDEN.get(self.model, DEFAULT_HIDDEN["mlp"]) if self.hidden is None else self.hidden
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first hyperparameter that is out of range."""
        for name, choices in (
            ("model", MODEL_NAMES),
            ("recon", RECON_LOSSES),
            ("recon_reduction", RECON_REDUCTIONS),
            ("kl_anneal", KL_ANNEALING),
            ("device", DEVICES),
            ("precision", PRECISIONS),
        ):
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {getattr(self, name)!r}")
        low, high = WIDTH_RANGE
        if not self.hidden or not all(low <= h <= high for h in self.hidden):
            raise ConfigError(
                f"hidden sizes must be 1 or more widths between {low} and {high}, not "
                f"{list(self.hidden[:8])}{' …' if len(self.hidden) > 8 else ''}"
            )
        for name, bound in BOUNDS.items():
            value = getattr(self, name)
            if value is not None:
                bound.check(name, value)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["hidden"] = list(self.hidden)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
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


# How each hyperparameter reads in a run's name when it differs from its default.
_NAME_PARTS = {
    "data": lambda v: Path(v).name[:24],
    "image_size": lambda v: f"{v}px",
    "hidden": lambda v: "h" + "-".join(map(str, v)),
    "lr": lambda v: f"lr {v:g}",
    "batch_size": lambda v: f"bs {v}",
    "recon": str,
    "recon_reduction": lambda v: f"recon {v} over pixels",
    "learn_variance": lambda v: "learned σ",
    "kl_anneal": lambda v: f"{v} anneal",
    "kl_warmup_epochs": lambda v: f"warm-up {v:g}",
    "free_bits": lambda v: f"free bits {v:g}",
    "seed": lambda v: f"seed {v}",
    "precision": str,
}


def default_run_name(config: TrainConfig) -> str:
    """A readable name from what sets the run apart: model, latent size and β, then each other
    hyperparameter that differs from its default, e.g. "mlp z10 β4" or "conv z16 β1 lr 0.01 mse"."""
    defaults = TrainConfig(model=config.model)
    parts = [config.model, f"z{config.latent_dim}", f"β{config.beta:g}"]
    parts += [
        describe(getattr(config, field))
        for field, describe in _NAME_PARTS.items()
        if getattr(config, field) != getattr(defaults, field)
    ]
    return " ".join(parts)
