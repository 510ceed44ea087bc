"""`vae-studio experiment --list` and `vae-studio experiment NAME`: the note's claims from the command line.

`--list` prints the experiment names as a JSON list; `NAME` trains its runs (progress on stderr,
checkpoints into --out-dir) and prints, as the last stdout line, one JSON object with the runs,
their settings and metrics, and the finding written from them.
"""

from __future__ import annotations

import argparse
import sys

from .config import DEVICES, TrainConfig
from .errors import ConfigError


def add_experiment_parser(commands) -> argparse.ArgumentParser:
    """The `experiment` subcommand, added to the CLI's subparsers."""
    from .experiments import EXPERIMENTS

    parser = commands.add_parser(
        "experiment",
        help="run one of the note's claims as an experiment: its runs, their numbers, a finding",
        description="Experiments: " + "; ".join(f"{e.name}: {e.title}" for e in EXPERIMENTS.values()),
    )
    parser.add_argument("name", nargs="?", choices=list(EXPERIMENTS), help="the experiment to run")
    parser.add_argument("--list", action="store_true", help="print the experiment names as a JSON list")
    parser.add_argument("--data", default=TrainConfig.data, help="dataset name (see `datasets`) or a file or folder")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of every run")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out-dir",
        default=None,
        help="folder for the runs' checkpoints (default: the app's "
        "checkpoints folder, $VAE_STUDIO_CHECKPOINTS or checkpoints)",
    )
    parser.add_argument(
        "--executor",
        choices=["local", "slurm"],
        default=None,
        help="where the runs train: local (one after the other, here) or slurm (one SLURM job each, all "
        "submitted at once, as a sweep's; settings in slurm.toml beside the checkpoints folder). Default: "
        "$VAE_STUDIO_EXECUTOR, else local",
    )
    return parser


def cmd_experiment(args: argparse.Namespace) -> dict | list:
    from .atomic_files import output_folder
    from .data import load_dataset
    from .experiments import EXPERIMENTS, base_config, run_experiment
    from .runs import default_checkpoint_dir
    from .slurm_settings import executor_setting

    if args.list:
        return list(EXPERIMENTS)
    if args.name is None:
        raise ConfigError(f"name an experiment ({', '.join(EXPERIMENTS)}) or use --list")
    executor = executor_setting(args.executor)  # a bad VAE_STUDIO_EXECUTOR: one line, before any data loads
    base = base_config(data=args.data, epochs=args.epochs, device=args.device, seed=args.seed)
    dataset = load_dataset(base.data, test_fraction=base.test_fraction, seed=base.seed)

    def announce(index: int, count: int, run) -> None:
        print(
            f"[{index + 1}/{count}] {args.name}: {run.label}, {run.config.epochs} epoch(s)…",
            file=sys.stderr,
            flush=True,
        )

    out_dir = output_folder(args.out_dir or default_checkpoint_dir())  # before any run trains
    data_root = None
    if executor == "slurm":
        from .slurm_executor import data_for_jobs

        data, data_root = data_for_jobs(base.data)
        base = base.replace(data=data)
    return run_experiment(
        args.name, base, dataset, out_dir, on_run=announce, executor=executor, upload_root=data_root
    ).as_dict()
