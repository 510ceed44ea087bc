"""The note's claims as experiments: the runs that show each claim, and a finding written from their numbers.

Each experiment trains its runs on the user's data and measures them all the same way.

An experiment is defined once, here, and both the CLI (`experiment NAME`) and the app's
Experiments page run it. Only `train_run` calls into the training engine, so a change of engine is
a change of that one function.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import TrainConfig
from .errors import ConfigError
from .run_ids import is_valid_run_id, new_run_id

if TYPE_CHECKING:
    from .data import ImageDataset
    from .models import VAE

MEASURED_IMAGES = 10_000  # test images the latent metrics look at (all of mnist-sample's 1,000)
COLLAPSE_BETA = 8.0  # strong enough to switch most latent dimensions off within a few epochs
FREE_BITS = 1.0  # nats per dimension in the free-bits arm of `collapse`
BETAS = (0.5, 1.0, 4.0)
# Small batches and a brisk learning rate: enough steps in the few epochs a person waits for that
# the effects show (at batch 128 and lr 1e-3, five epochs of mnist-sample leave the VAE's samples
# too unformed for a classifier to tell them from an autoencoder's).
EXPERIMENT_BATCH_SIZE = 32
EXPERIMENT_LR = 2e-3
# Two shares of 1,000 prior samples differ by chance by about 1 point (the standard error of a
# difference of shares near 5%); a gap of 3 points is one the judge, not chance, saw.
RECOGNISED_GAP = 0.03


@dataclass(frozen=True)
class PlannedRun:
    """One run an experiment trains: a short label for tables and legends, and its config."""

    label: str
    config: TrainConfig


@dataclass(frozen=True)
class RunResult:
    """A trained run as the experiment measured it."""

    label: str
    config: TrainConfig
    metrics: dict  # name -> number (None where it does not apply, e.g. prior_recognised without labels)
    epoch_metrics: tuple[dict, ...]  # the run's per-epoch test metrics, KL per dimension included
    checkpoint: str | None

    def as_dict(self) -> dict:
        return {
            "label": self.label,
            "model": self.config.model,
            "settings": self.config.to_dict(),
            "metrics": self.metrics,
            "checkpoint": self.checkpoint,
            "kl_per_dim_by_epoch": [m.get("kl_per_dim") for m in self.epoch_metrics],
        }


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    claim: str  # the note's claim this experiment shows, in one or two sentences
    plan: Callable[[TrainConfig], tuple[PlannedRun, ...]]  # the runs, from the user's base settings
    compared: tuple[str, ...]  # the metrics shown side by side (keys of METRICS)
    finding: Callable[[Sequence[RunResult]], str]  # one paragraph written from the numbers
    pictures: tuple[str, ...] = ("scatter", "samples")  # what the page draws per run (see the page)

    def runs(self, base: TrainConfig) -> tuple[PlannedRun, ...]:
        return self.plan(base)


@dataclass(frozen=True)
class ExperimentResult:
    experiment: Experiment
    runs: tuple[RunResult, ...]
    finding: str

    @property
    def real_recognised(self) -> float | None:
        """The judge's ceiling (metrics.real_recognised) for an experiment that compares recognised
        prior samples; None for the others and for data without labels."""
        if "prior_recognised" not in self.experiment.compared:
            return None
        return next(
            (run.metrics.get("real_recognised") for run in self.runs if run.metrics.get("real_recognised") is not None),
            None,
        )

    def as_dict(self) -> dict:
        return {
            "experiment": self.experiment.name,
            "claim": self.experiment.claim,
            "runs": [run.as_dict() for run in self.runs],
            "finding": self.finding,
            "real_recognised": self.real_recognised,
        }


# name -> (column title, format); every run gets all of them, each experiment shows its own few.
METRICS: dict[str, tuple[str, str]] = {
    "test_neg_elbo": ("test −ELBO (nats)", "{:,.1f}"),
    "test_recon": ("reconstruction (nats)", "{:,.1f}"),
    "test_kl": ("KL (nats)", "{:,.2f}"),
    "active_units": ("active units", "{:d}"),
    "aggregate_kl": ("aggregate KL (nats)", "{:,.1f}"),
    "prior_recognised": ("prior samples recognised", "{:.0%}"),
    # The judge's ceiling for prior_recognised: the same for every run on the same data.
    "real_recognised": ("real test images recognised", "{:.0%}"),
    "prior_sample_spread": ("spread of prior samples", "{:.3f}"),
    "recon_pixel_error": ("pixel error of reconstructions", "{:.4f}"),
    "codes_used": ("codes used", "{:d}"),  # VQ-VAE only, like the next one
    "codebook_perplexity": ("codebook perplexity", "{:.1f}"),
}


def format_metric(name: str, value) -> str:
    if value is None:
        return "–"
    return METRICS[name][1].format(value)


# -- the one call into the training engine -------------------------------------------------------
def train_run(
    config: TrainConfig, dataset: ImageDataset, out_dir: Path, name: str
) -> tuple[VAE, tuple[dict, ...], Path]:
    """Train `config` to the end, save its checkpoint as `name` into `out_dir`, and return the
    model, its epoch metrics and the checkpoint's path."""
    from .checkpoint import save_trainer_checkpoint
    from .loop import train

    trainer = train(config, dataset)
    run_id = new_run_id()
    path = save_trainer_checkpoint(trainer, run_id, "finished", out_dir / f"{run_id}.safetensors", name=name)
    return trainer.model, tuple(trainer.history.epochs), path


