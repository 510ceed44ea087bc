"""`vae-studio sweep`: `train` over every combination of several values per flag.

    vae-studio sweep --data digits --beta 0.5 1 4 --latent-dim 2 10 --epochs 5 --out-dir sweeps/beta

Each train flag takes several values here (its definition is read from train_command.TRAIN_FLAGS,
which the `train` parser is built from, so the flags, their checks and their defaults have one
home). Every combination is checked before the first run starts, then the runs train one after the
other, each exactly as `train` would; one JSON line per finished run, and as the last line the JSON
list of them all.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from .config import TrainConfig, check_creatable, limits
from .errors import ConfigError, VAEStudioError
from .json_lines import json_line
from .train_command import TRAIN_FLAGS, cmd_train, config_from_args

# Flags a sweep passes to every run as they are: one folder, one list of widths (--hidden 256 128 is
# one model), switches. --out, --resume and --name name a single run, so a sweep has none of them.
SHARED_FLAGS = {"out_dir", "hidden"}
NOT_SWEPT = {"help", "out", "resume", "name"}


def add_sweep_command(commands, train: argparse.ArgumentParser) -> None:
    """`vae-studio sweep` on the CLI's subcommands, with the flags of `train` (TRAIN_FLAGS); `train`,
    the parser made from them, checks each run's arguments."""
    sweep = commands.add_parser(
        "sweep",
        help="train every combination of several flag values (e.g. --beta 0.5 1 4 --latent-dim 2 10)",
        description="Train one run per combination of the values given (each train flag may take several), "
        "one after the other. Prints one JSON line per finished run, then a JSON list of them all.",
    )
    for flag in TRAIN_FLAGS:
        if flag.dest in NOT_SWEPT:
            continue
        help_text = flag.settings.get("help")
        if flag.is_switch:  # --quiet, --learn-variance: on for every run or for none
            sweep.add_argument(flag.option, dest=flag.dest, action="store_true", help=help_text)
        elif flag.dest in SHARED_FLAGS:
            sweep.add_argument(
                flag.option, dest=flag.dest, nargs=flag.settings.get("nargs"), default=None, help=help_text
            )
        else:
            sweep.add_argument(
                flag.option,
                dest=flag.dest,
                nargs="+",
                default=None,
                metavar=flag.settings.get("metavar") or flag.dest.upper(),
                help=f"one run per value{'; ' + help_text if help_text else ''}",
            )
    sweep.add_argument(
        "--executor",
        choices=["local", "slurm"],
        default=None,
        help="where the runs train: local (one after the other, here) or slurm (one SLURM job each, all "
        "submitted at once; settings in slurm.toml beside the checkpoints folder). Default: $VAE_STUDIO_EXECUTOR, "
        "else local",
    )
    sweep.set_defaults(train_parser=train)


def sweep_argvs(args: argparse.Namespace) -> list[tuple[list[str], dict[str, str]]]:
    """Each run's `train` arguments and the values that set it apart ({flag: value}), in order: the
    last flag given varies fastest."""
    shared, axes = [], []
    for train_flag in TRAIN_FLAGS:
        value = getattr(args, train_flag.dest, None)
        if train_flag.dest in NOT_SWEPT or value in (None, False):
            continue
        flag = train_flag.option
        if train_flag.is_switch:
            shared.append(flag)
        elif train_flag.dest in SHARED_FLAGS:
            shared += [flag, *map(str, value if isinstance(value, list) else [value])]
        else:
            values = list(dict.fromkeys(value))  # a repeated value is one run
            if len(values) == 1:
                shared += [flag, values[0]]  # the same for every run: not what sets one apart
            else:
                axes.append([(flag, item) for item in values])
    check_run_count(math.prod(len(axis) for axis in axes))
    return [
        (
            shared + [part for pair in combination for part in pair],
            {flag.lstrip("-"): item for flag, item in combination},
        )
        for combination in itertools.product(*axes)
    ]


