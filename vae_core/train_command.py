"""`vae-studio train`: its flags defined once as data, the TrainConfig they make, and the run it trains.

`TRAIN_FLAGS`: the CLI's parser is built from them and `sweep` reads them.

Both cli.py and sweep.py import this module; it imports neither.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .atomic_files import output_folder
from .config import (
    DEFAULT_HIDDEN,
    DEVICES,
    KL_ANNEALING,
    MODEL_NAMES,
    PRECISIONS,
    RECON_LOSSES,
    TrainConfig,
    default_run_name,
)
from .errors import VAEStudioError
from .runs import CHECKPOINTS_ENV, ProgressWriter, default_checkpoint_dir

DEFAULTS = TrainConfig()
CONFIG_FIELDS = frozenset(field.name for field in dataclasses.fields(TrainConfig))


@dataclass(frozen=True)
class TrainFlag:
    """One flag of `train`: its option and the keyword arguments of argparse's add_argument. A flag
    of a TrainConfig field that takes a value and names no default has the field's default."""

    option: str  # "--latent-dim"
    settings: dict

    @property
    def dest(self) -> str:
        """The attribute of the parsed arguments: "--latent-dim" -> "latent_dim"."""
        return self.option.removeprefix("--").replace("-", "_")

    @property
    def is_switch(self) -> bool:
        """A flag that takes no value (--quiet)."""
        return self.settings.get("action") == "store_true"

    @property
    def arguments(self) -> dict:
        """add_argument's keyword arguments: `settings`, and TrainConfig's default where they name none."""
        if self.dest in CONFIG_FIELDS and not self.is_switch and "default" not in self.settings:
            return {**self.settings, "default": getattr(DEFAULTS, self.dest)}
        return self.settings


TRAIN_FLAGS: tuple[TrainFlag, ...] = (
    TrainFlag(
        "--data",
        dict(
            default=None,
            help=f"dataset name (see `datasets`) or a .npz/.zip/.csv/folder (default {DEFAULTS.data}; "
            "with --resume: the checkpoint's data, which must be a built-in dataset unless you "
            "name its file here)",
        ),
    ),
    TrainFlag("--image-size", dict(type=int, default=None, help="resize images to this square size")),
    TrainFlag("--download", dict(action="store_true", help="download mnist/fashion-mnist/kmnist if missing")),
    TrainFlag("--model", dict(choices=MODEL_NAMES)),
    TrainFlag(
        "--hidden",
        dict(
            type=int,
            nargs="+",
            default=None,
            help="encoder widths (decoder mirrors), e.g. --hidden 400; conv: channels "
            f"(default: {', '.join(f'{m} {list(h)}' for m, h in DEFAULT_HIDDEN.items())})",
        ),
    ),
    TrainFlag("--latent-dim", dict(type=int)),
    TrainFlag("--beta", dict(type=float)),
    TrainFlag("--lr", dict(type=float)),
    TrainFlag("--batch-size", dict(type=int, help="images per step over all processes (torchrun: each its share)")),
    TrainFlag("--epochs", dict(type=int, help="total epochs, resumed ones included")),
    TrainFlag("--recon", dict(choices=RECON_LOSSES)),
    TrainFlag("--learn-variance", dict(action="store_true", help="mse: learn the Gaussian's variance")),
    TrainFlag("--kl-anneal", dict(choices=KL_ANNEALING)),
    TrainFlag("--kl-warmup-epochs", dict(type=float)),
    TrainFlag("--free-bits", dict(type=float, help="nats per latent dimension")),
    TrainFlag("--seed", dict(type=int)),
    TrainFlag("--device", dict(choices=DEVICES)),
    TrainFlag("--precision", dict(choices=PRECISIONS, help="bf16: forward and loss in bfloat16, weights float32")),
    TrainFlag(
        "--threads",
        dict(
            type=int,
            default=None,
            help="CPU threads of a training step (default: $VAE_STUDIO_TORCH_THREADS, else 1, or 1 per free core "
            "if timed faster now). Kept with the run: the float sums, so the numbers, "
            "depend on it; a resumed run keeps its own",
        ),
    ),
    TrainFlag(
        "--compile", dict(action="store_true", help="torch.compile the model (the first steps pay the compile time)")
    ),
    TrainFlag("--test-fraction", dict(type=float)),
    TrainFlag(
        "--name", dict(default=None, help="the run's name (default: from what sets it apart, e.g. 'mlp z10 β4')")
    ),
    TrainFlag(
        "--out",
        dict(
            default=None,
            help="checkpoint to write, at every epoch end and when the run ends (default <out dir>/<run id>.safetensors)",
        ),
    ),
    TrainFlag(
        "--out-dir",
        dict(
            default=None,
            help=f"folder of the checkpoint when --out is not given (default: ${CHECKPOINTS_ENV}, else ./checkpoints)",
        ),
    ),
    TrainFlag(
        "--resume", dict(default=None, help="continue the run in this checkpoint (exactly: as if it had never stopped)")
    ),
    TrainFlag("--quiet", dict(action="store_true", help="no progress bar")),
)


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of `train` on `parser`."""
    for flag in TRAIN_FLAGS:
        parser.add_argument(flag.option, **flag.arguments)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed `train` flags; ConfigError naming a value out of range."""
    values = {flag.dest: getattr(args, flag.dest) for flag in TRAIN_FLAGS if flag.dest in CONFIG_FIELDS}
    values.update(data=args.data or DEFAULTS.data, hidden=tuple(args.hidden) if args.hidden else None)
    return TrainConfig(**values)