def train_runs_on_slurm(
    configs: Sequence[TrainConfig], names: Sequence[str], out_dir: Path, upload_root: Path | None = None
) -> list[tuple[VAE, tuple[dict, ...], Path]]:
    """Train every config as a SLURM job of its own, through the queue a sweep uses (slurm_executor.py):
    all submitted at once, followed to their ends, then read back from their checkpoints into what
    train_run returns. TrainingError naming the first run that did not finish (after all have ended)."""
    from .checkpoint import load_checkpoint
    from .errors import TrainingError
    from .runs import checkpoint_path
    from .slurm_executor import SlurmQueue

    slurm = SlurmQueue(out_dir, upload_root=upload_root)
    run_ids = slurm.queue(list(configs), names=list(names))
    states = slurm.wait(run_ids)
    trained = []
    for run_id, name in zip(run_ids, names, strict=True):
        if states[run_id].state != "finished":
            raise TrainingError(f"run {name!r} ({run_id}) did not finish on SLURM: {states[run_id].text()}")
        path = checkpoint_path(out_dir, run_id)
        checkpoint = load_checkpoint(path)
        trained.append((checkpoint.build_model(), tuple(checkpoint.state.history.epochs), path))
    return trained


# -- measuring ------------------------------------------------------------------------------------
def measure(model: VAE, dataset: ImageDataset, epoch_metrics: Sequence[dict]) -> dict:
    """Every metric of METRICS for one trained model: the last epoch's test metrics, and what the
    experiments add (latent fill, prior samples, pixel error), all on the CPU."""
    # Imported here, not above: listing the experiments (the CLI's --help and --list) needs no torch.
    from .metrics import (
        active_units,
        aggregate_kl,
        latent_means,
        prior_recognised,
        prior_sample_spread,
        real_recognised,
        reconstruction_pixel_error,
    )

    model = model.cpu().eval()
    last = epoch_metrics[-1] if epoch_metrics else {}
    x = dataset.test_x[:MEASURED_IMAGES]
    y = dataset.test_y[:MEASURED_IMAGES] if dataset.test_y is not None else None
    labels = y if model.conditional else None
    means = latent_means(model, x, labels)
    return {
        "test_neg_elbo": last.get("test_neg_elbo"),
        "test_recon": last.get("test_recon"),
        # Counted again from the KL per dimension, not read: a run written before the one definition
        # (metrics.ACTIVE_KL_NATS) stored a count by another rule.
        "test_kl": last.get("test_kl"),
        "active_units": active_units(last["kl_per_dim"]) if last.get("kl_per_dim") is not None else None,
        "aggregate_kl": aggregate_kl(means),
        "prior_recognised": prior_recognised(model, dataset) if dataset.has_labels else None,
        "real_recognised": real_recognised(dataset) if dataset.has_labels else None,
        "prior_sample_spread": prior_sample_spread(model),
        "recon_pixel_error": reconstruction_pixel_error(model, x, labels),
        **_codebook_metrics(model),
    }


def _codebook_metrics(model: VAE) -> dict:
    """A VQ-VAE's codebook usage; None for the models without a codebook."""
    usage = model.codebook_usage() if hasattr(model, "codebook_usage") else {}
    return {"codes_used": usage.get("codes_used"), "codebook_perplexity": usage.get("perplexity")}


def comparison_rows(result: ExperimentResult) -> list[dict[str, str]]:
    """The experiment's compared metrics, one row per run, formatted for a table."""
    names = result.experiment.compared
    return [
        {"run": run.label, **{METRICS[name][0]: format_metric(name, run.metrics.get(name)) for name in names}}
        for run in result.runs
    ]


