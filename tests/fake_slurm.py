"""A fake SLURM for tests without a cluster: `sbatch`, `squeue`, `scancel`, `sacct`, `scontrol` and
`srun` as one small Python script, put on PATH by the `fake_slurm` fixture.

What it does, in the formats submitit reads (submitit/slurm/slurm.py):
- `sbatch SCRIPT` gives the job the next id, records the call, prints "Submitted batch job N" and
  (unless FAKE_SLURM_HOLD is set: a full cluster, where it stays PENDING until the test's
  `release`) starts a detached runner that runs the script with bash (SLURM_JOB_ID, SLURMD_NODENAME... set,
  output to the script's #SBATCH --output/--error), in a process group of its own.
- The runner marks the job RUNNING on a node, then COMPLETED (exit 0), FAILED (else) or CANCELLED,
  and runs the script again when `scontrol requeue N` asked for it (a requeue kills the job first,
  as SLURM does).
- `srun [--options] CMD...` records its pid as the job's step and execs CMD, output redirected.
- `scancel N` cancels the job as SLURM does: SIGTERM to its step at once (submitit's job ignores it),
  SIGKILL to its whole group KILL_WAIT_S later (SLURM's KillWait, 30 s by default; 0 if it has not
  started); `scancel N --signal SIG` sends SIG to the job's step only, as SLURM does to a step's
  tasks (submitit's timeout and preemption signal is USR2).
- `sacct -o JobID,State,NodeList --parsable2 -j N ...` and `squeue -h -j N -o "%i %T"` answer
  from the job records kept in $FAKE_SLURM_DIR.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

COMMANDS = ("sbatch", "squeue", "scancel", "sacct", "scontrol", "srun")
KILL_WAIT_S = 3.0
STATE_DIR_ENV = "FAKE_SLURM_DIR"
HOLD_ENV = "FAKE_SLURM_HOLD"  # set: sbatch starts no job, which stays PENDING


# -- the script's side -------------------------------------------------------------------------------------
def state_dir() -> Path:
    return Path(os.environ[STATE_DIR_ENV])


@contextlib.contextmanager
def locked():
    with open(state_dir() / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def job_path(job_id: str) -> Path:
    return state_dir() / "jobs" / f"{job_id}.json"


def read_job(job_id: str) -> dict:
    return json.loads(job_path(job_id).read_text())


def write_job(job_id: str, job: dict) -> None:
    temporary = job_path(job_id).with_suffix(".tmp")
    temporary.write_text(json.dumps(job))
    os.replace(temporary, job_path(job_id))


def update_job(job_id: str, **changes) -> dict:
    with locked():
        job = read_job(job_id)
        job.update(changes)
        write_job(job_id, job)
        return job


def record_call(command: str, args: list[str]) -> None:
    with locked(), open(state_dir() / "calls.jsonl", "a") as calls:
        calls.write(json.dumps({"command": command, "args": args, "time": time.time()}) + "\n")


def sbatch(args: list[str]) -> int:
    script = Path(args[-1]).resolve()
    with locked():
        counter = state_dir() / "next_id"
        job_id = str(int(counter.read_text()) if counter.exists() else 1000)
        counter.write_text(str(int(job_id) + 1))
        node = f"fake-node-{int(job_id) % 2 + 1}"
        write_job(job_id, {"state": "PENDING", "node": node, "script": str(script), "requeue": False, "runs": 0})
    record_call("sbatch", args)
    if not os.environ.get(HOLD_ENV):  # held: a cluster with no free node, where the job stays pending
        start_runner(job_id)
    print(f"Submitted batch job {job_id}")
    return 0


def start_runner(job_id: str) -> None:
    """The job's runner (run_job), detached: it outlives sbatch, as a job outlives its submission."""
    subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "_run", job_id],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _sbatch_path(script: str, option: str, job_id: str) -> str:
    found = re.search(rf"^#SBATCH --{option}=(\S+)", script, re.MULTILINE)
    return _expand(found.group(1).strip("'\"") if found else os.devnull, job_id)


def _expand(pattern: str, job_id: str) -> str:
    return pattern.replace("%j", job_id).replace("%t", "0").replace("%A", job_id).replace("%a", "0")