def cmd_sweep(args: argparse.Namespace) -> list[dict]:
    from .atomic_files import output_folder
    from .distributed import refuse_under_torchrun
    from .runs import default_checkpoint_dir

    refuse_under_torchrun("sweep")
    train: argparse.ArgumentParser = args.train_parser
    runs = []
    for argv, swept in sweep_argvs(args):
        parsed = train.parse_args(argv)  # a bad value exits here, with argparse's message, before any run
        config = config_from_args(parsed)  # out-of-range values too: ConfigError naming the hyperparameter
        runs.append((parsed, swept, config))
    for parsed, _, _ in runs[:1]:  # one output folder for every run: a bad one fails the sweep before it trains
        if not parsed.out:
            output_folder(parsed.out_dir or default_checkpoint_dir())
    fields = _swept_fields(runs[0][1]) if runs else []
    from .slurm_settings import executor_setting

    if executor_setting(getattr(args, "executor", None)) == "slurm":
        return _sweep_on_slurm(runs, fields)
    results, recorded, sweep_id, started = [], [], None, time.time()
    for parsed, swept, config in runs:
        try:
            result = {"status": "finished", **cmd_train(parsed), "sweep": swept}
        except VAEStudioError as error:  # one failed run (a divergence) does not cancel the others
            result = {"status": "failed", "error": str(error), "sweep": swept}
        print(json_line(result), flush=True)
        results.append(result)
        if fields and result.get("run_id"):  # recorded as it goes: the app summarises a sweep half done
            recorded.append((config, result["run_id"]))
            sweep = new_sweep_record(
                [c for c, _ in recorded], fields, [r for _, r in recorded], sweep_id=sweep_id, created=started
            )
            sweep_id = sweep.sweep_id
            save_sweep(Path(result["checkpoint"]).parent, sweep, overwrite=True)
    return results


def _sweep_on_slurm(runs: list, fields: list[str]) -> list[dict]:
    """Every run of the sweep a SLURM job, all submitted at once, then followed to their ends; one
    JSON line per run as it ends (in the order they end), the list in sweep order at the end."""
    from .runs import checkpoint_path, default_checkpoint_dir, list_runs
    from .slurm_executor import SlurmQueue, data_for_jobs

    folder = Path(runs[0][0].out_dir or default_checkpoint_dir()) if runs else Path(default_checkpoint_dir())
    jobs_data = [data_for_jobs(config.data) for _, _, config in runs]
    roots = {root for _, root in jobs_data if root}
    if len(roots) > 1:
        raise ConfigError("a sweep on SLURM reads one data file or folder: run one sweep per file")
    configs = [config.replace(data=data) for (_, _, config), (data, _) in zip(runs, jobs_data)]
    slurm = SlurmQueue(folder, upload_root=next(iter(roots), None))
    run_ids = slurm.queue(configs, names=[parsed.name or None for parsed, _, _ in runs])
    if fields:
        save_sweep(folder, new_sweep_record(configs, fields, run_ids))
    swept_of = {run_id: swept for run_id, (_, swept, _) in zip(run_ids, runs)}
    results = {}

    def ended(state) -> None:
        record = next((r for r in list_runs(folder) if r.run_id == state.run_id), None)
        result = {
            "status": state.state,
            "run_id": state.run_id,
            "checkpoint": str(checkpoint_path(folder, state.run_id)),
            "job_id": state.job_id,
            "node": state.node,
            **({"error": state.reason} if state.reason else {}),
            "epochs": record.epoch if record else None,
            **{key: record.metrics.get(key) if record else None for key in ("test_neg_elbo", "test_recon", "test_kl")},
            "sweep": swept_of[state.run_id],
        }
        print(json_line(result), flush=True)
        results[state.run_id] = result

    slurm.wait(run_ids, on_end=ended)
    return [results[run_id] for run_id in run_ids]


def _swept_fields(swept: dict[str, str]) -> list[str]:
    """The config fields behind the flags a sweep varies ({"latent-dim": ...} -> ["latent_dim"])."""
    dests = {flag.option.lstrip("-"): flag.dest for flag in TRAIN_FLAGS}
    return [dests[flag] for flag in swept if dests.get(flag) in TRAIN_FIELDS]


# -- the app's sweep form ------------------------------------------------------------------------------

# What the app's form offers to sweep, and how a typed value becomes the field's type.
APP_SWEEPABLE = {
    "beta": float,
    "latent_dim": int,
    "lr": float,
    "batch_size": int,
    "free_bits": float,
    "epochs": int,
    "seed": int,
    "model": str,
    "recon": str,
    "kl_anneal": str,
}


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
        raise ConfigError(
            f"the sweep has {count:,} combinations, more than the limit of {most} a request "
            "(VAE_STUDIO_MAX_RUNS_PER_REQUEST); give fewer values"
        )


def sweep_axes(chosen: list[tuple[str, str]]) -> dict[str, str]:
    """The form's (field, typed values) pairs as sweep_configs' axes; ConfigError when a field is
    chosen twice (its second set of values would silently replace the first)."""
    names = [field_name for field_name, _ in chosen]
    if len(set(names)) != len(names):
        raise ConfigError("choose two different hyperparameters, or 'none' for the second")
    return dict(chosen)


def sweep_configs(base, axes: dict[str, str]):
    """Every combination of the values typed per field (`axes`: field -> '0.5 1 4'), applied to the
    TrainConfig `base`, each checked; the last field varies fastest."""
    parsed = [[(field_name, value) for value in parse_values(field_name, text)] for field_name, text in axes.items()]
    check_run_count(math.prod(len(values) for values in parsed))
    configs = [
        base.replace(hidden=None if "model" in axes else base.hidden, **dict(combination))
        for combination in itertools.product(*parsed)
    ]
    for config in configs:  # all or nothing: no run is queued when one of them may not be
        check_creatable(config)
    return configs