def kl_per_dim_by_epoch(run: RunResult) -> dict[str, list[float]]:
    """Each latent dimension's test KL at the end of each epoch ("z0" -> one value per epoch)."""
    rows = [m["kl_per_dim"] for m in run.epoch_metrics if m.get("kl_per_dim") is not None]
    return {f"z{dim}": [row[dim] for row in rows] for dim in range(len(rows[0]))} if rows else {}


def top_dimensions(epoch_metrics: Sequence[dict], latent_dim: int, count: int = 4) -> list[int]:
    """The latent dimensions with the largest test KL at the last epoch, the ones worth traversing
    or exploring (the first ones when the run has no KL to go by, as an autoencoder)."""
    last = epoch_metrics[-1].get("kl_per_dim") if epoch_metrics else None
    if not last or not any(last):
        return list(range(min(count, latent_dim)))
    return sorted(range(len(last)), key=lambda dim: -last[dim])[:count]


# -- running an experiment --------------------------------------------------------------------------
def get(name: str) -> Experiment:
    """The experiment called `name`; ConfigError listing the names otherwise."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def base_config(data: str = TrainConfig.data, epochs: int = 5, device: str = "auto", seed: int = 0) -> TrainConfig:
    """The user's settings every run of an experiment shares; each experiment varies the rest."""
    return TrainConfig(
        data=data, epochs=epochs, device=device, seed=seed, batch_size=EXPERIMENT_BATCH_SIZE, lr=EXPERIMENT_LR
    )


def run_experiment(
    name: str,
    base: TrainConfig,
    dataset: ImageDataset,
    out_dir: str | Path,
    *,
    on_run: Callable[[int, int, PlannedRun], None] | None = None,
    executor: str = "process",
    upload_root: str | Path | None = None,
) -> ExperimentResult:
    """Train every run of experiment `name` (checkpoints into `out_dir`), measure them, and write the
    finding. `on_run(index, count, run)` is told before each run starts. The runs train here one after
    the other, or with `executor` "slurm" as SLURM jobs all at once (`upload_root`: a data file or
    folder the jobs may open); they are measured alike either way."""
    experiment = get(name)
    planned = experiment.runs(base)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    names = [run_name(experiment, run) for run in planned]
    if executor == "slurm":
        for index, run in enumerate(planned):
            if on_run is not None:
                on_run(index, len(planned), run)
        root = Path(upload_root) if upload_root else None
        trained = train_runs_on_slurm([run.config for run in planned], names, folder, root)
    else:
        trained = []
        for index, (run, run_label) in enumerate(zip(planned, names)):
            if on_run is not None:
                on_run(index, len(planned), run)
            trained.append(train_run(run.config, dataset, folder, run_label))
    results = [
        RunResult(run.label, run.config, measure(model, dataset, epochs), epochs, str(path))
        for run, (model, epochs, path) in zip(planned, trained, strict=True)
    ]
    result = ExperimentResult(experiment, tuple(results), experiment.finding(results))
    save_finding(folder, result, [Path(run.checkpoint).stem for run in results])
    return result


def run_name(experiment: Experiment, run: PlannedRun) -> str:
    """How a run of an experiment is called in pickers and legends, e.g. "ae-vs-vae: VAE"."""
    return f"{experiment.name}: {run.label}"


def finding_for(name: str, results: Sequence[RunResult]) -> ExperimentResult:
    """The result of experiment `name` from runs measured elsewhere (the app's queued jobs)."""
    experiment = get(name)
    return ExperimentResult(experiment, tuple(results), experiment.finding(results))


# -- the experiments ----------------------------------------------------------------------------------
def _by_label(results: Sequence[RunResult]) -> dict[str, dict]:
    return {run.label: run.metrics for run in results}