def progress_bar(total: int, quiet: bool, unit: str):
    """A progress bar on stderr, or None when `quiet`."""
    if quiet:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)


def load_config_data(config: TrainConfig, download: bool = False):
    """The dataset `config` names, split by its test fraction and seed."""
    from .data import load_dataset

    return load_dataset(
        config.data,
        image_size=config.image_size,
        test_fraction=config.test_fraction,
        seed=config.seed,
        download=download,
    )


def cmd_train(args: argparse.Namespace) -> dict:
    """Train; under torchrun, as one of its processes (distributed.py), leaving its group at the end."""
    from .distributed import leave, torchrun_launch

    launch = torchrun_launch()
    try:
        return _train(args, launch)
    finally:
        leave()


def _train(args: argparse.Namespace, launch) -> dict:
    import torch

    from .checkpoint import checkpoint_dataset, load_checkpoint, save_trainer_checkpoint
    from .device import resolve_device
    from .distributed import distribute, first_on_each_node, join
    from .loop import Hooks, run_to_end
    from .own_threads import use_threads
    from .run_ids import new_run_id
    from .speed import compiled
    from .threads import run_threads, thread_override
    from .trainer import Trainer

    config, state, run_id, name, labels = config_from_args(args), None, new_run_id(), args.name, {}
    if args.resume:
        previous = load_checkpoint(args.resume)
        config = previous.config.replace(epochs=args.epochs)
        state, labels = previous.state, previous.labels()
        run_id = resumed_run_id(Path(args.resume), args)
        name = name or labels.pop("name")
    name = name or default_run_name(config)
    device = join(launch, config.device) if launch else None
    with first_on_each_node(launch):
        # A resumed run's data reference comes from its file: only a built-in dataset or the --data
        # the user names here is opened (checkpoint_dataset), never a path the file chooses.
        dataset = (
            checkpoint_dataset(previous, data=args.data, download=args.download)
            if args.resume
            else load_config_data(config, args.download)
        )
    if launch:
        use_threads(thread_override(), device)  # each process's own (torchrun sets one thread by default)
    elif resolve_device(config.device).type == "cpu":
        # The run's own count (resumed, or --threads), else the variable's, else the load's (threads.py);
        # then kept with the run, since its numbers depend on it.
        use_threads(run_threads(config, dataset, torch.device("cpu"))[0], torch.device("cpu"))
        config = config.replace(threads=torch.get_num_threads())
    trainer = Trainer(config, dataset, state=state, device=device)
    if launch:
        distribute(trainer, launch)
    if args.compile:
        trainer.forward_model = compiled(trainer.forward_model)
    writes = launch is None or launch.writes  # of torchrun's processes, rank 0 alone writes
    out = Path(args.out) if args.out else Path(args.out_dir or default_checkpoint_dir()) / f"{run_id}.safetensors"
    if writes:
        output_folder(out.parent)
    bar = progress_bar(trainer.total_steps, args.quiet or not writes, "step")
    progress = ProgressWriter(out, trainer, run_id=run_id, name=name, dataset=dataset.name) if writes else None

    def save(status: str) -> None:  # atomic: a kill mid-save leaves the previous file whole
        # Under torchrun the other processes would have to join a flush of unflushed steps (an
        # interrupted run): its last epoch's checkpoint stays, as for a killed run.
        if writes and not (launch and trainer.pending_steps):
            save_trainer_checkpoint(trainer, run_id, status, out, name=name, **labels)

    def show_progress(trainer: Trainer) -> None:
        if progress is not None:
            progress.update(trainer)
        if bar is not None:
            bar.update(trainer.step - bar.n)

    def end_epoch(trainer: Trainer, metrics: dict) -> None:
        # Every epoch, so a killed run loses at most the epoch in progress and `--resume` goes on.
        save("finished" if trainer.finished else "running")
        if progress is not None:
            progress.epoch_end(trainer, metrics)
        if bar is not None:
            bar.set_postfix(epoch=trainer.epoch, test_neg_elbo=f"{metrics['test_neg_elbo']:.2f}")

    def between_steps(trainer: Trainer) -> bool:
        show_progress(trainer)  # the step count and heartbeat move on between flushes (no device sync)
        return True

    show_progress(trainer)
    hooks = Hooks(after_flush=show_progress, after_epoch=end_epoch, flush_steps=100, flush_seconds=0.5)
    if launch:
        # Processes flush together (a flush adds up their losses), so by step count, never by their
        # clocks; the progress record keeps its pace by being updated between steps.
        hooks = replace(hooks, before_step=between_steps, flush_seconds=None)
    started, first_step, status = time.perf_counter(), trainer.step, "stopped"  # until it ends well
    try:
        run_to_end(trainer, hooks)
        status = "finished"
    except VAEStudioError:
        status = "failed"
        raise
    finally:
        elapsed = time.perf_counter() - started
        if bar is not None:
            bar.close()
        if status != "finished" or first_step == trainer.step:  # else the last epoch end saved it
            save(status)
        if progress is not None:
            progress.close(trainer, status)
    last = trainer.history.epochs[-1] if trainer.history.epochs else {}
    curves = trainer.history.curves()
    tail = slice(max(0, len(curves) - trainer.steps_per_epoch), None)
    steps_run = trainer.step - first_step
    return {
        "checkpoint": str(out),
        "run_id": run_id,
        "name": name,
        "epochs": trainer.epoch,
        "steps": trainer.step,
        "train_loss": _mean(curves.total[tail]),
        "recon": _mean(curves.recon[tail]),
        "kl": _mean(curves.kl[tail]),
        "test_neg_elbo": last.get("test_neg_elbo"),
        "test_recon": last.get("test_recon"),
        "test_kl": last.get("test_kl"),
        "active_units": last.get("active_units"),
        "samples_per_s": steps_run * config.batch_size / elapsed if elapsed > 0 and steps_run else None,
        "seconds": elapsed,
        "device": str(trainer.device),
        "world_size": trainer.world_size,
        "precision": config.precision,
        "compiled": args.compile,
    }


def resumed_run_id(resumed: Path, args: argparse.Namespace) -> str:
    """The id a resumed run goes on under: its file's name, never the id written inside it (which a
    crafted file could set to another run's). A file of the checkpoints folder goes on in place; one
    from elsewhere becomes a run of the folder, under a new id when its name is no run id or is
    another run's there."""
    from .run_ids import is_valid_run_id, new_run_id

    run_id = resumed.name.removesuffix(".safetensors")
    if not is_valid_run_id(run_id):
        return new_run_id()
    if not args.out:
        target = Path(args.out_dir or default_checkpoint_dir()) / f"{run_id}.safetensors"
        if target.exists() and not target.samefile(resumed):
            return new_run_id()
    return run_id


def _mean(values) -> float | None:
    return float(values.mean()) if len(values) else None
