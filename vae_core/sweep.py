"""`vae-studio sweep`: `train` over every combination of several values per flag.

    vae-studio sweep --data digits --beta 0.5 1 4 --latent-dim 2 10 --epochs 5 --out-dir sweeps/beta

Each train flag takes several values here (its definition is read from the `train` parser, so the
flags, their checks and their defaults have one home). Every combination is checked before the
first run starts, then the runs train one after the other, each exactly as `train` would; one JSON
line per finished run, and as the last line the JSON list of them all.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math

from .config import check_creatable, limits
from .errors import ConfigError, VAEStudioError

# Flags a sweep passes to every run as they are: one folder, one list of widths (--hidden 256 128 is
# one model), switches. --out, --resume and --name name a single run, so a sweep has none of them.
SHARED_FLAGS = {"out_dir", "hidden"}
NOT_SWEPT = {"help", "out", "resume", "name"}


def add_sweep_command(commands, train: argparse.ArgumentParser) -> None:
    """`vae-studio sweep` on the CLI's subcommands, with the flags of `train` (its parser)."""
    sweep = commands.add_parser(
        "sweep", help="train every combination of several flag values (e.g. --beta 0.5 1 4 --latent-dim 2 10)",
        description="Train one run per combination of the values given (each train flag may take several), "
                    "one after the other. Prints one JSON line per finished run, then a JSON list of them all.")
    for action in train._actions:  # argparse has no public accessor for a parser's arguments
        if action.dest in NOT_SWEPT or not action.option_strings:
            continue
        if action.nargs == 0:  # a switch (--quiet, --learn-variance): on for every run or for none
            sweep.add_argument(*action.option_strings, dest=action.dest, action="store_true", help=action.help)
        elif action.dest in SHARED_FLAGS:
            sweep.add_argument(*action.option_strings, dest=action.dest, nargs=action.nargs, default=None,
                               help=action.help)
        else:
            values = f"one run per value{'; ' + action.help if action.help else ''}"
            sweep.add_argument(*action.option_strings, dest=action.dest, nargs="+", default=None,
                               metavar=action.metavar or action.dest.upper(), help=values)
    sweep.set_defaults(train_parser=train)


def sweep_argvs(args: argparse.Namespace) -> list[tuple[list[str], dict[str, str]]]:
    """Each run's `train` arguments and the values that set it apart ({flag: value}), in order: the
    last flag given varies fastest."""
    train: argparse.ArgumentParser = args.train_parser
    shared, axes = [], []
    for action in train._actions:
        value = getattr(args, action.dest, None)
        if action.dest in NOT_SWEPT or not action.option_strings or value in (None, False):
            continue
        flag = action.option_strings[-1]
        if action.nargs == 0:
            shared.append(flag)
        elif action.dest in SHARED_FLAGS:
            shared += [flag, *map(str, value if isinstance(value, list) else [value])]
        else:
            values = list(dict.fromkeys(value))  # a repeated value is one run
            if len(values) == 1:
                shared += [flag, values[0]]  # the same for every run: not what sets one apart
            else:
                axes.append([(flag, item) for item in values])
    check_run_count(math.prod(len(axis) for axis in axes))
    return [(shared + [part for pair in combination for part in pair],
             {flag.lstrip("-"): item for flag, item in combination}) for combination in itertools.product(*axes)]


def cmd_sweep(args: argparse.Namespace) -> list[dict]:
    from .cli import _config_from_args, _json_safe, cmd_train  # late: the CLI imports this module
    from .distributed import refuse_under_torchrun

    refuse_under_torchrun("sweep")
    train: argparse.ArgumentParser = args.train_parser
    runs = []
    for argv, swept in sweep_argvs(args):
        parsed = train.parse_args(argv)  # a bad value exits here, with argparse's message, before any run
        _config_from_args(parsed)  # out-of-range values too: ConfigError naming the hyperparameter
        runs.append((parsed, swept))
    results = []
    for parsed, swept in runs:
        try:
            result = {"status": "finished", **cmd_train(parsed), "sweep": swept}
        except VAEStudioError as error:  # one failed run (a divergence) does not cancel the others
            result = {"status": "failed", "error": str(error), "sweep": swept}
        print(json.dumps(_json_safe(result)), flush=True)
        results.append(result)
    return results


# -- the app's sweep form ------------------------------------------------------------------------------

# What the app's form offers to sweep, and how a typed value becomes the field's type.
APP_SWEEPABLE = {"beta": float, "latent_dim": int, "lr": float, "batch_size": int, "free_bits": float,
                 "epochs": int, "seed": int, "model": str, "recon": str, "kl_anneal": str}


def parse_values(field_name: str, text: str) -> list:
    """'0.5, 1 4' -> [0.5, 1.0, 4.0] for a field of APP_SWEEPABLE; ConfigError naming a bad value."""
    kind = APP_SWEEPABLE.get(field_name)
    if kind is None:
        raise ConfigError(f"{field_name} cannot be swept here; choose one of {', '.join(APP_SWEEPABLE)}")
    values = []
    for part in text.replace(",", " ").split():
        try:
            values.append(kind(part))
        except ValueError:
            noun = {int: "a whole number", float: "a number"}.get(kind, "a value")
            raise ConfigError(f"{field_name}: {part[:40]!r} is not {noun}") from None
    if not values:
        raise ConfigError(f"give at least one value for {field_name}")
    return list(dict.fromkeys(values))


def check_run_count(count: int) -> None:
    """A typo (an extra value on three flags) must not queue a week of training: config.Limits."""
    most = limits().max_runs_per_request
    if count > most:
        raise ConfigError(f"the sweep has {count:,} combinations, more than the limit of {most} a request "
                          "(VAE_STUDIO_MAX_RUNS_PER_REQUEST); give fewer values")


def sweep_configs(base, axes: dict[str, str]):
    """Every combination of the values typed per field (`axes`: field -> '0.5 1 4'), applied to the
    TrainConfig `base`, each checked; the last field varies fastest."""
    parsed = [[(field_name, value) for value in parse_values(field_name, text)] for field_name, text in axes.items()]
    check_run_count(math.prod(len(values) for values in parsed))
    configs = [base.replace(hidden=None if "model" in axes else base.hidden, **dict(combination))
               for combination in itertools.product(*parsed)]
    for config in configs:  # all or nothing: no run is queued when one of them may not be
        check_creatable(config)
    return configs