def _nats(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _plan_ae_vs_vae(base: TrainConfig) -> tuple[PlannedRun, ...]:
    return (PlannedRun("AE", base.replace(model="ae")), PlannedRun("VAE", base.replace(model="mlp")))


def _against_ceiling(real: float | None) -> str:
    """The judge's ceiling, said beside the samples' shares (nothing for a result measured before it)."""
    return "" if real is None else f", and {_share(real)} of real test images (the most the judge recognises)"


def _find_ae_vs_vae(results: Sequence[RunResult]) -> str:
    ae, vae = (_by_label(results)[label] for label in ("AE", "VAE"))
    text = f"The AE's aggregate KL is {_nats(ae['aggregate_kl'])} nats against the VAE's {_nats(vae['aggregate_kl'])}: "
    text += (
        "the VAE's codes fill N(0, I), the AE's lie elsewhere. "
        if ae["aggregate_kl"] > vae["aggregate_kl"]
        else "here the AE's codes happen to sit as close to N(0, I) as the VAE's. "
    )
    if ae["prior_recognised"] is None:
        return text + "The dataset has no labels, so no classifier judged the prior samples."
    real = vae.get("real_recognised")
    text += (
        f"The judge recognises {_share(ae['prior_recognised'])} of the AE's prior samples against "
        f"{_share(vae['prior_recognised'])} for the VAE{_against_ceiling(real)}"
    )
    return text + _verdict(vae["prior_recognised"], ae["prior_recognised"], real, "the VAE", "the AE")


def _verdict(share: float, other: float, real: float | None, name: str, other_name: str) -> str:
    """What two shares of recognised prior samples say, read against the judge's ceiling `real`: a
    gap the judge saw (RECOGNISED_GAP), or, when both are far below what it recognises of real
    images, that it cannot tell them apart (it is strict: a blurred but readable digit falls short,
    so the pictures are the better guide then)."""
    if share - other >= RECOGNISED_GAP:
        if real is not None and share < real / 2:
            return (
                f": draws from the prior decode to a recognisable digit more often for {name}, though "
                f"still under half as often as real images are recognised; more epochs sharpen its samples."
            )
        return f": draws from the prior decode to a recognisable digit far more often for {name}."
    if other - share >= RECOGNISED_GAP:
        return (
            f": {other_name}'s samples are recognised more often at this length of training; the claim does "
            f"not show here yet, try more epochs."
        )
    if real is not None and max(share, other) < real / 2:
        return (
            ": both are far below what the judge recognises of real images, so at this length of training "
            "it cannot tell them apart (it passes only sharp digits); the pictures below are the better "
            "guide, and more epochs sharpen them."
        )
    return ": the judge finds them about as recognisable."


def _plan_beta(base: TrainConfig) -> tuple[PlannedRun, ...]:
    return tuple(PlannedRun(f"β={beta:g}", base.replace(model="mlp", beta=beta)) for beta in BETAS)


def _find_beta(results: Sequence[RunResult]) -> str:
    first, last = results[0], results[-1]
    recon = [run.metrics["test_recon"] for run in results]
    kl = [run.metrics["test_kl"] for run in results]
    units = ", ".join(str(run.metrics["active_units"]) for run in results)
    text = (
        f"From {first.label} to {last.label} the reconstruction goes from {_nats(recon[0])} to "
        f"{_nats(recon[-1])} nats and the KL from {_nats(kl[0])} to {_nats(kl[-1])}; active units: {units}. "
    )
    trades = all(a <= b for a, b in itertools.pairwise(recon)) and all(a >= b for a, b in itertools.pairwise(kl))
    if trades:
        return text + "A larger β buys a code closer to the prior with worse reconstructions."
    return text + "The trade is not monotone at this length of training; more epochs make it clearer."


def _plan_collapse(base: TrainConfig) -> tuple[PlannedRun, ...]:
    strong = base.replace(model="mlp", beta=COLLAPSE_BETA)
    return (
        PlannedRun(f"β={COLLAPSE_BETA:g}", strong),
        PlannedRun(
            f"β={COLLAPSE_BETA:g} + KL annealing",
            strong.replace(kl_anneal="linear", kl_warmup_epochs=float(base.epochs)),
        ),
        PlannedRun(f"β={COLLAPSE_BETA:g} + free bits {FREE_BITS:g}", strong.replace(free_bits=FREE_BITS)),
    )


def _find_collapse(results: Sequence[RunResult]) -> str:
    plain, annealed, free_bits = results
    dims = plain.config.latent_dim
    text = (
        f"With {plain.label} alone, {plain.metrics['active_units']} of {dims} latent dimensions stay active "
        f"(KL {_nats(plain.metrics['test_kl'])} nats); with KL annealing {annealed.metrics['active_units']} "
        f"(KL {_nats(annealed.metrics['test_kl'])}); with free bits of {FREE_BITS:g} nat per dimension "
        f"{free_bits.metrics['active_units']} (KL {_nats(free_bits.metrics['test_kl'])}). "
    )
    best = max((annealed, free_bits), key=lambda run: run.metrics["active_units"])
    gained = best.metrics["active_units"] - plain.metrics["active_units"]
    if gained > 0:
        remedy = best.label.split(" + ")[1]
        return text + f"{remedy[0].upper()}{remedy[1:]} kept {gained} more dimension(s) in use."
    return text + "Neither remedy kept more dimensions in use at this length of training."


def _plan_scale_trap(base: TrainConfig) -> tuple[PlannedRun, ...]:
    summed = base.replace(model="mlp")
    return (PlannedRun("pixels summed", summed), PlannedRun("pixels averaged", summed.replace(recon_reduction="mean")))


def _find_scale_trap(results: Sequence[RunResult]) -> str:
    summed, averaged = (_by_label(results)[label] for label in ("pixels summed", "pixels averaged"))
    text = (
        f"Averaging the reconstruction over pixels while summing the KL leaves {averaged['active_units']} "
        f"active units and a KL of {_nats(averaged['test_kl'])} nats, against {summed['active_units']} and "
        f"{_nats(summed['test_kl'])} when both are summed. Its prior samples differ from one another by "
        f"{averaged['prior_sample_spread']:.3f} per pixel against {summed['prior_sample_spread']:.3f}"
    )
    if averaged["prior_sample_spread"] < summed["prior_sample_spread"] / 2:
        return text + ": the posterior has collapsed and every sample looks alike."
    return text + "."


def _plan_mse_vs_bce(base: TrainConfig) -> tuple[PlannedRun, ...]:
    return (
        PlannedRun("BCE", base.replace(model="mlp", recon="bce")),
        PlannedRun("MSE", base.replace(model="mlp", recon="mse")),
    )


def _find_mse_vs_bce(results: Sequence[RunResult]) -> str:
    bce, mse = (_by_label(results)[label] for label in ("BCE", "MSE"))
    text = (
        f"Reconstructions are off by {bce['recon_pixel_error']:.4f} (mean squared pixel error) with BCE and "
        f"{mse['recon_pixel_error']:.4f} with MSE; {bce['active_units']} against {mse['active_units']} active "
        f"units, KL {_nats(bce['test_kl'])} against {_nats(mse['test_kl'])} nats. "
    )
    if mse["test_kl"] < bce["test_kl"] and mse["recon_pixel_error"] > bce["recon_pixel_error"]:
        return text + (
            "A Gaussian of variance 1 treats pixel errors as small against its noise, so the KL "
            "weighs more and the code carries less: blurrier images."
        )
    return text + (
        "At this length of training the Gaussian likelihood has not left the code emptier and the "
        "reconstructions worse than the Bernoulli one."
    )


def _plan_vqvae_vs_vae(base: TrainConfig) -> tuple[PlannedRun, ...]:
    return (PlannedRun("VQ-VAE", base.replace(model="vqvae")), PlannedRun("VAE", base.replace(model="mlp")))


def _find_vqvae_vs_vae(results: Sequence[RunResult]) -> str:
    vq, vae = (_by_label(results)[label] for label in ("VQ-VAE", "VAE"))
    text = (
        f"The VQ-VAE uses {vq['codes_used']} of its {_codebook_size()} codes (perplexity "
        f"{vq['codebook_perplexity']:.1f} per slot). Its reconstructions are off by {vq['recon_pixel_error']:.4f} "
        f"(mean squared pixel error) against {vae['recon_pixel_error']:.4f} for the VAE"
    )
    if vq["prior_recognised"] is None:
        return text + "."
    real = vae.get("real_recognised")
    text += (
        f"; the judge recognises {_share(vq['prior_recognised'])} of its samples, drawn from the learned code "
        f"frequencies, against {_share(vae['prior_recognised'])} of the VAE's{_against_ceiling(real)}"
    )
    if vae["prior_recognised"] - vq["prior_recognised"] >= RECOGNISED_GAP:
        return text + (
            ": a prior that draws each slot's code on its own misses how the codes go together, "
            "which the paper's autoregressive prior learns."
        )
    return text + _verdict(vq["prior_recognised"], vae["prior_recognised"], real, "the VQ-VAE", "the VAE")


def _codebook_size() -> int:
    from .vqvae import CODEBOOK_SIZE

    return CODEBOOK_SIZE


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            "ae-vs-vae",
            "Autoencoder against VAE",
            "An autoencoder cannot generate: its codes do not fill the prior, so a draw from N(0, I) decodes "
            "to garbage. A VAE's KL term pulls the codes onto N(0, I), so every draw decodes to something "
            "plausible.",
            _plan_ae_vs_vae,
            ("test_recon", "aggregate_kl", "prior_recognised"),
            _find_ae_vs_vae,
        ),
        Experiment(
            "beta",
            "β: reconstruction against KL",
            "β weighs the KL against the reconstruction: a larger β gives a code closer to the prior, fewer "
            "active units and blurrier reconstructions; a smaller one the reverse.",
            _plan_beta,
            ("test_recon", "test_kl", "active_units"),
            _find_beta,
            pictures=("samples", "traversals"),
        ),
        Experiment(
            "collapse",
            "Posterior collapse and its remedies",
            "When the KL's pull is strong, latent dimensions collapse to the prior and carry nothing. KL "
            "annealing (β rising from 0) and free bits (a floor under each dimension's KL) keep them in use.",
            _plan_collapse,
            ("test_kl", "active_units", "test_recon"),
            _find_collapse,
            pictures=("kl_over_training", "samples"),
        ),
        Experiment(
            "scale-trap",
            "The scale trap: averaged against summed pixels",
            "Averaging the reconstruction over the pixels while summing the KL is training with β equal to "
            "the pixel count: the posterior collapses and every sample looks alike.",
            _plan_scale_trap,
            ("test_kl", "active_units", "prior_sample_spread"),
            _find_scale_trap,
        ),
        Experiment(
            "mse-vs-bce",
            "MSE against BCE",
            "The reconstruction term is a likelihood: Bernoulli (BCE) or Gaussian (MSE). With variance 1 a "
            "Gaussian barely penalises pixel errors of size 0.1, so the KL dominates and images blur.",
            _plan_mse_vs_bce,
            ("recon_pixel_error", "test_kl", "active_units"),
            _find_mse_vs_bce,
        ),
        Experiment(
            "vqvae-vs-vae",
            "VQ-VAE against VAE",
            "A VQ-VAE replaces the Gaussian latent with a learned codebook of discrete vectors and learns a "
            "prior over the codes apart; how good its samples are depends on that prior.",
            _plan_vqvae_vs_vae,
            ("recon_pixel_error", "prior_recognised", "codes_used", "codebook_perplexity"),
            _find_vqvae_vs_vae,
        ),
    )
}


