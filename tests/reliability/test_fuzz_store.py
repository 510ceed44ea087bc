"""Fuzz of the checkpoints folder (issue 23, "Must show"): hundreds of generated files of every kind
the app reads are placed beside valid runs, and `vae-studio runs`, every page and the run store's
readers must finish, with no exception, and list the valid runs, each unreadable run on one line.

The kinds: checkpoints (truncated, a huge header length, a header nested deep, unsupported dtypes,
shapes and offsets that lie, metadata fields of the wrong type, huge, negative or NaN, a pickle or a
zip renamed), progress records, queued and claimed runs, command files, sweep records, experiment
findings, the run index and the remembered `runs` output in the user cache; and, named as any of
them, FIFOs, symbolic links (to /etc/passwd, to a FIFO, to /dev/zero, dangling, loops), folders,
empty files, 10 GB sparse files, and names that are no run id or no UTF-8.

The folder comes from a seeded generator: the seed is printed, and VAE_STUDIO_FUZZ_SEED=<seed>
builds the same folder again.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import random
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from apphelpers import APP
from progress_records import progress_record

from vae_core import experiments, run_commands, run_queue, sweep
from vae_core.checkpoint import save_trainer_checkpoint
from vae_core.config import TrainConfig
from vae_core.loop import train_step
from vae_core.run_index import FileIndex
from vae_core.runs import (
    CHECKPOINT_SUFFIX,
    POINT_FIELDS,
    PROGRESS_SUFFIX,
    SUMMARY_FORMAT,
    list_runs,
    live_runs,
    read_run,
)
from vae_core.trainer import Trainer

SEED = int(os.environ.get("VAE_STUDIO_FUZZ_SEED", "23"))
FILES = 320  # generated entries, besides the valid runs
VISITS = 3  # hostile runs of each kind each run page is opened on
WATCHDOG_S = 60.0  # a reader still busy after this is taken as hung (a FIFO opened for reading)
NAN, INF = math.nan, math.inf
TEN_GB = 10 * 1024**3

# The valid runs: the newest ids of the folder, so every page opens on one of them.
VALID = {
    "20991231-000001-valid1": ("valid one", "finished"),
    "20991231-000002-valid2": ("valid two", "stopped"),
    "20991231-000003-valid3": ("valid three", "finished"),
}
LIVE = "20991231-000004-live"  # a progress record alone: a run the CLI trains now (this process)

# What a run id of the folder must be listed as: VALID runs healthy, UNHEALTHY ones unreadable or not
# at all, ANY (a file whose header is sound but whose tensors lie: listing reads headers only) as may be.
HEALTHY, UNHEALTHY, ANY = "healthy", "unhealthy", "any"

# Checkpoint metadata: for each field, values its reader must refuse.
BAD_METADATA = {
    ("name",): [5, [], "x" * 1000, "a\x00b", "\u202eevil"],
    ("notes",): [5, "x" * 5000, "a\x07"],
    ("status",): ["hacked", 5, None],
    ("created",): [5, "x" * 300, "\x00"],
    ("config",): ["mlp", [], None, {"latent_dim": "2"}, {"evil": 1}, {"hidden": [4096] * 1000}],
    ("config", "latent_dim"): [-1, 0, "2", 2**64, 1.5, None],
    ("config", "hidden"): ["16", [-1], [2**40], [16] * 1000, [1.5]],
    ("config", "lr"): [-1, 1e308, "0.1", NAN],
    ("config", "epochs"): [0, -1, 10**9],
    ("config", "batch_size"): [0, -5, 2**63],
    ("config", "data"): [["/etc"], 5, "x" * 5000],
    ("dataset",): ["digits", [], None],
    ("dataset", "image_shape"): [[1, 0, 8], [2, 8, 8], [1, 8], "x", [1, 10**6, 8], [1, 8.0, 8]],
    ("dataset", "num_classes"): [-1, 10**6, "10", None],
    ("dataset", "class_names"): [["0"], "0123", [1] * 10],
    ("dataset", "name"): [5, None, "x" * 300],
    ("dataset", "fingerprint"): [5, None],
    ("epoch",): [-1, 2**64, 1.5, "1", True, None, NAN],
    ("step",): [-1, 2**64, 1.5, "1", True, None, INF],
    ("step_in_epoch",): [-1, 2**64, "0", None],
    ("lr",): [NAN, INF, -1, 1e308, "0.001", None, True],
    ("beta",): [NAN, -INF, -1, 1e308, "1", None],
    ("optimizer",): ["adam", [], None],
    ("history",): ["x", [], None],
    ("history", "epochs"): ["x", [[]], [{"epoch": 1}], [5]],
    ("history", "events"): ["x", [{"step": 1}], [{"step": -1, "name": "lr", "value": 1}], [5]],
    ("history", "frame_epochs"): ["x", [-1], [1.5], [None]],
    ("history", "clock"): [[[1, -1.0]], [[1, 2.0], [0, 3.0]], [[10**9, 1.0]], "x", [[1]], [[1, NAN]]],
    ("versions",): ["x", {str(i): "1" for i in range(40)}, {"a": 5}],
    ("imported_from",): ["x", {"evil": 1}, {"run_id": "../x"}],
    ("world_size",): [-1, 2**30, "1"],
    ("owner",): ["ALICE", 5, "0" * 31],
}

# Progress records: for each field, values its reader must refuse.
BAD_PROGRESS = {
    "format": ["other", None, 1],
    "run_id": ["../x", "", 5, None],
    "name": [5, None, "x" * 100_000, "a\x00b"],
    "status": ["hacked", None, 5],
    "pid": [0, -1, 9007199254740992, 2**64, 1.5, "1", True, None],
    "host": [5, None, "h\x00"],
    "started": [1e308, -1, "now", None, NAN, INF],
    "heartbeat": [1e308, -1, "now", None, "future"],
    "step": [-1, 2**64, 1.5, "3", True, None],
    "total_steps": [-1, 2**64, None],
    "epoch": [-1, 1.5, None],
    "epochs": [-1, "1", None],
    "steps_per_epoch": [-1, 2**64, None],
    "samples_per_s": ["fast", None, NAN, INF],
    "config": ["mlp", [], {"latent_dim": "2"}, {"hidden": [4096] * 1000}, {"epochs": -1}, {"evil": 1}],
    "dataset": [5, None, "x" * 1000],
    "points": [[], {"step": [1]}, {key: "x" for key in POINT_FIELDS}, {key: [1] * 5000 for key in POINT_FIELDS}],
    "epoch_metrics": ["x", [[]], [{"epoch": 1}], [{"epoch": -1, "step": 1}], [{str(i): 1 for i in range(40)}]],
    "message": [5, "x" * 10_000, "a\x00b"],
}

# Queue records (queued or claimed): values its reader must refuse. A valid claimed run would train.
BAD_QUEUED = {
    "format": ["other", None],
    "run_id": ["someone-else", None, "../x"],
    "owner": ["ALICE", 5],
    "device": ["../x", 5, "cuda:99999"],
    "order": [1e308, NAN, "1", None],
    "attempts": [-1, 99, "1"],
    "name": ["", 5, "x" * 300],
    "config": ["mlp", {"hidden": [4096] * 1000}, {"epochs": -1}],
}

BAD_SWEEP = {
    "format": ["other", None],
    "sweep_id": ["someone-else", "../x", None],
    "fields": [[], ["evil"], ["beta", "beta"], "beta", [5]],
    "created": [1e308, -1, "now", None, NAN, time.time() + 1e9],
    "owner": ["ALICE", 5],
    "runs": [[], "x", [{"run_id": "../x", "values": {"beta": 1}}], [{"run_id": "a", "values": {"beta": [1]}}]],
}

BAD_FINDING = {
    "runs": ["x", [[1, 2, 3]], [["x" * 1000, "a"]], [[5, "a"]]],
    "finding": [5, None, "x" * 100_000],
    "saved": [5, "x" * 100],
    "real_recognised": [NAN, 2, "1", -1],
    "version": [None, "1"],
}


class FolderFuzzer:
    """Fills a run folder with hostile files from `rng`, and says what each run id should list as."""

    def __init__(self, rng: random.Random, folder: Path, template: Path):
        self.rng, self.folder, self.count = rng, folder, 0
        self.checkpoint = template.read_bytes()
        length = struct.unpack("<Q", self.checkpoint[:8])[0]
        self.header = json.loads(self.checkpoint[8 : 8 + length])
        self.body = self.checkpoint[8 + length :]
        self.metadata = json.loads(self.header["__metadata__"]["vae_studio"])
        self.expected: dict[str, str] = {}
        self.fifo = folder / ".a-fifo"
        os.mkfifo(self.fifo)

    # -- names ----------------------------------------------------------------------------------

    def run_id(self) -> str:
        """A new run id: random letters, or a timestamped id older than the valid runs'."""
        rng = self.rng
        while True:
            if rng.random() < 0.3:
                run_id = f"{rng.randrange(2000, 2027)}0101-{rng.randrange(10**6):06d}-{rng.randrange(16**6):06x}"
            else:
                run_id = "fz" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789_-") for _ in range(10))
            if run_id not in self.expected:
                return run_id

    def expect(self, run_id: str, what: str) -> None:
        if self.expected.get(run_id) != ANY:
            self.expected[run_id] = what

    # -- contents -------------------------------------------------------------------------------

    def safetensors_bytes(self, header: dict | bytes, body: bytes | None = None) -> bytes:
        raw = header if isinstance(header, bytes) else json.dumps(header, allow_nan=True).encode()
        return struct.pack("<Q", len(raw)) + raw + (self.body if body is None else body)

    def with_metadata(self, text: str, **header_metadata) -> bytes:
        header = json.loads(json.dumps(self.header))
        header["__metadata__"] = {**header["__metadata__"], "vae_studio": text, **header_metadata}
        return self.safetensors_bytes(header)

    def bad_checkpoint(self) -> tuple[bytes, str]:
        """A checkpoint's bytes and what listing it must show."""
        rng = self.rng
        kind = rng.randrange(14)
        if kind == 0:  # truncated anywhere
            return self.checkpoint[: rng.randrange(len(self.checkpoint))], UNHEALTHY
        if kind == 1:  # a header length no file has
            length = rng.choice([2**64 - 1, 2**63, 10**12, len(self.checkpoint) * 2, 0])
            return struct.pack("<Q", length) + self.checkpoint[8:], UNHEALTHY
        if kind == 2:  # a header nested deep
            depth = rng.choice([200, 10_000, 100_000])
            return self.safetensors_bytes(b'{"__metadata__":' + b"[" * depth + b"]" * depth + b"}"), UNHEALTHY
        if kind == 3:  # a header of garbage
            return self.safetensors_bytes(rng.randbytes(rng.randrange(1, 400))), UNHEALTHY
        header = json.loads(json.dumps(self.header))
        tensor = rng.choice([name for name in header if name != "__metadata__"])
        if kind == 4:  # a dtype no VAE uses, or of another size
            header[tensor]["dtype"] = rng.choice(["F8_E4M3", "C64", "U64", "I8", "U16", "F4", "xx", 7, None])
            return self.safetensors_bytes(header), UNHEALTHY
        if kind == 5:  # a dtype of the same size: the header is sound, the weights are not
            swap = {"F32": "I32", "I32": "F32", "F64": "I64", "I64": "F64", "U8": "BOOL", "F16": "BF16"}
            header[tensor]["dtype"] = swap.get(header[tensor]["dtype"], header[tensor]["dtype"])
            return self.safetensors_bytes(header), ANY
        if kind == 6:  # shapes and offsets that lie
            header[tensor][rng.choice(["shape", "data_offsets"])] = rng.choice(
                [[10**12], [-1], [0, 2**62], "x", None, [2**64, 1]]
            )
            return self.safetensors_bytes(header), UNHEALTHY
        if kind == 7:  # our metadata, nested deep or not JSON
            depth = rng.choice([100, 2000, 200_000])
            text = rng.choice(["[" * depth + "]" * depth, '{"a": 1, "a": 2}', "NaN", "[]", "{", "null", "\udcff"])
            return self.with_metadata(text), UNHEALTHY
        if kind == 8:  # another program's, or a version from the future
            changes = rng.choice([{"format": "other"}, {"format_version": "²"}, {"format_version": "999"}])
            return self.with_metadata(self.header["__metadata__"]["vae_studio"], **changes), UNHEALTHY
        if kind == 9:  # a pickle or a zip (torch.save) renamed
            if rng.random() < 0.5:
                return pickle.dumps({"weights": [1.0] * 8}, protocol=rng.choice([2, 3, 4, 5])), UNHEALTHY
            buffer = io.BytesIO()
            torch.save({"weights": torch.zeros(4)}, buffer)
            return buffer.getvalue(), UNHEALTHY
        if kind == 10:  # a valid safetensors file of another program
            return safetensors.torch.save({"x": torch.zeros(rng.randrange(1, 64))}), UNHEALTHY
        if kind == 11:
            return rng.randbytes(rng.randrange(0, 2000)), UNHEALTHY
        metadata = json.loads(json.dumps(self.metadata))  # kinds 12, 13: a field or more of ours, wrong
        for _ in range(1 if kind == 12 else rng.randrange(2, 5)):
            path = rng.choice(list(BAD_METADATA))
            _set(metadata, path, rng.choice(BAD_METADATA[path]))
        return self.with_metadata(json.dumps(metadata, allow_nan=True)), UNHEALTHY

    def bad_progress(self, run_id: str) -> bytes:
        rng = self.rng
        kind = rng.randrange(6)
        if kind == 0:
            depth = rng.choice([40, 5000, 200_000])
            return (rng.choice("[{") * depth).encode() if rng.random() < 0.3 else b"[" * depth + b"]" * depth
        if kind == 1:
            return rng.choice([b"", b"null", b"[]", b"{", b"\xff\xfe\x00", b'{"format": NaN}', b"1e999999"])
        if kind == 2:  # over the size limit
            return json.dumps(progress_record(run_id)).encode() + b" " * (1 << 20)
        record = progress_record(run_id)
        for _ in range(1 if kind == 3 else rng.randrange(2, 4)):
            key = rng.choice(list(BAD_PROGRESS))
            value = rng.choice(BAD_PROGRESS[key])
            record[key] = time.time() + 1e9 if value == "future" else value
        return json.dumps(record, allow_nan=True).encode()

    def bad_json(self, valid: dict, bad_values: dict) -> bytes:
        """A record of another kind (queued, sweep, finding, commands): garbage or a field made wrong."""
        rng = self.rng
        kind = rng.randrange(4)
        if kind == 0:
            depth = rng.choice([40, 200_000])
            return b"[" * depth + b"]" * depth
        if kind == 1:
            return rng.choice([b"", b"null", b"{", b"\xff\xfe", b'{"format": Infinity}', rng.randbytes(100)])
        record = dict(valid)
        for _ in range(rng.randrange(1, 3)):
            key = rng.choice(list(bad_values))
            record[key] = rng.choice(bad_values[key])
        return json.dumps(record, allow_nan=True).encode()

    # -- entries --------------------------------------------------------------------------------

    def special(self, path: Path) -> bool:
        """Make `path` a FIFO, a link, a folder, an empty or a 10 GB sparse file (True), or nothing."""
        rng = self.rng
        kind = rng.randrange(14)
        if kind == 0:
            os.mkfifo(path)
        elif kind == 1:
            os.symlink("/etc/passwd", path)
        elif kind == 2:
            os.symlink(self.fifo, path)
        elif kind == 3:
            os.symlink("/dev/zero", path)
        elif kind == 4:
            os.symlink(path.with_name("nowhere-" + path.name), path)
        elif kind == 5:
            os.symlink(path, path)  # a loop
        elif kind == 6:
            other = path.with_name(".loop-" + path.name)  # no run id: only its partner is listed
            os.symlink(path, other)
            os.symlink(other, path)
        elif kind == 7:
            path.mkdir()
        elif kind == 8:
            path.write_bytes(b"")
        elif kind == 9:
            with open(path, "wb") as sparse:
                sparse.truncate(TEN_GB)
        elif kind == 10:
            os.symlink(self.folder, path)
        else:
            return False
        return True

    def plant(self) -> None:
        """One more entry of a random kind."""
        rng, folder = self.rng, self.folder
        kind = rng.choices(
            ["checkpoint", "progress", "both", "beside_valid", "queued", "commands", "sweep", "finding", "name"],
            weights=[34, 22, 4, 4, 10, 4, 10, 6, 6],
        )[0]
        self.count += 1
        if kind in ("checkpoint", "progress", "both"):
            run_id = self.run_id()
            self.expect(run_id, UNHEALTHY)
            suffixes = {"checkpoint": [CHECKPOINT_SUFFIX], "progress": [PROGRESS_SUFFIX]}.get(
                kind, [CHECKPOINT_SUFFIX, PROGRESS_SUFFIX]
            )
            for suffix in suffixes:
                path = folder / f"{run_id}{suffix}"
                if not self.special(path):
                    if suffix == CHECKPOINT_SUFFIX:
                        content, what = self.bad_checkpoint()
                        self.expect(run_id, what)
                    else:
                        content = self.bad_progress(run_id)
                    path.write_bytes(content)
        elif kind == "beside_valid":  # a valid run's checkpoint with a hostile record beside it
            run_id = self.run_id()
            (folder / f"{run_id}{CHECKPOINT_SUFFIX}").write_bytes(self.checkpoint)
            path = folder / f"{run_id}{PROGRESS_SUFFIX}"
            if not self.special(path):
                path.write_bytes(self.bad_progress(run_id))
            self.expect(run_id, ANY)
        elif kind == "queued":
            run_id = self.run_id()
            suffix = rng.choice([run_queue.QUEUED_SUFFIX, run_queue.CLAIMED_SUFFIX])
            path = folder / f"{run_id}{suffix}"
            valid = {
                "format": run_queue.QUEUE_FORMAT,
                "run_id": run_id,
                "config": TrainConfig(data="digits", hidden=(16,), latent_dim=2).to_dict(),
                "name": "queued",
                "owner": None,
                "device": "cpu",
                "order": 1.0,
                "attempts": 0,
            }
            if not self.special(path):
                path.write_bytes(self.bad_json(valid, BAD_QUEUED))
        elif kind == "commands":
            path = folder / f"{self.run_id()}{run_commands.COMMANDS_SUFFIX}"
            valid = {"format": run_commands.COMMANDS_FORMAT, "commands": [{"seq": 1, "name": "stop", "value": None}]}
            if not self.special(path):
                path.write_bytes(self.bad_json(valid, {"commands": ["x", [{"seq": -1}], [{"seq": 2**64}]]}))
        elif kind == "sweep":
            sweep_id = self.run_id()
            path = folder / sweep.SWEEPS_FOLDER / f"{sweep_id}.json"
            path.parent.mkdir(exist_ok=True)
            valid = {
                "format": sweep.SWEEP_FORMAT,
                "sweep_id": sweep_id,
                "fields": ["beta"],
                "created": time.time() - 60,
                "owner": None,
                "runs": [{"run_id": run_id, "values": {"beta": 1.0}} for run_id in VALID],
            }
            if not self.special(path):
                path.write_bytes(self.bad_json(valid, BAD_SWEEP))
        elif kind == "finding":
            name = rng.choice([*experiments.EXPERIMENTS, "unknown"])
            path = folder / experiments.FINDINGS_FOLDER / f"{name}.json"
            path.parent.mkdir(exist_ok=True)
            if path.exists() or path.is_symlink():
                return
            valid = {
                "experiment": name,
                "version": experiments.FINDING_VERSION,
                "finding": "a crafted finding",
                "saved": "2026-12-06T00:00:00+0000",
                "runs": [["x", run_id] for run_id in VALID],
                "real_recognised": 0.5,
            }
            if not self.special(path):
                path.write_bytes(self.bad_json(valid, BAD_FINDING))
        else:  # names that are no run id (listings skip them), some not even UTF-8
            stem = rng.choice(
                [
                    b".hidden",
                    b"-dash",
                    b"a b",
                    b"x" * 65,
                    "\u00fc".encode(),
                    b"\xff\xfe%d" % self.count,
                    b"x\xc3%d" % self.count,
                    b"a.b",
                ]
            )
            suffix = rng.choice([CHECKPOINT_SUFFIX, PROGRESS_SUFFIX, run_queue.QUEUED_SUFFIX]).encode()
            path = Path(os.fsdecode(bytes(folder) + b"/" + stem + suffix))
            if path.exists() or path.is_symlink():
                return
            if not self.special(path):
                path.write_bytes(self.checkpoint if suffix == CHECKPOINT_SUFFIX.encode() else b"{}")