def run_count_text(value_counts: list[int]) -> str:
    """How many runs a sweep queues, as it is computed: "3 runs", "3 × 2 = 6 runs", "1 run"."""
    total = math.prod(value_counts)
    product = " × ".join(map(str, value_counts)) + " = " if len(value_counts) > 1 else ""
    return f"{product}{runs_word(total)}"


def runs_word(count: int) -> str:
    """ "1 run", "6 runs": a count and its noun, agreeing."""
    return f"{count:,} run{'' if count == 1 else 's'}"


# -- a sweep's record: which runs it queued, in its order, and the values that set each apart ----------

SWEEPS_FOLDER = "sweeps"  # inside a run folder; run listings only look at the folder's own files
SWEEP_FORMAT = "vae-studio-sweep"
MAX_SWEEP_RECORD_BYTES = 256 * 1024
SweepValue = float | int | str
TRAIN_FIELDS = {field.name for field in dataclasses.fields(TrainConfig)}


@dataclass(frozen=True)
class SweptRun:
    run_id: str
    values: dict[str, SweepValue]  # field -> the value this run has, for each swept field


@dataclass(frozen=True)
class SweepRecord:
    """One sweep of a run folder: the fields it swept and its runs, in the order it queued them (the
    last field varies fastest). Its id is made as a run id is, so it sorts by time and names a file."""

    sweep_id: str
    fields: tuple[str, ...]
    runs: tuple[SweptRun, ...]
    created: float  # seconds since the epoch
    owner: str | None = None  # who queued it, when served: their sweeps are theirs alone

    def values_of(self, field_name: str) -> list[SweepValue]:
        """The values swept for `field_name`, in sweep order, each once."""
        return list(dict.fromkeys(run.values[field_name] for run in self.runs))

    def axes_text(self) -> str:
        """ "beta 0.5, 1, 4 × latent_dim 2, 10"."""
        return " × ".join(
            f"{field_name} {', '.join(map(shown_value, self.values_of(field_name)))}" for field_name in self.fields
        )

    def label(self) -> str:
        """ "beta 0.5, 1, 4 × latent_dim 2, 10 · 6 runs"."""
        return f"{self.axes_text()} · {runs_word(len(self.runs))}"