# -- "Is my number good?": a run's test bound beside published and project references ---------------
@dataclass(frozen=True)
class Reference:
    source: str
    data: str
    model: str
    value: float  # nats per test image
    bound: str  # "−ELBO" or "IWAE k=…"
    differs: str = ""  # what sets it apart from a run of this studio, beyond the data


# Burda, Grosse and Salakhutdinov 2016, "Importance Weighted Autoencoders", Table 1 (one stochastic
# layer): two deterministic layers of 200 tanh units, 50 latent units, 3,280 passes over the data.
PUBLISHED = (
    Reference(
        "Burda et al. 2016, Table 1",
        "binarised MNIST (60,000 training images)",
        "VAE, 1 stochastic layer",
        86.76,
        "−log p(x), k=5,000",
        "binary pixels; 200-200 tanh, z=50; 3,280 epochs; trained with k=1",
    ),
    Reference(
        "Burda et al. 2016, Table 1",
        "binarised MNIST (60,000 training images)",
        "IWAE k=50, 1 stochastic layer",
        84.78,
        "−log p(x), k=5,000",
        "binary pixels; 200-200 tanh, z=50; 3,280 epochs; trained with k=50",
    ),
)

# A quality row of bench/RESULTS.md: "| Test -ELBO, nats (mnist-sample, mlp, 20 epochs; ...) | target | 137.80 ..."
_BENCH_ROW = re.compile(
    r"^\|\s*(?P<bound>Test -ELBO|IWAE bound), nats \((?P<data>[^,()]+), (?P<model>[\w-]+), "
    r"(?P<epochs>\d+) epochs; (?P<evaluation>[^)]*)\)\s*\|[^|]*\|\s*(?P<value>[\d,]+\.\d+)"
)