def run_job(job_id: str) -> int:
    """The runner of one job: run its script (again after each requeue) and record how it ended."""
    while True:
        job = read_job(job_id)
        if job["state"] == "CANCELLED":
            return 0
        script = Path(job["script"]).read_text()
        env = dict(
            os.environ,
            SLURM_JOB_ID=job_id,
            SLURM_JOB_NODELIST=job["node"],
            SLURMD_NODENAME=job["node"],
            SLURM_NTASKS="1",
            SLURM_PROCID="0",
            SLURM_LOCALID="0",
            SLURM_NODEID="0",
            SLURM_JOB_NUM_NODES="1",
        )
        with open(_sbatch_path(script, "output", job_id), "a") as out:
            process = subprocess.Popen(
                ["bash", job["script"]], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        update_job(job_id, state="RUNNING", pgid=process.pid, runs=job["runs"] + 1)
        code = process.wait()
        with locked():
            job = read_job(job_id)
            if job["requeue"] and job["state"] != "CANCELLED":
                job.update(requeue=False, state="PENDING", pgid=None, step_pid=None)
                write_job(job_id, job)
                continue
            if job["state"] != "CANCELLED":
                job["state"] = "COMPLETED" if code == 0 else "FAILED"
            job["exit_code"] = code
            write_job(job_id, job)
            return 0


def srun(args: list[str]) -> int:
    options, rest = {}, list(args)
    while rest and rest[0].startswith("--"):
        flag = rest.pop(0)
        if flag in ("--output", "--error"):
            options[flag] = rest.pop(0)
    job_id = os.environ["SLURM_JOB_ID"]
    update_job(job_id, step_pid=os.getpid())
    out = os.open(_expand(options.get("--output", os.devnull), job_id), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    err = os.open(_expand(options.get("--error", os.devnull), job_id), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.execvp(rest[0], rest)
    return 1


def _kill_group(job: dict) -> None:
    if job.get("pgid"):
        with contextlib.suppress(OSError):
            os.killpg(job["pgid"], signal.SIGKILL)


def scancel(args: list[str]) -> int:
    record_call("scancel", args)
    job_id = next(arg for arg in args if not arg.startswith("-") and arg.isdigit())
    if "--signal" in args:
        name = args[args.index("--signal") + 1]
        step = read_job(job_id).get("step_pid")
        if step:
            os.kill(step, getattr(signal, name if name.startswith("SIG") else "SIG" + name))
        return 0
    with locked():
        job = read_job(job_id)
        if job["state"] in ("PENDING", "RUNNING"):
            job["state"] = "CANCELLED"
            write_job(job_id, job)
    if job.get("step_pid"):
        with contextlib.suppress(OSError):
            os.kill(job["step_pid"], signal.SIGTERM)
        subprocess.Popen(  # slurmd's KillWait, then SIGKILL, while scancel has returned
            [sys.executable, __file__, "_kill_later", job_id],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    else:
        _kill_group(job)
    return 0


def kill_later(job_id: str) -> int:
    time.sleep(KILL_WAIT_S)
    _kill_group(read_job(job_id))
    return 0


def scontrol(args: list[str]) -> int:
    record_call("scontrol", args)
    if args[:1] == ["requeue"]:
        job = update_job(args[1], requeue=True)
        _kill_group(job)
    return 0


def _asked_ids(args: list[str]) -> list[str]:
    return [args[index + 1] for index, arg in enumerate(args) if arg == "-j"]


def sacct(args: list[str]) -> int:
    print("JobID|State|NodeList")
    for job_id in _asked_ids(args):
        if job_path(job_id).exists():
            job = read_job(job_id)
            node = job["node"] if job["state"] != "PENDING" else "None assigned"
            print(f"{job_id}|{job['state']}|{node}")
            print(f"{job_id}.batch|{job['state']}|{node}")
    return 0


def squeue(args: list[str]) -> int:
    for job_id in _asked_ids(args):
        if job_path(job_id).exists() and read_job(job_id)["state"] in ("PENDING", "RUNNING"):
            print(f"{job_id} {read_job(job_id)['state']}")
    return 0


def main(argv: list[str]) -> int:
    command, args = argv[1], argv[2:]
    if command == "_run":
        return run_job(args[0])
    if command == "_kill_later":
        return kill_later(args[0])
    return {"sbatch": sbatch, "squeue": squeue, "scancel": scancel, "sacct": sacct, "scontrol": scontrol}.get(
        command, srun
    )(args)


# -- the test's side ---------------------------------------------------------------------------------------
class FakeSlurm:
    def __init__(self, directory: Path):
        self.directory = directory

    def calls(self, command: str | None = None) -> list[dict]:
        path = self.directory / "calls.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [call for call in map(json.loads, lines) if command is None or call["command"] == command]

    def job(self, job_id: str) -> dict:
        return json.loads((self.directory / "jobs" / f"{job_id}.json").read_text())

    def job_ids(self) -> list[str]:
        return sorted(path.stem for path in (self.directory / "jobs").glob("*.json"))

    def release(self, job_id: str) -> None:
        """A job held pending (FAKE_SLURM_HOLD) starts, as a node frees up."""
        start_runner(job_id)

    def end_all(self) -> None:
        for job_id in self.job_ids():
            job = self.job(job_id)
            if job.get("pgid"):
                with contextlib.suppress(OSError):
                    os.killpg(job["pgid"], signal.SIGKILL)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """SLURM's commands on PATH, answered by this file; the jobs it started are killed at the end."""
    directory = tmp_path / "fake-slurm"
    (directory / "jobs").mkdir(parents=True)
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    for command in COMMANDS:
        wrapper = bin_dir / command
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" {command} "$@"\n')
        wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(STATE_DIR_ENV, str(directory))
    slurm = FakeSlurm(directory)
    yield slurm
    slurm.end_all()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