def shown_value(value: SweepValue) -> str:
    """A swept value as a label: 0.5, 4 (not 4.0), conv."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def new_sweep_record(
    configs,
    fields: list[str],
    run_ids: list[str],
    owner: str | None = None,
    *,
    sweep_id: str | None = None,
    created: float | None = None,
) -> SweepRecord:
    """The record of a sweep whose runs `run_ids` were made from `configs` (sweep_configs' order); a
    new sweep id unless `sweep_id` names the sweep it records again (the CLI's, after each run)."""
    from .run_ids import new_run_id

    runs = tuple(
        SweptRun(run_id, {field_name: getattr(config, field_name) for field_name in fields})
        for config, run_id in zip(configs, run_ids, strict=True)
    )
    return SweepRecord(
        sweep_id or new_run_id(), tuple(fields), runs, time.time() if created is None else created, owner
    )


def sweep_path(folder: str | Path, sweep_id: str) -> Path:
    from .run_ids import check_run_id

    return Path(folder) / SWEEPS_FOLDER / f"{check_run_id(sweep_id)}.json"


def save_sweep(folder: str | Path, sweep: SweepRecord, *, overwrite: bool = False) -> Path:
    """Keep `sweep` in run folder `folder`, written atomically; over an earlier record of the same
    sweep only when `overwrite` (a sweep id made twice in one second must not replace another's)."""
    from .atomic_files import write_atomically

    record = {
        "format": SWEEP_FORMAT,
        "sweep_id": sweep.sweep_id,
        "fields": list(sweep.fields),
        "created": sweep.created,
        "owner": sweep.owner,
        "runs": [{"run_id": run.run_id, "values": run.values} for run in sweep.runs],
    }
    target = sweep_path(folder, sweep.sweep_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, json.dumps(record).encode(), overwrite=overwrite)
    return target


def read_sweep(path: str | Path) -> SweepRecord:
    """A sweep's record, checked field by field (it may be any file someone put there): UnreadableFile
    names the file and what is wrong with it."""
    from .safe_files import read_record

    return read_record(path, MAX_SWEEP_RECORD_BYTES, SWEEP_FORMAT, _sweep_of)


def _sweep_of(record: dict, name: str) -> SweepRecord:
    from .checkpoint_fields import is_valid_owner, past_time
    from .run_ids import is_valid_run_id
    from .safe_files import FieldError

    sweep_id, fields, runs = record.get("sweep_id"), record.get("fields"), record.get("runs")
    if not is_valid_run_id(sweep_id) or name != f"{sweep_id}.json":
        raise FieldError("its sweep_id is not the file's own")
    if (
        not isinstance(fields, list)
        or not 1 <= len(fields) <= 8
        or len(set(map(str, fields))) != len(fields)
        or not all(isinstance(field_name, str) and field_name in TRAIN_FIELDS for field_name in fields)
    ):
        raise FieldError("its fields are not a list of distinct config fields")
    if not isinstance(runs, list) or not runs or len(runs) > limits().max_runs_per_request * 16:
        raise FieldError("its runs are not a list of runs")
    swept = []
    for run in runs:
        if not isinstance(run, dict) or not is_valid_run_id(run.get("run_id")):
            raise FieldError("a run of it has no valid run id")
        values = run.get("values")
        if (
            not isinstance(values, dict)
            or sorted(values) != sorted(fields)
            or not all(_is_sweep_value(value) for value in values.values())
        ):
            raise FieldError(f"run {run['run_id']} has no value (a number or a short text) for each field")
        swept.append(SweptRun(run["run_id"], {field_name: values[field_name] for field_name in fields}))
    created, owner = record.get("created"), record.get("owner")
    if not isinstance(created, (int, float)) or isinstance(created, bool):
        raise FieldError("its created time is not a number")
    past_time(created, "its created time")  # 1e308 would crash the Runs page printing it as a date
    if owner is not None and not is_valid_owner(owner):
        raise FieldError("its owner is not an owner id")
    return SweepRecord(sweep_id, tuple(fields), tuple(swept), float(created), owner)


def _is_sweep_value(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) or (isinstance(value, str) and 0 < len(value) <= 200 and value.isprintable())


def list_sweeps(folder: str | Path) -> list[SweepRecord]:
    """The sweeps recorded in run folder `folder`, newest first. An unreadable record is passed over:
    it only groups runs that the table lists anyway."""
    from .safe_files import UnreadableFile

    found = Path(folder) / SWEEPS_FOLDER
    if not found.is_dir():
        return []
    sweeps = []
    for path in found.glob("*.json"):
        try:
            sweeps.append(read_sweep(path))
        except UnreadableFile:
            continue
    return sorted(sweeps, key=lambda sweep: (sweep.created, sweep.sweep_id), reverse=True)


def newest_first(run_ids: list[str], sweeps: list[SweepRecord]) -> list[str]:
    """`run_ids` newest first (runs.creation_order), except that a sweep's runs stay together in the
    order it queued them, where its newest run would be: runs queued in the same second have ids
    that sort at random, and a sweep reads in the order of its values."""
    from .runs import creation_order

    place_in_sweep: dict[str, tuple[str, int]] = {}
    for sweep in sweeps:
        for index, run in enumerate(sweep.runs):
            place_in_sweep.setdefault(run.run_id, (sweep.sweep_id, index))
    newest_of_sweep: dict[str, tuple] = {}
    for run_id in run_ids:
        if run_id in place_in_sweep:
            sweep_id = place_in_sweep[run_id][0]
            newest_of_sweep[sweep_id] = max(
                newest_of_sweep.get(sweep_id, creation_order(run_id)), creation_order(run_id)
            )
    in_sweep_order = sorted(run_ids, key=lambda run_id: place_in_sweep.get(run_id, ("", 0))[1])
    return sorted(
        in_sweep_order,
        reverse=True,
        key=lambda run_id: (
            newest_of_sweep[place_in_sweep[run_id][0]] if run_id in place_in_sweep else creation_order(run_id),
            place_in_sweep.get(run_id, ("", ""))[0],
        ),
    )


SUMMARY_METRICS = {"test −ELBO": "test_neg_elbo", "reconstruction": "test_recon", "KL": "test_kl"}


def sweep_summary(sweep: SweepRecord, runs: dict[str, dict]) -> list[dict]:
    """One row per run of `sweep`, in its order: the swept values, then where the run is and the test
    metrics of its last finished epoch (None before its first). `runs` maps run id -> what the run
    store says of it ({"status", "epoch", "epochs", "metrics"}); a run it lacks was deleted (or is
    another person's) and reads "not found"."""
    rows = []
    for run in sweep.runs:
        found = runs.get(run.run_id)
        metrics = found["metrics"] if found else {}
        rows.append(
            {
                "run_id": run.run_id,
                **run.values,
                "status": found["status"] if found else "not found",
                "epoch": found["epoch"] if found else None,
                "epochs": found["epochs"] if found else None,
                **{label: metrics.get(key) for label, key in SUMMARY_METRICS.items()},
            }
        )
    return rows