def bench_references(results_markdown: str) -> list[Reference]:
    """The project's reference runs, read from the text of bench/RESULTS.md (written by `make bench`);
    rows it cannot read are skipped, so a changed layout gives fewer rows, never an error."""
    references = []
    for line in results_markdown.splitlines():
        match = _BENCH_ROW.match(line.strip())
        if match is None:
            continue
        bound = "−ELBO" if match["bound"] == "Test -ELBO" else "IWAE " + match["evaluation"].split(" on ")[0]
        references.append(
            Reference(
                "this project, make bench",
                match["data"].strip(),
                match["model"],
                float(match["value"].replace(",", "")),
                bound,
                f"{match['epochs']} epochs; {match['evaluation'].strip()}",
            )
        )
    return references


MAX_BENCH_RESULTS_BYTES = 1 << 20


def bench_references_in(path: str | Path) -> list[Reference]:
    """bench_references of the file `path` (bench/RESULTS.md), read by the safe reader; none when it is
    missing or unreadable (a checkout without benchmarks, a file swapped for a FIFO)."""
    from .safe_files import UnreadableFile, read_regular_file

    try:
        return bench_references(read_regular_file(path, MAX_BENCH_RESULTS_BYTES).decode(errors="replace"))
    except UnreadableFile:
        return []


