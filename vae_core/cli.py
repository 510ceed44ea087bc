"""`vae-studio train|eval|inspect|datasets|runs|sweep|experiment|app` (also `python -m vae_core ...`).

`train` and `eval` print, as their last stdout line, one JSON object with the results, so scripts
and benchmarks can read them. Any input error exits 2 with a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
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
from .experiment_cli import add_experiment_parser, cmd_experiment
from .runs import CHECKPOINTS_ENV, EncodedJSON, ProgressWriter, add_runs_command, cmd_runs, default_checkpoint_dir
from .sweep import add_sweep_command, cmd_sweep

DEFAULTS = TrainConfig()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vae-studio", description="Train and evaluate VAEs.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model and save a .safetensors checkpoint")
    train.add_argument(
        "--data",
        default=None,
        help=f"dataset name (see `datasets`) or a .npz/.zip/.csv/folder (default {DEFAULTS.data}; "
        "with --resume: the checkpoint's data, which must be a built-in dataset unless you "
        "name its file here)",
    )
    train.add_argument("--image-size", type=int, default=None, help="resize images to this square size")
    train.add_argument("--download", action="store_true", help="download mnist/fashion-mnist/kmnist if missing")
    train.add_argument("--model", choices=MODEL_NAMES, default=DEFAULTS.model)
    train.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=None,
        help="encoder widths (decoder mirrors), e.g. --hidden 400; conv: channels "
        f"(default: {', '.join(f'{m} {list(h)}' for m, h in DEFAULT_HIDDEN.items())})",
    )
    train.add_argument("--latent-dim", type=int, default=DEFAULTS.latent_dim)
    train.add_argument("--beta", type=float, default=DEFAULTS.beta)
    train.add_argument("--lr", type=float, default=DEFAULTS.lr)
    train.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULTS.batch_size,
        help="images per step, all processes together: under torchrun each process takes its share of every batch",
    )
    train.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help="total epochs, resumed ones included")
    train.add_argument("--recon", choices=RECON_LOSSES, default=DEFAULTS.recon)
    train.add_argument("--learn-variance", action="store_true", help="mse: learn the Gaussian's variance")
    train.add_argument("--kl-anneal", choices=KL_ANNEALING, default=DEFAULTS.kl_anneal)
    train.add_argument("--kl-warmup-epochs", type=float, default=DEFAULTS.kl_warmup_epochs)
    train.add_argument("--free-bits", type=float, default=DEFAULTS.free_bits, help="nats per latent dimension")
    train.add_argument("--seed", type=int, default=DEFAULTS.seed)
    train.add_argument("--device", choices=DEVICES, default=DEFAULTS.device)
    train.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=DEFAULTS.precision,
        help="bf16: autocast the forward pass and loss to bfloat16, weights stay float32",
    )
    train.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads of a training step (default: $VAE_STUDIO_TORCH_THREADS, else 1, or 1 per free core "
        "if timed faster now). Kept with the run: the float sums, so the numbers, "
        "depend on it; a resumed run keeps its own",
    )
    train.add_argument(
        "--compile", action="store_true", help="torch.compile the model (the first steps pay the compile time)"
    )
    train.add_argument("--test-fraction", type=float, default=DEFAULTS.test_fraction)
    train.add_argument(
        "--name", default=None, help="the run's name (default: from what sets it apart, e.g. 'mlp z10 β4')"
    )
    train.add_argument(
        "--out",
        default=None,
        help="checkpoint to write, at every epoch end and when the run ends (default <out dir>/<run id>.safetensors)",
    )
    train.add_argument(
        "--out-dir",
        default=None,
        help=f"folder of the checkpoint when --out is not given (default: ${CHECKPOINTS_ENV}, else ./checkpoints)",
    )
    train.add_argument(
        "--resume", default=None, help="continue the run in this checkpoint (exactly: as if it had never stopped)"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = commands.add_parser("eval", help="test negative ELBO, IWAE bound and active units of a checkpoint")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--iwae-k", type=int, default=5000, help="importance samples per image")
    evaluate.add_argument("--limit", type=int, default=None, help="evaluate on the first N test images")
    evaluate.add_argument("--data", default=None, help="dataset, when it is not the checkpoint's own")
    evaluate.add_argument("--quiet", action="store_true")

    inspect = commands.add_parser("inspect", help="print a checkpoint's config, counters and metrics")
    inspect.add_argument("checkpoint")

    commands.add_parser("datasets", help="list the datasets and whether they are available here")
    add_runs_command(commands)
    add_sweep_command(commands, train)
    add_experiment_parser(commands)

    commands.add_parser(
        "app",
        help="open the app in the browser (streamlit run app.py; needs the source checkout)",
        description="Run the app with `streamlit run`; any further options go to streamlit, "
        "e.g. `vae-studio app --server.port 8502`.",
    )
    return parser


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        data=args.data or DEFAULTS.data,
        image_size=args.image_size,
        model=args.model,
        hidden=tuple(args.hidden) if args.hidden else None,
        latent_dim=args.latent_dim,
        beta=args.beta,
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        recon=args.recon,
        learn_variance=args.learn_variance,
        kl_anneal=args.kl_anneal,
        kl_warmup_epochs=args.kl_warmup_epochs,
        free_bits=args.free_bits,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        test_fraction=args.test_fraction,
        threads=args.threads,
    )


def _progress(total: int, quiet: bool, unit: str):
    if quiet:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)


def _load_data(config: TrainConfig, download: bool = False):
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

    config, state, run_id, name, labels = _config_from_args(args), None, new_run_id(), args.name, {}
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
            else _load_data(config, args.download)
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
    bar = _progress(trainer.total_steps, args.quiet or not writes, "step")
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


def cmd_eval(args: argparse.Namespace) -> dict:
    import torch

    from .checkpoint import checkpoint_dataset, load_checkpoint
    from .metrics import evaluate, evaluation_seed, iwae_nll

    checkpoint = load_checkpoint(args.checkpoint)
    config = checkpoint.config if args.data is None else checkpoint.config.replace(data=args.data)
    # --data may be other data (of the same shape); without it, the checkpoint's own, if it may be opened.
    dataset = _load_data(config) if args.data is not None else checkpoint_dataset(checkpoint)
    model = checkpoint.build_model()
    x, y = dataset.test_x, dataset.test_y
    if args.limit:
        x, y = x[: args.limit], (y[: args.limit] if y is not None else None)
    # The noise the run evaluated its last epoch with: on its own test set, the number it showed.
    generator = torch.Generator().manual_seed(evaluation_seed(config.seed, checkpoint.state.epoch))
    result = evaluate(model, x, y, recon=config.recon, generator=generator)
    iwae = None
    if model.variational and args.iwae_k > 0:
        bar = _progress(x.shape[0], args.quiet, "img")
        iwae = iwae_nll(
            model,
            x,
            y,
            recon=config.recon,
            k=args.iwae_k,
            generator=generator,
            progress=(lambda done, total: bar.update(done - bar.n)) if bar is not None else None,
        )
        if bar is not None:
            bar.close()
    return {
        "checkpoint": args.checkpoint,
        "images": int(x.shape[0]),
        "test_neg_elbo": result.neg_elbo,
        "test_recon": result.recon,
        "test_kl": result.kl,
        "iwae_nll": iwae,
        "k": args.iwae_k,
        "active_units": result.active_units,
        "kl_per_dim": result.kl_per_dim,
    }


def cmd_inspect(args: argparse.Namespace) -> dict:
    from .checkpoint import load_checkpoint
    from .metrics import active_units

    checkpoint = load_checkpoint(args.checkpoint)
    # Active units counted again from each epoch's KL per dimension (the one definition, as eval
    # counts them): a file written before it stored a count by another rule.
    epochs = [
        {**{k: v for k, v in m.items() if k != "kl_per_dim"}, "active_units": active_units(m["kl_per_dim"])}
        for m in checkpoint.state.history.epochs
    ]
    summary = checkpoint.summary()
    if epochs:
        summary["active_units"] = epochs[-1]["active_units"]
    return {
        **summary,
        "config": checkpoint.config.to_dict(),
        "data_fingerprint": checkpoint.dataset.fingerprint,
        "image_shape": list(checkpoint.dataset.image_shape),
        "epoch_metrics": epochs,
        "versions": checkpoint.versions,
    }


def cmd_datasets(_args: argparse.Namespace) -> list:
    from .data import describe_datasets

    rows = describe_datasets()
    for row in rows:
        mark = "yes" if row["available"] else "no "
        print(f"{row['name']:<14} {mark}  {row['description']}  [{row['where']}]")
    return rows


def cmd_app(args: argparse.Namespace, streamlit_args: list[str]) -> int:
    """Run the Streamlit app of this source checkout; the installed package alone has no pages."""
    from .errors import ConfigError

    app = Path(__file__).resolve().parents[1] / "app.py"
    if not app.is_file():
        raise ConfigError(f"the app needs the source checkout of VAE Studio: no app.py next to {Path(__file__).parent}")
    return subprocess.call([sys.executable, "-m", "streamlit", "run", str(app), *streamlit_args])


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


MAX_ERROR_CHARS = 500


def one_line(message: str) -> str:
    """An error as one line of at most MAX_ERROR_CHARS: a message quoting a file's contents (a 9 MB
    npz header) or listing folders must not flood the terminal, nor split a line a script reads."""
    flat = " ".join(message.split())
    return flat if len(flat) <= MAX_ERROR_CHARS else flat[: MAX_ERROR_CHARS - 1] + "…"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "app":  # only `app` passes options on (to streamlit)
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    handlers = {
        "train": cmd_train,
        "eval": cmd_eval,
        "inspect": cmd_inspect,
        "datasets": cmd_datasets,
        "runs": cmd_runs,
        "sweep": cmd_sweep,
        "experiment": cmd_experiment,
        "app": lambda args: cmd_app(args, extra),
    }
    try:
        result = handlers[args.command](args)
    except VAEStudioError as error:
        print(f"error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except OSError as error:  # a path given that cannot be used: --out-dir naming a file, a full disk...
        where = f" {error.filename}" if error.filename else ""
        print(f"error: cannot use{where}: {one_line(error.strerror or str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if args.command == "app":
        return result  # streamlit's own exit code
    # Under torchrun every process runs the command; rank 0 alone answers (see distributed.py).
    if args.command != "datasets" and os.environ.get("RANK", "0") == "0":
        print(result if isinstance(result, EncodedJSON) else _json_line(result))
    return 0


def _json_line(result) -> str:
    """The result as one line of strict JSON: NaN and infinity (a diverged loss) become null. The
    walk that replaces them runs only when there is one (it costs a fifth of listing 5,000 runs)."""
    try:
        return json.dumps(result, allow_nan=False)
    except ValueError:
        return json.dumps(_json_safe(result))