def _set(record: dict, path: tuple, value) -> None:
    """record[path[0]][path[1]]... = value, making the way when an earlier change removed it."""
    for key in path[:-1]:
        if not isinstance(record.get(key), dict):
            record[key] = {}
        record = record[key]
    record[path[-1]] = value


def _valid_runs(folder: Path, digits) -> None:
    trainer = Trainer(TrainConfig(data="digits", hidden=(16,), latent_dim=2, epochs=2, device="cpu"), digits)
    train_step(trainer)
    trainer.end_epoch()
    for run_id, (name, status) in VALID.items():
        save_trainer_checkpoint(trainer, run_id, status, folder / f"{run_id}{CHECKPOINT_SUFFIX}", name=name)
    (folder / f"{LIVE}{PROGRESS_SUFFIX}").write_text(json.dumps({**progress_record(LIVE), "name": "live one"}))


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory, digits):
    """The folder: the valid runs, then FILES hostile entries, then a damaged run index for it."""
    folder = tmp_path_factory.mktemp("fuzzed")
    seed_folder = tmp_path_factory.mktemp("template")
    _valid_runs(seed_folder, digits)
    print(f"\nfuzz seed {SEED} (VAE_STUDIO_FUZZ_SEED={SEED} makes this folder again)")
    rng = random.Random(SEED)
    fuzzer = FolderFuzzer(rng, folder, seed_folder / f"{next(iter(VALID))}{CHECKPOINT_SUFFIX}")
    while fuzzer.count < FILES:
        fuzzer.plant()
    for path in seed_folder.iterdir():  # written last: the newest files, on the first page of each table
        (folder / path.name).write_bytes(path.read_bytes())
    index = FileIndex(folder, SUMMARY_FORMAT).path
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_bytes(rng.randbytes(4096))  # a damaged index is rebuilt from the files
    index.with_suffix(".runs-printed").write_bytes(b"0\n" + rng.randbytes(100))
    return folder, fuzzer.expected