def what_differs(config: TrainConfig, train_images: int, epochs_done: int) -> list[str]:
    """What sets a run of this studio apart from Burda et al.'s one-layer VAE, so its number is read
    with the right expectation."""
    hidden = "-".join(str(width) for width in config.hidden)
    notes = [f"data: {config.data}, {train_images:,} training images, against binarised MNIST's 60,000"]
    if config.recon == "bce":
        notes.append(
            "pixels: grey levels under a Bernoulli likelihood, against binary pixels; grey levels "
            "cost nats no model can save, so the same model scores higher here"
        )
    else:
        notes.append(
            "likelihood: a Gaussian on grey levels, in other units than a Bernoulli on binary pixels: "
            "not comparable at all"
        )
    notes.append(f"architecture: {config.model} {hidden}, z={config.latent_dim}, against 200-200 tanh, z=50")
    notes.append(f"training: {epochs_done} epoch(s), against 3,280 passes over the data")
    notes.append(
        "bound: the test −ELBO is a one-sample bound; the published figures estimate −log p(x) with "
        "k=5,000 importance samples, which is lower"
    )
    return notes


# -- the latest findings of each experiment, kept beside its runs so they survive a restart ---------
FINDINGS_FOLDER = "experiment-findings"  # inside a run folder; run listings only look at its files
MAX_FINDING_BYTES = 64_000
MAX_FINDING_CHARS = 4000
# Raised when a finding's words or fields change meaning: a finding saved under an older version is passed over.
# 2: "active" is metrics.ACTIVE_KL_NATS (KL per dimension), no longer the variance of the means.
# 3: a finding about recognised prior samples carries the judge's ceiling (real_recognised), and says it.
FINDING_VERSION = 3


@dataclass(frozen=True)
class SavedFinding:
    """A finding written for an experiment in a run folder, and the runs it was measured on."""

    experiment: str
    finding: str
    saved: str  # when, as an ISO 8601 time
    runs: tuple[tuple[str, str], ...]  # (label, run id) of each run, in the experiment's order
    real_recognised: float | None = None  # the judge's ceiling, for a finding about recognised samples
    owner: str | None = None  # whose it is when the app is served (an owner id); None: a shared one


def finding_path(folder: str | Path, name: str, owner: str | None = None) -> Path:
    """Where `owner`'s latest finding of experiment `name` is kept in run folder `folder`: one file per
    experiment and owner (a shared one, owner None, as <name>.json), so that served to several people,
    one person's finding never replaces another's. So at most one file per experiment and person."""
    from .checkpoint_fields import is_valid_owner

    if owner is not None and not is_valid_owner(owner):
        raise ValueError(f"not an owner id: {owner[:40]!r}")
    return Path(folder) / FINDINGS_FOLDER / (f"{name}.json" if owner is None else f"{name}.{owner}.json")


def save_finding(
    folder: str | Path, result: ExperimentResult, run_ids: Sequence[str], *, owner: str | None = None
) -> None:
    """Keep `result`'s finding as `owner`'s latest of its experiment in run folder `folder` (owner: the
    owner id of the person who measured it, served; None: a shared finding, the CLI's or one person's
    app's), with the ids of the runs it was measured on. The file is named after the experiment and the
    owner (names of ours, never read from a file) and written atomically; an unchanged finding is not
    written again."""
    import json
    import time

    from .atomic_files import write_atomically

    name = result.experiment.name
    target = finding_path(folder, name, owner)
    runs = [[run.label, run_id] for run, run_id in zip(result.runs, run_ids, strict=True)]
    saved = _read_finding(Path(folder), name, owner)
    if (
        saved is not None
        and saved[0].finding == result.finding
        and [list(r) for r in saved[0].runs] == runs
        and saved[0].real_recognised == result.real_recognised
    ):
        return
    record = {
        "experiment": name,
        "version": FINDING_VERSION,
        "finding": result.finding,
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs": runs,
        "real_recognised": result.real_recognised,
        "owner": owner,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, json.dumps(record, ensure_ascii=False).encode())


