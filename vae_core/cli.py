"""`vae-studio train|eval|inspect|datasets|runs|sweep|experiment|app` (also `python -m vae_core ...`).

`train` and `eval` print, as their last stdout line, one JSON object with the results, so scripts
and benchmarks can read them. Any input error exits 2 with a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from .errors import VAEStudioError
from .experiment_cli import add_experiment_parser, cmd_experiment
from .json_lines import json_line
from .runs import EncodedJSON, PrintedOutput, add_runs_command, cmd_runs
from .sweep import add_sweep_command, cmd_sweep
from .train_command import add_train_flags, cmd_train, load_config_data, progress_bar


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vae-studio", description="Train and evaluate VAEs.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model and save a .safetensors checkpoint")
    add_train_flags(train)

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


def cmd_eval(args: argparse.Namespace) -> dict:
    import torch

    from .checkpoint import checkpoint_dataset, load_checkpoint
    from .metrics import evaluate, evaluation_seed, iwae_nll

    checkpoint = load_checkpoint(args.checkpoint)
    config = checkpoint.config if args.data is None else checkpoint.config.replace(data=args.data)
    # --data may be other data (of the same shape); without it, the checkpoint's own, if it may be opened.
    dataset = load_config_data(config) if args.data is not None else checkpoint_dataset(checkpoint)
    model = checkpoint.build_model()
    x, y = dataset.test_x, dataset.test_y
    if args.limit:
        x, y = x[: args.limit], (y[: args.limit] if y is not None else None)
    # The noise the run evaluated its last epoch with: on its own test set, the number it showed.
    generator = torch.Generator().manual_seed(evaluation_seed(config.seed, checkpoint.state.epoch))
    result = evaluate(model, x, y, recon=config.recon, generator=generator)
    iwae = None
    if model.variational and args.iwae_k > 0:
        bar = progress_bar(x.shape[0], args.quiet, "img")
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
    printed = args.command == "datasets" or isinstance(result, PrintedOutput)
    if not printed and os.environ.get("RANK", "0") == "0":
        print(result if isinstance(result, EncodedJSON) else json_line(result))
    return 0