def _within(seconds: float, what: str, function, *args):
    """`function(*args)` on a thread of its own, failing (not hanging) when it is still busy after
    `seconds`: a reader that opens a FIFO would block forever."""
    outcome = {}

    def call():
        try:
            outcome["value"] = function(*args)
        except BaseException as error:  # reported on the test's thread
            outcome["error"] = error

    worker = threading.Thread(target=call, name=f"fuzz-{what}", daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"{what} was still busy after {seconds:.0f} s (seed {SEED})"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _check_listing(listed: dict, expected: dict) -> None:
    """The valid runs are listed healthy under their names; no hostile file passes for a healthy run."""
    for run_id, (name, status) in VALID.items():
        assert listed[run_id]["error"] is None, (SEED, listed[run_id])
        assert (listed[run_id]["stored_name"], listed[run_id]["status"]) == (name, status), SEED
    assert listed[LIVE]["status"] == "running" and listed[LIVE]["error"] is None, SEED
    for run_id, what in expected.items():
        if what == UNHEALTHY and run_id in listed:
            assert listed[run_id]["error"] is not None, (SEED, run_id, listed[run_id])
    assert set(listed) <= {*VALID, LIVE, *expected}, (SEED, set(listed) - {*VALID, LIVE, *expected})


def test_vae_studio_runs_lists_the_valid_runs_and_one_line_per_unreadable_run(fuzzed):
    folder, expected = fuzzed
    done = subprocess.run(
        [sys.executable, "-m", "vae_core", "runs", str(folder)],
        capture_output=True,
        text=True,
        timeout=WATCHDOG_S,
        cwd=Path(APP).parent,
    )
    assert done.returncode == 0, (SEED, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, (SEED, done.stderr[-2000:])
    *lines, last = done.stdout.strip().split("\n")
    listed = {run["run_id"]: run for run in json.loads(last)}
    assert len(listed) == len(json.loads(last))
    assert len(lines) == len(listed), SEED  # one line per run, unreadable ones included
    assert [line.split()[0] for line in lines] == list(listed), SEED
    _check_listing(listed, expected)


PAGES = {
    "app_pages/runs.py": "Runs",
    "app_pages/checkpoints.py": "Checkpoints",
    "app_pages/train.py": "Train",
    "app_pages/latent.py": "Latent",
    "app_pages/generate.py": "Generate",
    "app_pages/theory.py": "Theory",
    "app_pages/experiments.py": "Experiments",
}


@pytest.fixture
def app_in(monkeypatch):
    """app_in(folder): the app with `folder` as its checkpoints folder (a new registry on it, and after)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    import ui.session as session

    def open_in(folder: Path) -> AppTest:
        monkeypatch.setattr(session, "CHECKPOINT_DIR", folder)
        st.cache_resource.clear()
        st.cache_data.clear()
        return AppTest.from_file(APP, default_timeout=WATCHDOG_S)

    yield open_in
    session.registry().stop_all()
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def app_on(fuzzed, app_in):
    return app_in(fuzzed[0])


def _table_run_ids(app, page: str) -> set[str]:
    """The run ids of every page of the table (a hundred runs a page)."""
    key = "runs_page" if page == "app_pages/runs.py" else "checkpoints_page"
    pages = [box for box in app.number_input if box.key == key]
    shown = set()
    for number in range(1, int(pages[0].max) + 1 if pages else 2):
        if pages:
            app.number_input(key=key).set_value(number).run()
            assert not app.exception, (SEED, page, number, [e.value for e in app.exception])
        table = app.dataframe[0].value
        shown |= set(table["run id" if "run id" in table else "run"])
    return shown


def test_every_page_finishes_with_no_exception_and_shows_the_valid_runs(app_on):
    app = app_on
    for page, title in PAGES.items():
        app.switch_page(page)
        app.query_params.clear()
        app.run()  # AppTest raises when a page is still running after its timeout
        assert not app.exception, (SEED, page, [e.value for e in app.exception])
        if page in ("app_pages/runs.py", "app_pages/checkpoints.py"):
            shown = _table_run_ids(app, page)
        elif page == "app_pages/train.py":
            opened = app.query_params.get("run")
            assert (opened if isinstance(opened, str) else opened[0]) in VALID, (SEED, opened)  # the newest valid run
            continue
        else:
            options = " ".join(str(option) for option in app.selectbox(key="run_picker").options)
            shown = {run_id for run_id in VALID if run_id in options}
        assert set(VALID) <= shown, (SEED, title, set(VALID) - shown)


def test_each_page_opened_on_a_hostile_run_says_what_is_wrong_and_goes_on(app_on, fuzzed):
    """A link to a hostile run: the trickiest first (a sound header over lying weights, a valid
    checkpoint beside a hostile record), then any."""
    expected = fuzzed[1]
    rng = random.Random(SEED)
    tricky = sorted(run_id for run_id, what in expected.items() if what == ANY)
    others = sorted(run_id for run_id, what in expected.items() if what != ANY)
    chosen = rng.sample(tricky, min(len(tricky), VISITS)) + rng.sample(others, VISITS)
    app = app_on
    for page in ("app_pages/train.py", "app_pages/latent.py", "app_pages/generate.py", "app_pages/theory.py"):
        for run_id in chosen:
            app.switch_page(page)
            app.query_params["run"] = run_id
            app.run()
            assert not app.exception, (SEED, page, run_id, [e.value for e in app.exception])


def test_the_store_readers_finish_and_list_the_valid_runs_in_process(fuzzed):
    folder, expected = fuzzed

    def listing():
        return {record.run_id: record.as_json() for record in list_runs(folder)}

    listed = _within(WATCHDOG_S, "list_runs", listing)
    _check_listing(listed, expected)
    for run_id in listed:
        record = _within(WATCHDOG_S, f"read_run({run_id})", read_run, folder, run_id)
        assert record is None or record.run_id == run_id
    live = _within(WATCHDOG_S, "live_runs", live_runs, folder)
    assert LIVE in {record.run_id for record in live}, SEED
    assert not {record.run_id for record in live} - {LIVE, *expected}, SEED
    assert _within(WATCHDOG_S, "waiting", run_queue.waiting, folder) == [], SEED
    assert _within(WATCHDOG_S, "recover_interrupted", run_queue.recover_interrupted, folder) == [], SEED
    _within(WATCHDOG_S, "list_sweeps", sweep.list_sweeps, folder)
    _within(WATCHDOG_S, "latest_findings", experiments.latest_findings, folder)
    for path in folder.glob(f"*{run_commands.COMMANDS_SUFFIX}"):
        _within(WATCHDOG_S, f"read_commands({path.name})", run_commands.read_commands, path)

    # The index rebuilt: every file a new version (the index is damaged again), listed the same.
    index = FileIndex(folder, SUMMARY_FORMAT).path
    index.write_bytes(b"not a database")
    moment = time.time_ns() - 10**9
    for entry in os.scandir(folder):
        os.utime(
            entry.path, ns=(moment, moment + (10**6 if entry.name.startswith("2099") else 0)), follow_symlinks=False
        )
    rebuilt = _within(WATCHDOG_S, "list_runs after the index was damaged", listing)
    assert set(rebuilt) == set(listed), SEED
    _check_listing(rebuilt, expected)


def test_a_link_loop_opened_by_its_link_is_a_message_on_every_page(app_in, tmp_path):
    """Seed 3 found it: five pages raised OSError (ELOOP) stat-ing the file (now safe_files.file_version)."""
    os.symlink(tmp_path / "loop.safetensors", tmp_path / "loop.safetensors")
    app = app_in(tmp_path)
    for page in PAGES:
        app.switch_page(page)
        app.query_params["run"] = "loop"
        assert not app.run().exception, page