def latest_findings(
    folder: str | Path,
    *,
    owners: Sequence[str | None] | None = None,
    visible: Callable[[str], bool] | None = None,
) -> dict[str, SavedFinding]:
    """The latest finding of each experiment saved in run folder `folder` whose runs are all still there
    (a finding about deleted runs is not shown) and all `visible` (a run id -> whether the reader may
    see it; None: every run): among the findings of `owners` (None among them: the shared ones), or of
    everyone when `owners` is None. So a later finding of someone else's hides nobody's own. A file that
    is not one `save_finding` could have written (too big, not JSON, fields of other types or sizes) is
    passed over: it is only a cache of what the runs would show again if measured."""
    found = {}
    for name in EXPERIMENTS:
        for saved in saved_findings(folder, name, owners):
            if visible is None or all(visible(run_id) for _, run_id in saved.runs):
                found[name] = saved
                break
    return found


def saved_findings(folder: str | Path, name: str, owners: Sequence[str | None] | None = None) -> list[SavedFinding]:
    """Experiment `name`'s readable findings in run folder `folder`, the most recently saved first: those
    of `owners`, or of everyone (every owner with a file there, and the shared one) when None."""
    folder = Path(folder)
    if owners is None:
        owners = [None, *_owners_with_findings(folder, name)]
    read = [_read_finding(folder, name, owner) for owner in dict.fromkeys(owners)]
    return [saved for saved, _ in sorted(filter(None, read), key=lambda found: found[1], reverse=True)]


def _owners_with_findings(folder: Path, name: str) -> list[str]:
    from .checkpoint_fields import is_valid_owner

    prefix, suffix = f"{name}.", ".json"
    try:
        names = [entry.name for entry in (folder / FINDINGS_FOLDER).iterdir()]
    except OSError:
        return []
    owners = [file[len(prefix) : -len(suffix)] for file in names if file.startswith(prefix) and file.endswith(suffix)]
    return sorted(owner for owner in owners if is_valid_owner(owner))


def _read_finding(folder: Path, name: str, owner: str | None) -> tuple[SavedFinding, int] | None:
    """`owner`'s finding of experiment `name` and when its file was written (ns), None when there is
    none that save_finding could have written."""
    from .safe_files import UnreadableFile, file_version, read_record

    path = finding_path(folder, name, owner)
    try:
        written = file_version(path)[1]
        saved = read_record(path, MAX_FINDING_BYTES, None, functools.partial(_finding_of, folder, name, owner))
    except UnreadableFile:
        return None
    return saved, written


def _finding_of(folder: Path, name: str, owner: str | None, record: dict, file_name: str) -> SavedFinding:
    """The finding in `record` when save_finding could have written it for `owner`'s experiment `name`
    and its runs are all still in `folder`; FieldError otherwise."""
    from .checkpoint_fields import text
    from .safe_files import FieldError

    pairs = record.get("runs")
    if not isinstance(pairs, list) or not all(isinstance(pair, list) and len(pair) == 2 for pair in pairs):
        raise FieldError("its runs are not (label, run id) pairs")
    runs = tuple((text(label, "label", 200), run_id) for label, run_id in pairs)
    real = record.get("real_recognised")
    if real is not None and not (type(real) in (int, float) and 0 <= real <= 1):
        raise FieldError("its real_recognised is not a share")
    # The labels become headings and chart titles: only the experiment's own ones are taken.
    planned = [run.label for run in EXPERIMENTS[name].runs(TrainConfig())]
    if (
        record.get("experiment") != name
        or record.get("version") != FINDING_VERSION
        or [label for label, _ in runs] != planned
    ):
        raise FieldError(f"it is no finding of {name}")
    if record.get("owner") != owner:  # a file renamed from another person's name is not theirs
        raise FieldError("it is someone else's")
    if not all(is_valid_run_id(run_id) and (folder / f"{run_id}.safetensors").is_file() for _, run_id in runs):
        raise FieldError("a run it was measured on is gone")
    return SavedFinding(
        name,
        text(record.get("finding"), "finding", MAX_FINDING_CHARS),
        text(record.get("saved"), "saved", 40),
        runs,
        None if real is None else float(real),
        owner,
    )
